"""Bounded work for every request: a body size limit read while streaming, a nesting check before any
JSON parser runs, and one JSON answer for whatever slips past the routes' own errors.

Uploads (`/api/uploads/...`) stream to disk under their own per-kind limits (uploads.py); every
other body is read into memory up to `max_body_bytes` (a refusal at the first byte past it: 413),
and a JSON body nested deeper than the limit is refused (400) before FastAPI parses it.
"""
from __future__ import annotations

import errno
import logging
import sqlite3

from deforum_engine.errors import SettingsError
from deforum_engine.limits import MB, check_nesting

log = logging.getLogger(__name__)
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_STREAMED = "/api/uploads/"


class BodyLimit:
    """ASGI middleware: non-upload request bodies at most `max_bytes`, JSON bodies at most the nesting limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or scope["path"].startswith(_STREAMED):
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _answer(413, self._too_large(int(length)), scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await _answer(413, self._too_large(None), scope, receive, send)
        if "json" in headers.get("content-type", ""):
            try:
                check_nesting(body.decode("utf-8", "replace"), "request", toml=False)
            except SettingsError as error:
                return await _answer(400, str(error), scope, receive, send)
        return await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self, length: int | None) -> str:
        size = f"{length / MB:.3g} MB, " if length is not None else ""
        return (f"the request body is {size}more than the studio's {self.max_bytes / MB:.3g} MB limit for settings "
                f"documents; files go to POST /api/uploads/<setting> (start the studio with --max-body-mb to raise it)")


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(status: int, message: str, scope, receive, send) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"})(scope, receive, send)


def unexpected_error(error: Exception) -> tuple[int, str]:
    """The status and one-line message for an exception no route turned into a StudioError."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return 507, f"the disk is full: {error.strerror} ({error.filename or 'the data folder'}); free some space"
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return 507, f"the disk is full: the job database could not be written ({error}); free some space"
    if isinstance(error, sqlite3.DatabaseError):
        return 503, (f"the studio's job database failed ({error}); stop the studio and start it again: a damaged "
                     "database is then set aside and a fresh one made")
    if isinstance(error, RecursionError):
        return 400, "the request is nested too deeply"
    log.error("unexpected error answering a request", exc_info=error)
    return 500, f"internal error: {type(error).__name__}: {str(error)[:200]} (the server's log has the details)"
