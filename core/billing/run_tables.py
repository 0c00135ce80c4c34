"""Invoice runs, their chunks and billed periods; billable metrics. tables."""

from __future__ import annotations
