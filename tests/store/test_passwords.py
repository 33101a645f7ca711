"""Password policy: ≥ 12 characters, not on the common list, not repetitive or sequential.

References: NIST SP 800-63B §5.1.1.2 (refuse breached/common, repetitive or sequential
passwords); OWASP ASVS 5 V6.2.1 (at least 12 characters). The issue's example '1111111111'
was accepted before.
"""

from __future__ import annotations

import pytest

from latplan.errors import InvalidInputError
from latplan.store import accounts, passwords


@pytest.mark.parametrize("pw", ["1111111111", "short-pw", "111111111111", "123456789012", "abcdefghijkl",
                                "qwertyuiopas", "Password1234", "abcabcabcabc", "zyxwvutsrqpo", "hospital2026"])
def test_weak_passwords_refused(pw):
    with pytest.raises(InvalidInputError, match="refused"):
        accounts.hash_password(pw)


@pytest.mark.parametrize("pw", ["correct-horse-battery", "nina-pass-123456", "liver board tuesday 7"])
def test_passphrases_accepted(pw):
    assert accounts.hash_password(pw).startswith("$argon2id$")


def test_list_is_package_data_with_its_source():
    text = (passwords.resources.files("latplan.store") / "data" / "common_passwords.txt").read_text()
    assert "NIST SP 800-63B" in text
    entries = passwords.common_passwords()
    assert len(entries) >= 50 and all(len(e) >= 12 for e in entries)
    assert passwords.MIN_PASSWORD_CHARS == 12
