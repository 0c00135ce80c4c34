"""Staff invoice-run console and the customer usage page."""

from typing import Any

from portal.billing_runs.customer import CustomerUsageController
from portal.billing_runs.staff import StaffRunsController

ROUTES: list[Any] = [  # route handlers and controllers of this area, mounted by portal.app
    StaffRunsController,
    CustomerUsageController,
]
