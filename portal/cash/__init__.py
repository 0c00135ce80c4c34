"""Staff: write-offs, unapplied cash and refunds, with approvals; customers: the credit
lines of their invoices."""

from typing import Any

from portal.cash.customer import CustomerCreditsController
from portal.cash.pages import CashController

ROUTES: list[Any] = [CashController, CustomerCreditsController]
