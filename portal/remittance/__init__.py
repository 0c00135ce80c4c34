"""Staff: bank statement import and the cash application workbench."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
