"""One cache for every loaded model: pipelines, depth, and the offline checks."""
