from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import Box, DecryptionError, derived_key, new_key, token_hash


@given(st.text(max_size=200))
def test_round_trip(plaintext: str) -> None:
    box = Box([new_key()])
    token = box.encrypt(plaintext)
    assert plaintext == box.decrypt(token)


def test_rotation_keeps_old_values_readable_and_reencrypts_under_the_new_key() -> None:
    old, new = new_key(), new_key()
    token = Box([old]).encrypt("JBSWY3DPEHPK3PXP")
    rotated_box = Box([new, old])
    assert rotated_box.decrypt(token) == "JBSWY3DPEHPK3PXP"
    fresh = rotated_box.reencrypt(token)
    assert Box([new]).decrypt(fresh) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(DecryptionError):
        Box([new]).decrypt(token)


def test_tampered_or_foreign_values_are_refused() -> None:
    box = Box([derived_key("a" * 40)])
    token = box.encrypt("secret")
    with pytest.raises(DecryptionError):
        box.decrypt(token[:-4] + "AAAA")
    with pytest.raises(DecryptionError):
        Box([derived_key("b" * 40)]).decrypt(token)


def test_bad_key_gets_a_clear_message() -> None:
    with pytest.raises(ValueError, match="Fernet keys"):
        Box(["not-a-key"])


def test_token_hash_is_stable_and_not_the_token() -> None:
    assert token_hash("abc") == token_hash("abc") != "abc"
    assert len(token_hash("abc")) == 64
