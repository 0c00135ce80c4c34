"""The staff console's home: audit-chain integrity and background jobs that failed."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from core.audit.log import verify_chain
from core.audit.tables import AuditEvent
from core.operations.tables import JobFailure
from portal.auth import current_session, requires_staff


class StaffController(Controller):
    path = "/staff"
    guards = [requires_staff]

    @get("/", name="staff_home")
    async def home(self, request: Request[Any, Any, Any]) -> Template:
        failures = (
            await JobFailure.select()
            .where(JobFailure.resolved_at.is_null())
            .order_by(JobFailure.failed_at, ascending=False)
            .limit(50)
        )
        events = await AuditEvent.select().order_by(AuditEvent.id, ascending=False).limit(20)
        return Template(
            "staff/home.html",
            context={
                "user": await current_session(request),
                "nav": "staff",
                "chain": await verify_chain(),
                "failures": failures,
                "events": events,
            },
        )
