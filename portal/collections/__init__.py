"""Staff: chargebacks with their evidence checklist, dunning and promises to pay."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
