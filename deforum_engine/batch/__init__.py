"""Batches: jobs files, one job rendered / resumed / skipped, local and Ray executors."""
