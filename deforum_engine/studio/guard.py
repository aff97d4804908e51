"""Checks on every request before any route runs: the token, the origin, the host name.

- Token (when the server has one): `Authorization: Bearer TOKEN`, or the `deforum_engine_token`
  cookie, or `?token=TOKEN` in the URL, which also sets that cookie so the page's images, videos
  and event streams carry it. With `--api-auth user:pass[,user2:pass2]` (AUTOMATIC1111's option),
  HTTP Basic credentials are accepted too (and asked for), beside the token.
- Origin: a request that changes something (POST, PUT, PATCH, DELETE) from another site's page is
  refused, so a web page cannot drive a studio on localhost behind the user's back.
- Host: without a token the studio answers only to localhost names, which defeats DNS rebinding.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import parse_qs, urlsplit

from deforum_engine.studio.config import is_loopback

COOKIE = "deforum_engine_token"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class RequestGuard:
    """ASGI middleware applying the three checks; a refusal is JSON `{"error": ...}`."""

    def __init__(self, app, token: str | None, api_auth: str | None = None):
        self.app, self.token = app, token
        self.logins = [login for login in (api_auth or "").split(",") if login]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        query_token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        refusal = self._refusal(scope["method"], headers, query_token)
        if refusal is not None:
            from starlette.responses import JSONResponse

            status, message = refusal
            body = {"error": message, **({"message": message} if scope["path"].startswith("/deforum_api") else {})}
            challenge = {"WWW-Authenticate": 'Basic realm="deforum-engine"'} if status == 401 and self.logins else None
            return await JSONResponse(body, status_code=status, headers=challenge)(scope, receive, send)
        if self.token and query_token:
            send = _with_cookie(send, self.token)
        return await self.app(scope, receive, send)

    def _refusal(self, method: str, headers: dict[str, str], query_token: str | None) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.token or self.logins:
            offered = _offered_tokens(headers, query_token) if self.token else []
            if not any(self._matches(candidate) for candidate in offered) and not self._logged_in(headers):
                return 401, self._how_to_authenticate()
        elif not is_loopback(urlsplit(f"//{host}").hostname or ""):
            return 403, (f"this studio answers only to localhost, not {host!r}; to serve other machines, "
                         "start it with --host and --token")
        origin = headers.get("origin")
        if method not in _SAFE_METHODS and origin is not None and urlsplit(origin).netloc != host:
            return 403, "cross-origin request refused: the studio's API takes changes only from its own page"
        return None

    def _matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def _logged_in(self, headers: dict[str, str]) -> bool:
        """HTTP Basic credentials that are one of --api-auth's user:pass pairs."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if not self.logins or scheme.lower() != "basic":
            return False
        try:
            offered = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        matches = [hmac.compare_digest(offered.encode(), login.encode()) for login in self.logins]
        return any(matches)

    def _how_to_authenticate(self) -> str:
        ways = (["send the header `Authorization: Bearer TOKEN`, or open the page as /?token=TOKEN"] if self.token
                else []) + (["log in with the user and password of --api-auth (HTTP Basic)"] if self.logins else [])
        what = "its token" if self.token and not self.logins else "credentials"
        return f"this studio needs {what}: " + "; or ".join(ways)


def _offered_tokens(headers: dict[str, str], query_token: str | None) -> list[str]:
    offered = []
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        offered.append(value.strip())
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            offered.append(value)
    if query_token:
        offered.append(query_token)
    return offered


def _with_cookie(send, token: str):
    """Wrap `send` so the response sets the token cookie (the page opened with ?token=...)."""
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

    async def send_with_cookie(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return send_with_cookie
