"""Customer payment pages (pay one, part or many invoices; approvals; Checkout return),
the Stripe webhook endpoint and the payments API."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
