"""Operational records: background jobs that failed after their last try."""

from __future__ import annotations

from piccolo.columns import JSON, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class JobFailure(Table, tablename="job_failure"):
    job_name = Varchar(length=100, index=True)
    job_id = Varchar(length=200, unique=True)
    arguments = JSON(default="{}")
    error = Text()
    tries = Integer()
    failed_at = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)
