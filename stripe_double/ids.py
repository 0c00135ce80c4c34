"""Stripe-shaped identifiers: a prefix and a random base62 tail (``pi_3Mtw…``)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """``new_id("pi")`` → ``pi_…``; ``new_id("cs_test")`` → ``cs_test_…``."""
    return f"{prefix}_{random_token(length)}"


def client_secret(object_id: str) -> str:
    return f"{object_id}_secret_{random_token(25)}"


def webhook_secret() -> str:
    return f"whsec_{random_token(32)}"
