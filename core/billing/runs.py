"""Invoice runs: plan a run, process its chunks, recover, report progress.

* ``start_run`` (one transaction) picks every subscription due at ``as_of`` (advance:
  period started and not billed, or ended; arrears and metered: period ended) and every
  account with billable pending charges only, and splits them into ``RunChunk`` rows of
  ``chunk_size`` items (subscriptions of one account stay together where they fit). The
  caller enqueues one job per chunk (``chunk_job_id``): the job id is derived from the
  chunk, so enqueueing twice is harmless.
* ``process_chunk`` builds every draft of the chunk in ONE transaction
  (``invoice_builder.build_chunk``: bulk statements, billed periods in the same
  transaction), then finalizes the chunk's drafts (bulk ``finalize_many``); drafts it
  holds (approval, locked period …) stay drafts for review. Counters are recomputed from
  the database, so a rerun never double counts. A chunk whose worker was killed rolled
  back whatever it had not committed: running it again bills what is left and finalizes
  any draft left behind.
* ``resume_run`` lists the chunks of a run that are not done (for a re-enqueue after a
  crash); ``retry_chunk`` is the console's retry of a failed chunk (audited).

The same code runs on PostgreSQL and on the embedded SQLite database: the raw statements
go through ``core.billing.sql`` (PostgreSQL unchanged; on SQLite translated, and the
chunk's transaction serialized by SQLite's write lock instead of row locks).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from core.audit.log import Actor, AuditRecord, record
from core.billing import sql
from core.billing.invoice_builder import build_chunk, items_json
from core.billing.run_tables import InvoiceRun, RunChunk
from core.billing.usage_queries import metrics_by_code
from core.db import advisory_lock, for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed

DEFAULT_CHUNK_SIZE: Final = 1000
MAX_CHUNK_SIZE: Final = 5000
# catch-up runs one run may chain (two years of monthly periods behind); a later
# scheduled run goes on from there
MAX_CATCH_UP: Final = 24
_PLAN_LOCK_KEY: Final = 0x4C4C_5255  # "LLRU": one run planned at a time

_DUE = """
SELECT s.id, s.billing_account FROM subscription s
JOIN price p ON p.id = s.price
WHERE s.status NOT IN ('canceled', 'trialing') AND (
    s.current_period_end <= $1
    OR (p.billing_timing <> 'arrears' AND p.metric = '' AND s.current_period_start <= $1
        AND NOT EXISTS (SELECT 1 FROM billed_period bp WHERE bp.subscription = s.id
                        AND bp.period_start = s.current_period_start)))
ORDER BY s.billing_account, s.id
"""

_CHARGE_ONLY = """
SELECT DISTINCT billing_account FROM pending_charge
WHERE invoice IS NULL AND (kind <> 'milestone' OR triggered_at IS NOT NULL)
ORDER BY billing_account
"""

_INSERT_CHUNKS = """
INSERT INTO run_chunk (run, number, items, size, status, attempts, invoices, finalized, held,
    error, updated_at)
SELECT $1, n, i::json, sz, 'queued', 0, 0, 0, 0, '', $4
FROM unnest($2::int[], $3::text[], $5::int[]) AS u(n, i, sz)
"""


@dataclass(frozen=True, slots=True)
class RunPlan:
    run_id: int
    chunks: list[int]
    subscriptions: int
    accounts: int


@dataclass
class ChunkReport:
    run_id: int
    number: int
    created: int = 0
    invoices: int = 0
    finalized: int = 0
    held: dict[int, str] = field(default_factory=dict)
    invalid: list[int] = field(default_factory=list)


def chunk_job_id(run_id: int, number: int, attempt: int = 0, namespace: str = "") -> str:
    """``run:{run}:chunk:{n}`` (``:retry:{k}`` for a staff retry or a resume)."""
    base = f"run:{run_id}:chunk:{number}"
    if attempt:
        base += f":retry:{attempt}"
    return f"{namespace}:{base}" if namespace else base


def _split(
    subs: Sequence[tuple[int, int]], accounts: Sequence[int], size: int
) -> list[dict[str, list[int]]]:
    """Chunks of at most ``size`` items; an account's subscriptions stay in one chunk
    unless the account alone exceeds the size."""
    chunks: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"subscriptions": [], "accounts": []}
    last_account = None
    for sid, account in subs:
        full = len(current["subscriptions"]) >= size
        if (full and account != last_account) or len(current["subscriptions"]) >= 2 * size:
            chunks.append(current)
            current = {"subscriptions": [], "accounts": []}
        current["subscriptions"].append(sid)
        last_account = account
    for account in accounts:
        if len(current["subscriptions"]) + len(current["accounts"]) >= size:
            chunks.append(current)
            current = {"subscriptions": [], "accounts": []}
        current["accounts"].append(account)
    if current["subscriptions"] or current["accounts"]:
        chunks.append(current)
    return chunks


async def start_run(
    as_of: datetime,
    actor: Actor,
    *,
    trigger: str = "cron",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follows: dict[str, Any] | None = None,
) -> RunPlan:
    """Plan a run of everything due at ``as_of``; the caller enqueues its chunks.
    ``follows`` (the previous run's row) makes it a catch-up run of that run's chain."""
    if as_of.tzinfo is None:
        raise ValidationFailed({"as_of": "Give the run's date with a time zone."})
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValidationFailed({"chunk_size": f"Between 1 and {MAX_CHUNK_SIZE}."})
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_PLAN_LOCK_KEY)
        conn = sql.current()
        due = [(r["id"], r["billing_account"]) for r in await conn.fetch(_DUE, as_of)]
        with_subs = {a for _, a in due}
        charge_only = [
            r["billing_account"]
            for r in await conn.fetch(_CHARGE_ONLY)
            if r["billing_account"] not in with_subs
        ]
        chunks = _split(due, charge_only, chunk_size)
        [row] = await InvoiceRun.insert(
            InvoiceRun(
                status="running" if chunks else "completed",
                as_of=as_of,
                trigger=trigger,
                created_by=f"{actor.type}:{actor.id}",
                chunk_size=chunk_size,
                subscriptions_total=len(due),
                accounts_total=len(charge_only),
                chunks_total=len(chunks),
                created_at=now,
                finished_at=None if chunks else now,
                follows=int(follows["id"]) if follows else None,
                catch_up=int(follows["catch_up"]) + 1 if follows else 0,
            )
        )
        run_id = int(row["id"])
        if chunks:
            await conn.execute(
                _INSERT_CHUNKS,
                run_id,
                list(range(1, len(chunks) + 1)),
                [items_json(c["subscriptions"], c["accounts"]) for c in chunks],
                now,
                [len(c["subscriptions"]) + len(c["accounts"]) for c in chunks],
            )
        await record(
            AuditRecord(
                actor,
                "invoice_run.started",
                "invoice_run",
                run_id,
                data={
                    "as_of": as_of.isoformat(),
                    "subscriptions": len(due),
                    "accounts": len(charge_only),
                    "chunks": len(chunks),
                },
            )
        )
    return RunPlan(run_id, list(range(1, len(chunks) + 1)), len(due), len(charge_only))


async def start_catch_up(run_id: int, actor: Actor) -> RunPlan | None:
    """After run ``run_id`` completed: a run at the same ``as_of`` for what is still due,
    i.e. subscriptions that were several periods behind and got one period billed (a run
    bills one period per subscription). None when nothing is due, the run billed nothing
    (no progress to continue), its chain already has ``MAX_CATCH_UP`` catch-up runs, or
    another chunk's worker started the catch-up already (``follows`` is unique and the
    run's row is locked). The caller enqueues the chunks."""
    async with transaction():
        run = await for_update(InvoiceRun.select().where(InvoiceRun.id == run_id)).first()
        if run is None or run["status"] != "completed" or run["catch_up"] >= MAX_CATCH_UP:
            return None
        if await InvoiceRun.exists().where(InvoiceRun.follows == run_id):
            return None
        billed = await RunChunk.select(RunChunk.invoices).where(RunChunk.run == run_id)
        if not any(r["invoices"] for r in billed):
            return None
        if not await sql.current().fetch(_DUE + " LIMIT 1", run["as_of"]):
            return None
        return await start_run(
            run["as_of"], actor, trigger="catch-up", chunk_size=run["chunk_size"], follows=run
        )


def _items(raw: Any) -> dict[str, Any]:
    data = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return dict(data)


async def _chunk(run_id: int, number: int) -> dict[str, Any]:
    row = (
        await RunChunk.select(RunChunk.all_columns(), RunChunk.run.as_of.as_alias("as_of"))
        .where((RunChunk.run == run_id) & (RunChunk.number == number))
        .first()
    )
    if row is None:
        raise NotFound("run chunk")
    return row


async def _finalize(invoice_ids: Sequence[int], actor: Actor) -> dict[int, str]:
    """Finalize drafts in bulk; returns the held ones (id -> reason)."""
    if not invoice_ids:
        return {}
    if importlib.util.find_spec("core.invoicing.finalization") is not None:
        from core.invoicing import finalization

        report = await finalization.finalize_many(list(invoice_ids), actor)
        return dict(report.held)
    from core.invoicing.services import finalize  # fallback: one transaction per invoice

    held: dict[int, str] = {}
    for invoice_id in invoice_ids:
        try:
            await finalize(invoice_id, actor)
        except (Conflict, ValidationFailed) as exc:
            held[invoice_id] = str(exc)
    return held


async def process_chunk(run_id: int, number: int, *, clock: datetime | None = None) -> ChunkReport:
    """Bill one chunk (idempotent: run it any number of times, concurrently or after a
    crash: each due period is billed once and every draft ends up finalized or held).
    ``clock`` (tests) replaces the current time: usage received up to it is billed."""
    chunk = await _chunk(run_id, number)
    report = ChunkReport(run_id, number)
    items = _items(chunk["items"])
    actor = Actor.system(f"run:{run_id}")
    now = clock or datetime.now(UTC)
    await RunChunk.update(
        {
            RunChunk.status: "running",
            RunChunk.attempts: RunChunk.attempts + 1,
            RunChunk.updated_at: now,
        }
    ).where(RunChunk.id == chunk["id"])
    sub_ids = [int(s) for s in items.get("subscriptions", [])]
    account_ids = [int(a) for a in items.get("accounts", [])]
    async with transaction():
        metrics = await metrics_by_code(await _metric_codes(sub_ids))
        locked = await for_update(
            RunChunk.select(RunChunk.items).where(RunChunk.id == chunk["id"])
        ).first()
        items = _items(locked["items"])
        result = await build_chunk(
            sql.current(),
            run_id=run_id,
            chunk=number,
            as_of=chunk["as_of"],
            now=now,
            subscription_ids=sub_ids,
            account_ids=account_ids,
            metrics=metrics,
            created_by=f"run:{run_id}",
        )
        if result.invoice_ids:
            items["invoices"] = [*items.get("invoices", []), *result.invoice_ids]
            await RunChunk.update({RunChunk.items: json.dumps(items)}).where(
                RunChunk.id == chunk["id"]
            )
            await record(
                AuditRecord(
                    actor,
                    "invoice.drafted_in_run",
                    "run_chunk",
                    f"{run_id}:{number}",
                    data={"invoices": result.invoice_ids},
                )
            )
    report.created = len(result.invoice_ids)
    report.invalid = result.invalid
    all_ids = [int(i) for i in items.get("invoices", [])]
    drafts = await _drafts(all_ids)
    held = await _finalize(drafts, actor)
    report.held = held
    await _settle_chunk(chunk["id"], run_id, all_ids, held, report)
    return report


async def _metric_codes(sub_ids: Sequence[int]) -> list[str]:
    if not sub_ids:
        return []
    rows = await sql.current().fetch(
        "SELECT DISTINCT p.metric FROM subscription s JOIN price p ON p.id = s.price"
        " WHERE s.id = ANY($1::bigint[]) AND p.metric <> ''",
        list(sub_ids),
    )
    return [r["metric"] for r in rows]


async def _drafts(invoice_ids: Sequence[int]) -> list[int]:
    if not invoice_ids:
        return []
    from core.invoicing.tables import Invoice

    rows = (
        await Invoice.select(Invoice.id)
        .where(Invoice.id.is_in(list(invoice_ids)) & (Invoice.status == "draft"))
        .order_by(Invoice.id)
    )
    return [r["id"] for r in rows]


async def _settle_chunk(
    chunk_id: int,
    run_id: int,
    invoice_ids: Sequence[int],
    held: dict[int, str],
    report: ChunkReport,
) -> None:
    still_draft = set(await _drafts(invoice_ids))
    report.invoices = len(invoice_ids)
    report.finalized = len(invoice_ids) - len(still_draft)
    async with transaction():
        row = await for_update(
            RunChunk.select(RunChunk.items).where(RunChunk.id == chunk_id)
        ).first()
        items = _items(row["items"])
        reasons = {str(k): v for k, v in items.get("held", {}).items() if int(k) in still_draft}
        reasons.update({str(k): v for k, v in held.items() if k in still_draft})
        items["held"] = reasons
        await RunChunk.update(
            {
                RunChunk.status: "done",
                RunChunk.items: json.dumps(items),
                RunChunk.invoices: report.invoices,
                RunChunk.finalized: report.finalized,
                RunChunk.held: len(still_draft),
                RunChunk.error: (
                    "Not billed, price and account currencies differ: subscriptions "
                    + ", ".join(map(str, report.invalid[:50]))
                    if report.invalid
                    else ""
                ),
                RunChunk.updated_at: datetime.now(UTC),
            }
        ).where(RunChunk.id == chunk_id)
        await _maybe_finish(run_id)


async def _maybe_finish(run_id: int) -> None:
    """Inside a transaction: close the run when no chunk is queued or running."""
    run = await for_update(InvoiceRun.select().where(InvoiceRun.id == run_id)).first()
    if run is None:
        return
    statuses = await RunChunk.select(RunChunk.status).where(RunChunk.run == run_id)
    if any(s["status"] in ("queued", "running", "retrying") for s in statuses):
        if run["status"] != "running":
            await InvoiceRun.update(
                {InvoiceRun.status: "running", InvoiceRun.finished_at: None}
            ).where(InvoiceRun.id == run_id)
        return
    failed = any(s["status"] == "failed" for s in statuses)
    status = "failed" if failed else "completed"
    if run["status"] != status:
        await InvoiceRun.update(
            {InvoiceRun.status: status, InvoiceRun.finished_at: datetime.now(UTC)}
        ).where(InvoiceRun.id == run_id)


async def record_chunk_error(run_id: int, number: int, error: str, *, final: bool) -> None:
    """A try of a chunk failed: keep the reason; ``final`` marks it failed (console retry)."""
    async with transaction():
        await RunChunk.update(
            {
                RunChunk.status: "failed" if final else "retrying",
                RunChunk.error: error[:2000],
                RunChunk.updated_at: datetime.now(UTC),
            }
        ).where((RunChunk.run == run_id) & (RunChunk.number == number))
        await _maybe_finish(run_id)


async def retry_chunk(run_id: int, number: int, actor: Actor) -> int:
    """Staff retry of a failed chunk: queue it again; returns the attempt number to put
    in the job id."""
    async with transaction():
        chunk = await for_update(
            RunChunk.select().where((RunChunk.run == run_id) & (RunChunk.number == number))
        ).first()
        if chunk is None:
            raise NotFound("run chunk")
        if chunk["status"] != "failed":
            raise Conflict("only a failed chunk can be retried")
        await RunChunk.update(
            {RunChunk.status: "queued", RunChunk.updated_at: datetime.now(UTC)}
        ).where(RunChunk.id == chunk["id"])
        await _maybe_finish(run_id)
        await record(
            AuditRecord(
                actor,
                "invoice_run.chunk_retried",
                "run_chunk",
                f"{run_id}:{number}",
                data={"previous_error": chunk["error"][:300]},
            )
        )
    return int(chunk["attempts"]) + 1


async def resume_run(run_id: int) -> list[tuple[int, int]]:
    """Chunks of a run that are not done (queued, running, retrying): (number, attempt)
    pairs to enqueue again after a crash. Running a chunk twice is harmless."""
    rows = await RunChunk.select(RunChunk.number, RunChunk.attempts).where(
        (RunChunk.run == run_id) & RunChunk.status.is_in(["queued", "running", "retrying"])
    )
    return [(r["number"], r["attempts"] + 1) for r in rows]


async def stalled_runs() -> list[int]:
    rows = await InvoiceRun.select(InvoiceRun.id).where(InvoiceRun.status == "running")
    return [r["id"] for r in rows]


# --------------------------------------------------------------------------- console queries


@dataclass(frozen=True, slots=True)
class RunProgress:
    run: dict[str, Any]
    chunks_done: int
    chunks_failed: int
    invoices: int
    finalized: int
    held: int
    failed_chunks: list[dict[str, Any]]
    subscriptions_done: int
    notes: list[dict[str, Any]] = field(default_factory=list)  # done chunks with a warning

    @property
    def running(self) -> bool:
        return self.run["status"] in ("planning", "running")

    @property
    def percent(self) -> int:
        total = self.run["chunks_total"]
        return 100 if not total else int(100 * (self.chunks_done + self.chunks_failed) / total)


async def list_runs(limit: int = 50) -> list[dict[str, Any]]:
    return await InvoiceRun.select().order_by(InvoiceRun.id, ascending=False).limit(limit)


async def progress(run_id: int) -> RunProgress:
    run = await InvoiceRun.select().where(InvoiceRun.id == run_id).first()
    if run is None:
        raise NotFound("invoice run")
    chunks = (
        await RunChunk.select(
            RunChunk.number,
            RunChunk.status,
            RunChunk.size,
            RunChunk.invoices,
            RunChunk.finalized,
            RunChunk.held,
            RunChunk.error,
            RunChunk.attempts,
            RunChunk.updated_at,
        )
        .where(RunChunk.run == run_id)
        .order_by(RunChunk.number)
    )
    done = [c for c in chunks if c["status"] == "done"]
    failed = [c for c in chunks if c["status"] in ("failed", "retrying")]
    return RunProgress(
        run=run,
        chunks_done=len(done),
        chunks_failed=sum(1 for c in chunks if c["status"] == "failed"),
        invoices=sum(c["invoices"] for c in chunks),
        finalized=sum(c["finalized"] for c in chunks),
        held=sum(c["held"] for c in chunks),
        failed_chunks=failed,
        subscriptions_done=sum(c["size"] for c in done),
        notes=[c for c in done if c["error"]],
    )


async def held_invoices(run_id: int) -> list[dict[str, Any]]:
    """Drafts of a run that finalization held, with the reason."""
    rows = await RunChunk.select(RunChunk.number, RunChunk.items).where(
        (RunChunk.run == run_id) & (RunChunk.held > 0)
    )
    out = []
    for r in rows:
        for invoice_id, reason in _items(r["items"]).get("held", {}).items():
            out.append({"invoice": int(invoice_id), "reason": reason, "chunk": r["number"]})
    return sorted(out, key=lambda x: x["invoice"])
