"""arq jobs of the finance area: thin functions that call core services."""

from __future__ import annotations

from typing import Any

FUNCTIONS: list[Any] = []  # job functions, registered in workers.settings
CRON_JOBS: list[Any] = []  # arq cron jobs, registered in workers.settings
