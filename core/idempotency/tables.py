"""Idempotency keys of mutating API calls and portal actions. tables."""

from __future__ import annotations
