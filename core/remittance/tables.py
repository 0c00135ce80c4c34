"""Bank statements, their lines, column mappings and matching. tables."""

from __future__ import annotations
