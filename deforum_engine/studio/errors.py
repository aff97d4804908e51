"""The studio's one error type: an HTTP status plus the one-line message the CLI would print."""
from __future__ import annotations


class StudioError(Exception):
    """A request the studio refuses; the API answers `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
