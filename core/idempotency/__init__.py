"""Idempotency keys of mutating API calls and portal actions."""
