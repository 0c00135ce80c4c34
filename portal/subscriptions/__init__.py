"""Customer and staff subscription pages: plan and quantity changes with a proration preview."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
