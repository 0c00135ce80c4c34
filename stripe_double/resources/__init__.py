"""One module per Stripe resource; each exposes ``ROUTES`` (see ``stripe_double.routes``)."""
