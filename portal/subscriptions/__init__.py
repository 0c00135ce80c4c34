"""Customer and staff subscription pages: plan and quantity changes with a proration preview."""

from typing import Any

from portal.subscriptions.customer import CustomerSubscriptionController
from portal.subscriptions.staff import StaffCatalogController, StaffSubscriptionController

ROUTES: list[Any] = [  # route handlers and controllers of this area, mounted by portal.app
    CustomerSubscriptionController,
    StaffSubscriptionController,
    StaffCatalogController,
]
