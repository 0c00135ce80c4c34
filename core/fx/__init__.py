"""Exchange rates (manual and ECB reference rates)."""
