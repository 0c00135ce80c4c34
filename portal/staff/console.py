"""The staff console's home: audit-chain integrity and background jobs that failed."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.audit.log import verify_chain
from core.audit.tables import AuditEvent
from core.identity.security import NotPermitted, open_flags, resolve_flag, staff_role
from core.operations.tables import JobFailure
from portal.auth import actor_for, current_session, requires_staff


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
        session = await current_session(request)
        assert session is not None  # requires_staff
        return Template(
            "staff/home.html",
            context={
                "user": session,
                "flags": await open_flags(),
                "can_resolve": await staff_role(session.user_id) not in ("", "auditor"),
                "nav": "staff",
                "chain": await verify_chain(),
                "failures": failures,
                "events": events,
            },
        )

    @post("/security-flags/{flag_id:int}/resolve", status_code=303)
    async def resolve_security_flag(
        self, request: Request[Any, Any, Any], flag_id: FromPath[int]
    ) -> Redirect:
        session = await current_session(request)
        assert session is not None  # requires_staff
        try:
            await resolve_flag(flag_id, session.user_id, actor_for(request))
        except NotPermitted as exc:
            raise PermissionDeniedException(str(exc)) from exc
        return Redirect("/staff#flags-h", status_code=303)
