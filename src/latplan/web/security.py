"""CSRF tokens, security headers and the request body limit.

CSRF: every state-changing request (POST) carries a token, in the ``X-CSRF-Token`` header
(htmx sends it from ``hx-headers``) or the ``csrf_token`` form field. The token is an HMAC
(SHA-256, keyed with the app secret) of the session's token digest, so it is bound to the
session and useless after logout; before login, it is bound to a random pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from latplan.errors import LatplanError

SESSION_COOKIE = "latplan_session"
PRE_COOKIE = "latplan_pre"
#: over HTTPS the cookies carry the ``__Host-`` prefix (Secure, Path=/, no Domain: RFC 6265bis §4.1.3.2)
HOST_PREFIX = "__Host-"

PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self' blob: data:; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: the report and the patient grid are shown in a frame of the case page (same origin only)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; frame-ancestors 'self'"
#: paths whose responses may be framed by this site's own pages (the report frame of the case page)
FRAMEABLE_SUFFIXES = ("/report", "/patient")
HSTS = "max-age=31536000; includeSubDomains"


def cookie_name(base: str, https: bool) -> str:
    return HOST_PREFIX + base if https else base


class SecurityHeadersMiddleware:
    """Headers on every response (OWASP ASVS 5 V3.4): nosniff, no framing by other sites, no-store.

    - ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin`` everywhere;
    - ``X-Frame-Options: DENY`` (and ``frame-ancestors 'none'`` in the page CSP), except the
      report and patient grid, which the case page frames: ``SAMEORIGIN``;
    - ``Cache-Control: no-store`` on everything but ``/static`` (patient data never lands in a cache);
    - ``Strict-Transport-Security`` when served over HTTPS (or behind a TLS proxy: ``https``).
    """

    def __init__(self, app: object, https: bool = False) -> None:
        self.app, self.https = app, https

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        path = str(scope.get("path", ""))
        https = self.https or scope.get("scheme") == "https"

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-frame-options", b"x-content-type-options", b"cache-control")
                           or (k.lower() == b"cache-control" and path.startswith("/static"))]
                frame = b"SAMEORIGIN" if path.endswith(FRAMEABLE_SUFFIXES) else b"DENY"
                headers += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", frame)]
                if not any(k.lower() == b"referrer-policy" for k, _ in headers):
                    headers.append((b"referrer-policy", b"same-origin"))
                if not path.startswith("/static"):
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": headers}
            await send(message)  # type: ignore[operator]

        await self.app(scope, receive, with_headers)  # type: ignore[operator]


class BodyLimitMiddleware:
    """Refuse request bodies above the limit (413) while they stream in.

    Why: the multipart parser spools a file upload to the system temp folder before any route
    code runs, so the limit must act here, on the raw stream (Content-Length when given,
    counted bytes otherwise), not after parsing. Two limits: ``max_bytes`` (small) for every
    request, and ``upload_bytes`` only for a request that ``allow_upload(scope)`` accepts (the
    upload route with the session cookie of a user who may upload) — so an anonymous client
    cannot make the server read a large body on any route.
    """

    def __init__(self, app: object, max_bytes: int, upload_bytes: int | None = None,
                 allow_upload: Callable[[dict], Awaitable[bool]] | None = None) -> None:
        self.app, self.small_bytes = app, max_bytes
        self.upload_bytes = upload_bytes if upload_bytes is not None else max_bytes
        self.allow_upload = allow_upload

    async def _reject(self, send: object, limit: int) -> None:
        body = (b'{"error": "the request body is larger than the limit of %d KiB; '
                b'send the case folder without extra series, or ask the administrator to raise the limit."}'
                % (limit // 2**10))
        await send({"type": "http.response.start", "status": 413,  # type: ignore[operator]
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        limit = self.small_bytes
        if self.allow_upload is not None and self.upload_bytes > limit and await self.allow_upload(scope):
            limit = self.upload_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, limit)
            return
        total = 0
        too_large = False

        async def limited_receive() -> dict:
            nonlocal total, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()  # type: ignore[operator]
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    too_large = True  # stop feeding the parser; the app's error reply is replaced below
                    return {"type": "http.disconnect"}
            return message

        replaced = False

        async def guarded_send(message: dict) -> None:
            nonlocal replaced
            if too_large:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await self._reject(send, limit)
                return
            await send(message)  # type: ignore[operator]

        try:
            await self.app(scope, limited_receive, guarded_send)  # type: ignore[operator]
        except Exception:
            if not too_large:
                raise
            if not replaced:
                await self._reject(send, limit)


class CsrfError(LatplanError):
    """A state-changing request came without the right CSRF token."""


def csrf_token(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def check_csrf(secret: str, binding: str | None, presented: str | None) -> None:
    if not binding or not presented:
        raise CsrfError("this form has no CSRF token (or your session expired); reload the page and try again.")
    if not hmac.compare_digest(csrf_token(secret, binding), presented):
        raise CsrfError("the CSRF token does not match your session; reload the page and try again.")
