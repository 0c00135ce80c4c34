"""Staff: exchange rates, tax settings, invoice drafts to review, approve and finalize."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
