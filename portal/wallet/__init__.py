"""Saved payment methods, autopay enrollment, receipts and the payment history."""

from typing import Any

ROUTES: list[Any] = []  # route handlers and controllers of this area, mounted by portal.app
