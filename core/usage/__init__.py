"""Metered usage: organization-scoped API keys and batch ingestion of usage events."""
