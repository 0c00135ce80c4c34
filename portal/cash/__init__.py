"""Staff: write-offs, unapplied cash and refunds, with approvals."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
