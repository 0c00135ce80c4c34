"""Encryption at rest for secrets and sensitive fields (TOTP secrets, SSO client secrets,
tax ids), and hashing for single-use tokens.

Keys are Fernet keys (AES-128-CBC + HMAC-SHA256). ``ENCRYPTION_KEYS`` lists them,
comma-separated, newest first: new values are encrypted with the first, and any listed
key decrypts, so a key is rotated by prepending a new one and re-encrypting
(``reencrypt``) before dropping the old. Without ``ENCRYPTION_KEYS`` a key is derived
from ``SECRET_KEY`` (development only; production requires explicit keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DecryptionError(ValueError):
    """The value was not encrypted with any configured key (or was altered)."""


class Box:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise ValueError(
                "ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise DecryptionError("cannot decrypt: unknown key or altered value") from exc

    def reencrypt(self, token: str) -> str:
        """Re-encrypt under the newest key (for key rotation)."""
        return self._fernet.rotate(token.encode()).decode()


def derived_key(secret_key: str) -> str:
    digest = hashlib.sha256(b"ledgerline-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def new_key() -> str:
    return Fernet.generate_key().decode()


_box: Box | None = None


def configure(keys: Sequence[str]) -> Box:
    global _box
    _box = Box(keys)
    return _box


def box() -> Box:
    if _box is None:
        raise RuntimeError("encryption not configured: call core.crypto.configure() at start-up")
    return _box


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token for links (invitations, password resets)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """What we store for a single-use token: its SHA-256 (the token itself is only mailed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
