"""Staff invoice-run console (``/staff/runs``): runs with live progress, failed chunks
with their reasons and a retry button, late usage held for review, milestone charges.

Every staff user can read; starting a run, retrying a chunk, releasing or discarding a
late event and recording milestones need billing_ops or finance_admin (others: 403).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from arq.connections import ArqRedis
from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.billing import milestones, reconciliation, runs
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.roles import StaffRole
from core.identity.security import staff_role
from core.identity.tables import BillingAccount
from portal.auth import actor_for, current_session, requires_staff
from portal.staff.roles import requires_staff_role
from workers.billing_runs_jobs import enqueue_chunks

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
OPERATOR_ROLES = frozenset({StaffRole.BILLING_OPS.value, StaffRole.FINANCE_ADMIN.value})
requires_operator = requires_staff_role(
    OPERATOR_ROLES, "Only billing operations and finance admins may do this."
)
BASE = "/staff/runs"


async def _page(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = await current_session(request)
    assert session is not None  # requires_staff
    return {
        "user": session,
        "nav": "staff",
        "may_operate": await staff_role(session.user_id) in OPERATOR_ROLES,
    }


def _queue(request: Request[Any, Any, Any]) -> ArqRedis:
    redis = request.app.state["redis"]
    return ArqRedis(connection_pool=redis.connection_pool)


def _field(data: dict[str, Any], name: str, limit: int = 300) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


class StaffRunsController(Controller):
    path = BASE
    guards = [requires_staff]

    @get("/", name="staff_runs", media_type=MediaType.HTML)
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        notice = request.query_params.get("notice", "")
        return Template(
            "billing_runs/runs.html",
            context={
                **await _page(request),
                "runs": await runs.list_runs(),
                "held_count": len(await reconciliation.held_events()),
                "notice": {"nothing": "Nothing was due: the run is already complete."}.get(
                    notice, ""
                ),
            },
        )

    @post("/", media_type=MediaType.HTML, status_code=303, guards=[requires_operator])
    async def start(self, request: Request[Any, Any, Any]) -> Redirect:
        plan = await runs.start_run(datetime.now(UTC), actor_for(request), trigger="staff")
        await enqueue_chunks(
            _queue(request),
            plan.run_id,
            [(n, 0) for n in plan.chunks],
            namespace=request.app.state["namespace"],
        )
        suffix = "" if plan.chunks else "?notice=nothing"
        return Redirect(f"{BASE}/{plan.run_id}{suffix}", status_code=303)

    @get("/{run_id:int}", media_type=MediaType.HTML)
    async def detail(self, request: HTMXRequest, run_id: FromPath[int]) -> Template:
        try:
            progress = await runs.progress(run_id)
        except NotFound as exc:
            raise NotFoundException() from exc
        context = {
            **await _page(request),
            "p": progress,
            "held": await runs.held_invoices(run_id),
            "base": BASE,
        }
        if request.htmx:
            return Template("billing_runs/_progress.html", context=context)
        return Template("billing_runs/run.html", context=context)

    @post(
        "/{run_id:int}/chunks/{number:int}/retry",
        media_type=MediaType.HTML,
        status_code=303,
        guards=[requires_operator],
    )
    async def retry(
        self, request: Request[Any, Any, Any], run_id: FromPath[int], number: FromPath[int]
    ) -> Redirect:
        try:
            attempt = await runs.retry_chunk(run_id, number, actor_for(request))
        except NotFound as exc:
            raise NotFoundException() from exc
        except Conflict:
            return Redirect(f"{BASE}/{run_id}", status_code=303)
        await enqueue_chunks(
            _queue(request), run_id, [(number, attempt)], namespace=request.app.state["namespace"]
        )
        return Redirect(f"{BASE}/{run_id}", status_code=303)

    # ------------------------------------------------------------------ late usage review

    @get("/usage-review", media_type=MediaType.HTML)
    async def usage_review(self, request: Request[Any, Any, Any]) -> Template:
        return Template(
            "billing_runs/usage_review.html",
            context={
                **await _page(request),
                "events": await reconciliation.held_events(),
                "window_hours": int(reconciliation.DEFAULT_WINDOW.total_seconds() // 3600),
            },
        )

    @post(
        "/usage-review/{late_id:int}",
        media_type=MediaType.HTML,
        status_code=303,
        guards=[requires_operator],
    )
    async def decide(
        self, request: Request[Any, Any, Any], late_id: FromPath[int], data: Form
    ) -> Redirect:
        decision = _field(data, "decision", 16)
        try:
            await reconciliation.review(late_id, decision, actor_for(request))
        except NotFound as exc:
            raise NotFoundException() from exc
        except Conflict:
            pass  # already decided (or a bad decision): the list shows the truth
        return Redirect(f"{BASE}/usage-review", status_code=303)

    # ------------------------------------------------------------------ milestones

    async def _milestones(
        self,
        request: Request[Any, Any, Any],
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
    ) -> Template:
        accounts = await BillingAccount.select(
            BillingAccount.id, BillingAccount.code, BillingAccount.name, BillingAccount.currency
        ).order_by(BillingAccount.code)
        return Template(
            "billing_runs/milestones.html",
            context={
                **await _page(request),
                "rows": await milestones.list_milestones(),
                "accounts": accounts,
                "form": form or {},
                "errors": errors or {},
            },
            status_code=422 if errors else 200,
        )

    @get("/milestones", media_type=MediaType.HTML)
    async def milestone_list(self, request: Request[Any, Any, Any]) -> Template:
        return await self._milestones(request)

    @post("/milestones", media_type=MediaType.HTML, status_code=303, guards=[requires_operator])
    async def milestone_create(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: _field(data, k, 500) for k in ("account", "description", "amount", "trigger")}
        account = (
            int(form["account"]) if form["account"].isdigit() and len(form["account"]) < 10 else 0
        )
        try:
            await milestones.record_milestone(
                account, form["description"], form["amount"], form["trigger"], actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._milestones(request, form, exc.errors)
        return Redirect(f"{BASE}/milestones", status_code=303)

    @post(
        "/milestones/{charge_id:int}/trigger",
        media_type=MediaType.HTML,
        status_code=303,
        guards=[requires_operator],
    )
    async def milestone_trigger(
        self, request: Request[Any, Any, Any], charge_id: FromPath[int], data: Form
    ) -> Redirect:
        try:
            await milestones.record_trigger(charge_id, actor_for(request), _field(data, "note"))
        except NotFound as exc:
            raise NotFoundException() from exc
        except Conflict:
            pass
        return Redirect(f"{BASE}/milestones", status_code=303)
