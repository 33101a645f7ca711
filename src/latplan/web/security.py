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


class CsrfError(LatplanError):
    """A state-changing request came without the right CSRF token."""


def csrf_token(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def check_csrf(secret: str, binding: str | None, presented: str | None) -> None:
    if not binding or not presented:
        raise CsrfError("this form has no CSRF token (or your session expired); reload the page and try again.")
    if not hmac.compare_digest(csrf_token(secret, binding), presented):
        raise CsrfError("the CSRF token does not match your session; reload the page and try again.")
