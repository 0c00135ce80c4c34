"""Exchange rates (manual and ECB reference rates). tables."""

from __future__ import annotations
