"""Stripe test double: an HTTP server speaking the subset of Stripe's API v1 Ledgerline uses.

The real ``stripe`` SDK talks to it through its API base (``StripeClient(key,
base_addresses={"api": url})`` or ``stripe.api_base = url``). It keeps everything in
memory, honours idempotency keys, accepts Stripe's test cards, serves a hosted checkout
page and a 3-D Secure page, and sends webhooks signed exactly as Stripe signs them.
See ``stripe_double/README.md``.

    from stripe_double import start_in_thread
    double = start_in_thread(webhooks={"http://127.0.0.1:8000/webhooks/stripe": "whsec_…"})
    ...
    double.stop()

or ``python -m stripe_double --port 12111 --webhook URL=whsec_…``.
"""

from stripe_double.app import StripeDouble
from stripe_double.server import DEFAULT_PORT, RunningDouble, create_app, run, start_in_thread
from stripe_double.state import Config

__all__ = [
    "DEFAULT_PORT",
    "Config",
    "RunningDouble",
    "StripeDouble",
    "create_app",
    "run",
    "start_in_thread",
]
