"""Every route of the double: Stripe's API (``/v1``), hosted pages and test controls."""

from __future__ import annotations

from stripe_double import controls
from stripe_double.asgi import Route
from stripe_double.hosted import authenticate, checkout
from stripe_double.resources import (
    charges,
    checkout_sessions,
    customers,
    disputes,
    events,
    payment_intents,
    payment_methods,
    refunds,
    setup_intents,
    webhook_endpoints,
)

API_ROUTES: list[Route] = [
    *customers.ROUTES,
    *payment_methods.ROUTES,
    *setup_intents.ROUTES,
    *payment_intents.ROUTES,
    *charges.ROUTES,
    *refunds.ROUTES,
    *checkout_sessions.ROUTES,
    *disputes.ROUTES,
    *events.ROUTES,
    *webhook_endpoints.ROUTES,
]

PAGE_ROUTES: list[Route] = [
    Route("GET", "/_hosted/checkout/{id}", checkout.show),
    Route("POST", "/_hosted/checkout/{id}", checkout.submit),
    Route("GET", "/_hosted/checkout/{id}/return", checkout.after_authentication),
    Route("GET", "/_hosted/authenticate/{id}", authenticate.show),
    Route("POST", "/_hosted/authenticate/{id}", authenticate.submit),
    Route("GET", "/_test/state", controls.get_state),
    Route("POST", "/_test/reset", controls.reset),
    Route("GET", "/_test/config", controls.config),
    Route("POST", "/_test/config", controls.config),
    Route("POST", "/_test/clock", controls.clock),
    Route("GET", "/_test/cards", controls.test_cards),
    Route("POST", "/_test/disputes", controls.open_dispute),
    Route("POST", "/_test/disputes/{id}/close", controls.close_dispute),
    Route("GET", "/_test/deliveries", controls.deliveries),
    Route("POST", "/_test/events/redeliver", controls.redeliver_many),
    Route("POST", "/_test/events/{id}/redeliver", controls.redeliver_one),
    Route("POST", "/_test/webhooks/flush", controls.flush),
]
