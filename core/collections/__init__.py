"""Chargebacks, dunning schedules and reminders, promises to pay."""
