"""Tax registrations, rates, provider settings and calculation records."""
