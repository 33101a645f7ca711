"""CSRF tokens and security headers.

CSRF: every state-changing request (POST) carries a token, in the ``X-CSRF-Token`` header
(htmx sends it from ``hx-headers``) or the ``csrf_token`` form field. The token is an HMAC
(SHA-256, keyed with the app secret) of the session's token digest, so it is bound to the
session and useless after logout; before login, it is bound to a random pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac

from latplan.errors import LatplanError

SESSION_COOKIE = "latplan_session"
PRE_COOKIE = "latplan_pre"

PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self' blob: data:; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; frame-ancestors 'self'"


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` (413) while they stream in.

    Why: the multipart parser spools a file upload to the system temp folder before any route
    code runs, so the upload size limit must act here, on the raw stream (Content-Length when
    given, counted bytes otherwise), not after parsing.
    """

    def __init__(self, app: object, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: object) -> None:
        body = (b'{"error": "the request body is larger than the limit of %d MiB; '
                b'send the case folder without extra series, or ask the administrator to raise the limit."}'
                % (self.max_bytes // 2**20))
        await send({"type": "http.response.start", "status": 413,  # type: ignore[operator]
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
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
                if total > self.max_bytes:
                    too_large = True  # stop feeding the parser; the app's error reply is replaced below
                    return {"type": "http.disconnect"}
            return message

        replaced = False

        async def guarded_send(message: dict) -> None:
            nonlocal replaced
            if too_large:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await self._reject(send)
                return
            await send(message)  # type: ignore[operator]

        try:
            await self.app(scope, limited_receive, guarded_send)  # type: ignore[operator]
        except Exception:
            if not too_large:
                raise
            if not replaced:
                await self._reject(send)


class CsrfError(LatplanError):
    """A state-changing request came without the right CSRF token."""


def csrf_token(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def check_csrf(secret: str, binding: str | None, presented: str | None) -> None:
    if not binding or not presented:
        raise CsrfError("this form has no CSRF token (or your session expired); reload the page and try again.")
    if not hmac.compare_digest(csrf_token(secret, binding), presented):
        raise CsrfError("the CSRF token does not match your session; reload the page and try again.")
