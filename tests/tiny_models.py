"""Tiny random-weight diffusers components for tests (filled in by the diffusers backend work)."""
