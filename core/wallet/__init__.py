"""Saved payment methods (Stripe tokens only) and autopay enrollments."""
