"""Staff: bank statement import and the cash application workbench."""

from typing import Any

from portal.remittance.pages import RemittanceController

ROUTES: list[Any] = [RemittanceController]  # mounted by portal.app
