"""Tax registrations, rates, provider settings and calculation records. tables."""

from __future__ import annotations
