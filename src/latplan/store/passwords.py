"""Password policy: at least 12 characters, not common, not repetitive or sequential.

NIST SP 800-63B §5.1.1.2 asks verifiers to refuse passwords found in breach corpuses, dictionary
words, repetitive or sequential characters and context-specific words; OWASP ASVS 5 (V6.2)
asks for at least 12 characters. The list shipped as package data
(``latplan/store/data/common_passwords.txt``, its header says where it comes from) covers the
common ones; :func:`is_weak` covers the repetitive/sequential ones by rule.
"""

from __future__ import annotations

import functools
from importlib import resources

from latplan.errors import InvalidInputError

MIN_PASSWORD_CHARS = 12
_ROWS = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl", "zxcvbnm", "1qaz2wsx3edc4rfv5tgb")


@functools.cache
def common_passwords() -> frozenset[str]:
    text = (resources.files("latplan.store") / "data" / "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(ln.strip().lower() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def _sequential(pw: str) -> bool:
    """The whole password walks one row/sequence (forwards or backwards), possibly wrapping."""
    low = pw.lower()
    for row in _ROWS:
        for seq in (row, row[::-1]):
            ring = seq * (len(low) // len(seq) + 2)
            if low in ring:
                return True
    return False


def _repetitive(pw: str) -> bool:
    """Few distinct characters, or one short unit repeated (``abcabcabcabc``)."""
    if len(set(pw.lower())) <= 2:
        return True
    n = len(pw)
    return any(n % k == 0 and pw.lower() == pw.lower()[:k] * (n // k) for k in range(1, n // 2 + 1))


def is_weak(password: str) -> str | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"it is too short ({len(password)} characters); use at least {MIN_PASSWORD_CHARS}"
    low = password.lower()
    if low in common_passwords():
        return "it is on the list of common passwords"
    if _repetitive(password) or _sequential(password):
        return "it is repetitive or sequential (like 1111… or 1234…)"
    return None


def check_password(password: str) -> None:
    """Raise :class:`InvalidInputError` naming why a new password is refused."""
    why = is_weak(password)
    if why is not None:
        raise InvalidInputError(f"the password is refused: {why}. Choose a longer passphrase of unrelated words.")
