"""Customer payment pages (pay one, part or many invoices; approvals; Checkout return),
the Stripe webhook endpoint and the payments API."""

from typing import Any

from portal.payments.api import PaymentsApiController
from portal.payments.pages import PayController
from portal.payments.webhook import stripe_webhook

# route handlers and controllers of this area, mounted by portal.app
ROUTES: list[Any] = [PayController, PaymentsApiController, stripe_webhook]
