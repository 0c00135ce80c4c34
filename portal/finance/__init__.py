"""Staff: exchange rates, tax settings, invoice drafts to review, approve and finalize."""

from typing import Any

from portal.finance.pages import FinanceController

ROUTES: list[Any] = [FinanceController]  # mounted by portal.app
