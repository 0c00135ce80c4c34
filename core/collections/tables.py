"""Chargebacks, dunning schedules and reminders, promises to pay. tables."""

from __future__ import annotations
