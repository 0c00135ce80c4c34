"""Cash application services: CSV mappings, the matching configuration, importing a
statement (parse → refuse duplicates → match → store and auto-apply in one transaction)
and the workbench actions (apply, split, accept a suggestion, unapply, mark as
unidentified, note). Every action is audited; staff roles are checked here.

Importing on PostgreSQL writes in bulk (``core.remittance.bulk``); on SQLite (the
embedded default, small files) the same outcome is written row by row through
``core.payments.services.record_payment``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from core.audit.log import (
    Actor,
    AuditRecord,
    PreparedEvents,
    append_prepared,
    locked_head,
    prepare,
    record,
)
from core.cash.access import OPERATORS, READERS, actor_ref, require
from core.db import for_update, is_sqlite, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.security import NotPermitted
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger.tables import LedgerAccount
from core.money import AmountParseError, parse_amount
from core.payments.allocation import AllocationRequest
from core.payments.tables import Allocation, Payment
from core.remittance import bulk
from core.remittance.matching import (
    InvoiceIndex,
    Line,
    MatchConfig,
    OpenInvoice,
    Outcome,
    Suggestion,
    config_from_dict,
    match_lines,
    payer_keys,
)
from core.remittance.parsers import (
    FORMATS,
    CsvMappingSpec,
    ParsedLine,
    ParsedStatement,
    StatementRefused,
    check_mapping,
    parse,
)
from core.remittance.tables import (
    BankStatement,
    CsvMapping,
    KnownPayer,
    MatchingSettings,
    StatementLine,
)

SYSTEM = Actor.system("remittance")
NOTE_MAX = 1000
OPEN_STATUSES = ("suggested", "unmatched", "unidentified")


@dataclass(frozen=True, slots=True)
class ImportResult:
    statement_id: int
    lines: int
    auto_applied: int
    suggested: int
    unmatched: int
    ignored: int
    written_off: int = 0
    timings: tuple[tuple[str, float], ...] = ()  # (phase, seconds): parse, load, match, store


# ------------------------------------------------------------------ mappings and config


def mapping_spec(row: Mapping[str, Any]) -> CsvMappingSpec:
    columns = row["columns"]
    if isinstance(columns, str):
        columns = json.loads(columns or "{}")
    return CsvMappingSpec(
        columns=dict(columns),
        delimiter=row["delimiter"],
        has_header=row["has_header"] == "true",
        date_format=row["date_format"],
        decimal_separator=row["decimal_separator"],
        sign_convention=row["sign_convention"],
        default_currency=row["default_currency"],
    )


async def list_mappings() -> list[dict[str, Any]]:
    return list(await CsvMapping.select().order_by(CsvMapping.name))


async def save_mapping(
    *,
    name: str,
    columns: Mapping[str, str],
    delimiter: str,
    has_header: bool,
    date_format: str,
    decimal_separator: str,
    sign_convention: str,
    default_currency: str,
    actor: Actor,
) -> int:
    """Create or replace the named CSV column mapping."""
    await require(actor, OPERATORS)
    name = name.strip()
    errors: dict[str, str] = {}
    if not 1 <= len(name) <= 80:
        errors["name"] = "Give the mapping a name (at most 80 characters)."
    cleaned = {k: v.strip() for k, v in columns.items() if v and v.strip()}
    spec = CsvMappingSpec(
        cleaned,
        delimiter or ",",
        has_header,
        date_format.strip(),
        decimal_separator,
        sign_convention,
        default_currency.strip().upper(),
    )
    errors.update(check_mapping(spec))
    if errors:
        raise ValidationFailed(errors)
    now = datetime.now(UTC)
    values = {
        CsvMapping.columns: json.dumps(cleaned),
        CsvMapping.delimiter: spec.delimiter,
        CsvMapping.has_header: "true" if has_header else "false",
        CsvMapping.date_format: spec.date_format,
        CsvMapping.decimal_separator: spec.decimal_separator,
        CsvMapping.sign_convention: spec.sign_convention,
        CsvMapping.default_currency: spec.default_currency,
    }
    async with transaction():
        existing = await CsvMapping.select(CsvMapping.id).where(CsvMapping.name == name).first()
        if existing:
            mapping_id = int(existing["id"])
            await CsvMapping.update(values).where(CsvMapping.id == mapping_id)
        else:
            [row] = await CsvMapping.insert(
                CsvMapping(
                    name=name,
                    created_at=now,
                    created_by=actor_ref(actor),
                    **{col._meta.name: v for col, v in values.items()},
                )
            )
            mapping_id = int(row["id"])
        await record(
            AuditRecord(
                actor, "remittance.mapping_saved", "csv_mapping", mapping_id, data={"name": name}
            )
        )
    return mapping_id


async def load_config() -> MatchConfig:
    row = await MatchingSettings.select(MatchingSettings.config).first()
    if row is None:
        return MatchConfig()
    raw = row["config"]
    return config_from_dict(json.loads(raw) if isinstance(raw, str) else raw)


def config_as_dict(config: MatchConfig) -> dict[str, Any]:
    """The configuration in the JSON shape ``save_config`` accepts."""
    return {
        "rules": list(config.rules),
        "auto_apply_confidence": config.auto_apply_confidence,
        "max_edit_distance": config.max_edit_distance,
        "tolerances": {
            code: {"absolute_minor": t.absolute_minor, "percent": str(t.percent)}
            for code, t in config.tolerances.items()
        },
        "confidence": dict(config.confidence),
        "subset_max_invoices": config.subset_max_invoices,
        "subset_max_size": config.subset_max_size,
    }


async def save_config(raw: Mapping[str, Any], actor: Actor) -> MatchConfig:
    """Store the matching configuration (see ``config_from_dict`` for its shape)."""
    await require(actor, {"finance_admin"})
    try:
        config = config_from_dict(raw)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValidationFailed({"config": str(exc)}) from None
    now = datetime.now(UTC)
    async with transaction():
        await MatchingSettings.delete(force=True)
        await MatchingSettings.insert(
            MatchingSettings(
                config=json.dumps(dict(raw)), updated_by=actor_ref(actor), updated_at=now
            )
        )
        await record(AuditRecord(actor, "remittance.config_saved", data={"config": dict(raw)}))
    return config


# ------------------------------------------------------------------ loading the index


_OPEN_INVOICES_SQL = (
    "SELECT id, number, billing_account, currency, balance_minor, due_date FROM invoice"
    " WHERE status = 'open' AND document_type = 'invoice' AND balance_minor > 0"
    " AND number IS NOT NULL AND currency = ANY($1::varchar[])"
)


async def _open_invoices(codes: list[str]) -> list[OpenInvoice]:
    if not is_sqlite():  # one raw fetch: 100,000 rows as tuples, no per-row dicts
        from core.db import engine

        db: Any = engine()
        if db.pool is not None:
            async with db.pool.acquire() as conn:
                rows = await conn.fetch(_OPEN_INVOICES_SQL, codes)
        else:
            conn = await db.get_new_connection()
            try:
                rows = await conn.fetch(_OPEN_INVOICES_SQL, codes)
            finally:
                await conn.close()
        return [OpenInvoice(*r) for r in rows]
    rows = await Invoice.select(
        Invoice.id,
        Invoice.number,
        Invoice.billing_account,
        Invoice.currency,
        Invoice.balance_minor,
        Invoice.due_date,
    ).where(
        (Invoice.status == "open")
        & (Invoice.document_type == "invoice")
        & (Invoice.balance_minor > 0)
        & Invoice.number.is_not_null()
        & Invoice.currency.is_in(codes)
    )
    return [
        OpenInvoice(
            r["id"],
            r["number"],
            r["billing_account"],
            r["currency"],
            r["balance_minor"],
            r["due_date"],
        )
        for r in rows
    ]


@contextmanager
def _no_gc() -> Iterator[None]:
    """Building 100,000-entry indexes makes the cyclic GC run over and over for nothing
    (nothing here forms cycles): pause it for the duration, then restore it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def load_index(currencies: Iterable[str]) -> InvoiceIndex:
    """Open invoices of the given currencies, known payers and customer names."""
    codes = sorted(set(currencies)) or ["-"]
    invoices = await _open_invoices(codes)
    known: dict[str, set[int]] = {}
    for r in await KnownPayer.select(KnownPayer.payer_key, KnownPayer.billing_account):
        known.setdefault(r["payer_key"], set()).add(r["billing_account"])
    account_ids = {inv.billing_account_id for inv in invoices}
    names: dict[int, list[str]] = {}
    entities: dict[int, int] = {}
    if account_ids:
        for r in await BillingAccount.select(
            BillingAccount.id,
            BillingAccount.issuing_entity,
            BillingAccount.organization.name.as_alias("org"),
        ).where(BillingAccount.id.is_in(sorted(account_ids))):
            names[r["id"]] = [r["org"]]
            entities[r["id"]] = r["issuing_entity"]
    index = InvoiceIndex(invoices, known, names)
    index.entities = entities  # billing account -> issuing entity, for the entries
    # what the table already holds: an import only writes pairs it does not know yet
    index.stored_payers = frozenset((k, a) for k, accounts in known.items() for a in accounts)
    return index


# ------------------------------------------------------------------ import

# PostgreSQL imports are matched and written chunk by chunk (``_chunks``): while the server writes
# one chunk's rows, the next chunk is matched in Python, so the database and the
# matcher work at the same time. Matching yields to the event loop every
# ``_MATCH_SLICE`` lines so that the writer's round trips go on meanwhile.
_CHUNK_LINES = 2000


def _chunks(count: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the chunks: a quarter-size first chunk so that writing starts
    early, then ``size`` lines each (the last one is whatever is left)."""
    bounds = [0, min(count, max(1, size // 4))]
    while bounds[-1] < count:
        bounds.append(min(count, bounds[-1] + size))
    return list(pairwise(bounds)) if count else []


_MATCH_SLICE = 8


async def _refuse_duplicate(parsed: ParsedStatement) -> None:
    found = (
        await BankStatement.select(BankStatement.id, BankStatement.imported_at)
        .where(
            (BankStatement.statement_key == parsed.key)
            | (BankStatement.content_hash == parsed.content_hash)
        )
        .first()
    )
    if found:
        when = found["imported_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise ValidationFailed(
            {
                "file": f"Duplicate: this statement ({parsed.statement_id}) was already "
                f"imported on {when} (import #{found['id']}). Nothing was stored."
            }
        )


def _plan(
    key: int, s: Suggestion, source: ParsedLine, entities: Mapping[int, int]
) -> bulk.PaymentPlan:
    """The payment to record for an auto-applied line."""
    return bulk.PaymentPlan(
        key=key,
        billing_account_id=s.billing_account_id,
        issuing_entity_id=entities[s.billing_account_id],
        currency=source.currency,
        amount_minor=source.amount_minor,
        allocations=s.allocations,
        reference=(source.bank_reference or source.reference)[:120],
        value_date=source.value_date,
        audit={
            "statement_line": source.line_no,
            "rule": s.rule,
            "confidence": s.confidence,
            "amount": source.amount_minor,
            "unapplied": source.amount_minor - s.applied_minor,
            "allocations": {str(i): a for i, a in s.allocations},
        },
    )


def _short_within_tolerance(
    config: MatchConfig, index: InvoiceIndex, outcome: Outcome, before: Mapping[int, int]
) -> list[int]:
    """Invoices an auto-applied line left with a residual the tolerance accepted."""
    s = outcome.suggestion
    if s is None or not outcome.auto or s.unapplied_minor:
        return []
    total = sum(before[i] for i, _ in s.allocations)
    shortfall = total - s.applied_minor
    if shortfall <= 0 or not config.tolerance(outcome.line.currency).allows(shortfall, total):
        return []
    return [i for i, a in s.allocations if a < before[i]]


async def import_statement(
    *,
    fmt: str,
    data: bytes,
    actor: Actor,
    filename: str = "",
    mapping_id: int | None = None,
    write_off_residuals: bool = True,
) -> ImportResult:
    """Import one statement file. A malformed file or a duplicate raises
    ``ValidationFailed({"file": ...})`` and stores nothing.

    The cyclic garbage collector is paused for the call: building 100,000-entry indexes
    and 10,000-row batches (acyclic objects) would otherwise trigger it over and over."""
    with _no_gc():
        return await _import_statement(
            fmt=fmt,
            data=data,
            actor=actor,
            filename=filename,
            mapping_id=mapping_id,
            write_off_residuals=write_off_residuals,
        )


async def _import_statement(
    *,
    fmt: str,
    data: bytes,
    actor: Actor,
    filename: str,
    mapping_id: int | None,
    write_off_residuals: bool,
) -> ImportResult:
    await require(actor, OPERATORS, system=True)
    if fmt not in FORMATS:
        raise ValidationFailed({"format": "Choose a file format."})
    spec: CsvMappingSpec | None = None
    mapping_name = ""
    if fmt == "csv":
        if mapping_id is None:
            raise ValidationFailed({"mapping": "Choose the CSV column mapping."})
        row = await CsvMapping.select().where(CsvMapping.id == mapping_id).first()
        if row is None:
            raise ValidationFailed({"mapping": "Choose the CSV column mapping."})
        spec, mapping_name = mapping_spec(row), row["name"]
    started = time.perf_counter()
    try:
        parsed = parse(fmt, data, spec)
    except StatementRefused as exc:
        raise ValidationFailed({"file": f"Refused: {exc}. Nothing was stored."}) from None
    await _refuse_duplicate(parsed)
    parsed_at = time.perf_counter()
    config = await load_config()
    run = _Run(
        parsed,
        config,
        await load_index({line.currency for line in parsed.lines if line.amount_minor > 0}),
        actor,
        datetime.now(UTC),
    )
    loaded_at = time.perf_counter()
    async with transaction():
        statement_id = await _insert_statement(parsed, filename, mapping_name, actor, run.now)
        if is_sqlite():
            await run.rowwise(statement_id)
        else:
            await run.bulk(statement_id)
        await _finish(statement_id, parsed, filename, run)
    stored_at = time.perf_counter()
    written = 0
    if write_off_residuals:
        written = await residual_hook(run.residual_invoices)
    done_at = time.perf_counter()
    return ImportResult(
        statement_id=statement_id,
        lines=len(parsed.lines),
        auto_applied=run.counts["auto_applied"],
        suggested=run.counts["suggested"],
        unmatched=run.counts["unmatched"],
        ignored=len(parsed.lines) - sum(run.counts.values()),
        written_off=written,
        timings=tuple(
            (name, round(seconds, 4))
            for name, seconds in (
                ("parse", parsed_at - started),
                ("load", loaded_at - parsed_at),
                ("match", run.match_seconds),  # overlapped with "store" on PostgreSQL
                ("store", stored_at - loaded_at - run.match_seconds),
                ("write_off", done_at - stored_at),
            )
        ),
    )


async def residual_hook(invoice_ids: Sequence[int]) -> int:
    """After a short payment within tolerance: hand each residual to the cash area's
    write-off rules (written off at once, or queued for a finance admin's approval)."""
    try:
        from core.cash.writeoffs import write_off_residual
    except ImportError:  # the cash area is optional
        return 0
    done = 0
    for invoice_id in invoice_ids:
        outcome = await write_off_residual(invoice_id, SYSTEM)
        done += outcome.status == "written_off"
    return done


async def _insert_statement(
    parsed: ParsedStatement, filename: str, mapping_name: str, actor: Actor, now: datetime
) -> int:
    """The statement row; its unique keys refuse a racing duplicate import."""
    try:
        [row] = await BankStatement.insert(
            BankStatement(
                format=parsed.format,
                statement_key=parsed.key,
                statement_ref=parsed.statement_id[:120],
                bank_account=parsed.bank_account[:64],
                content_hash=parsed.content_hash,
                filename=filename[:200],
                mapping_name=mapping_name,
                line_count=len(parsed.lines),
                imported_by=actor_ref(actor),
                imported_at=now,
            )
        )
    except Exception as exc:  # unique violation: a concurrent import of the same file
        if "unique" in str(exc).lower():
            raise ValidationFailed(
                {"file": "Duplicate: this statement was already imported. Nothing was stored."}
            ) from None
        raise
    return int(row["id"])


_REFUSED_NOTE = "; not applied: the invoice balance changed during the import"


@dataclass(slots=True)
class _Tally:
    """Status counts of some statement lines and the (payer key, account) pairs learned."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"auto_applied": 0, "suggested": 0, "unmatched": 0}
    )
    learned: list[tuple[str, int]] = field(default_factory=list)

    def add_to(self, counts: dict[str, int], learned: list[tuple[str, int]]) -> None:
        for status, n in self.counts.items():
            counts[status] += n
        learned.extend(self.learned)


@dataclass(frozen=True, slots=True)
class _Batch:
    """One chunk of an import, ready to write (``_Run._batch``)."""

    statement_id: int
    lines: Sequence[ParsedLine]
    outcomes: Sequence[Outcome | None]
    ids: Sequence[tuple[int, int]]
    payments: bulk.PaymentRows
    audit: PreparedEvents
    statement_rows: list[tuple[Any, ...]]
    tally: _Tally
    audit_head: str | None


class _Run:
    """One import's matching and writing state: the lines are matched in file order
    (auto-applied lines consume the balances later lines see) and stored with their
    payments inside the caller's transaction."""

    def __init__(
        self,
        parsed: ParsedStatement,
        config: MatchConfig,
        index: InvoiceIndex,
        actor: Actor,
        now: datetime,
    ) -> None:
        self.parsed, self.config, self.index = parsed, config, index
        self.actor, self.now = actor, now
        self.before = dict(index.remaining)
        self.stored_payers = index.stored_payers  # what the known payer table holds
        self.counts = {"auto_applied": 0, "suggested": 0, "unmatched": 0}
        self.learned: list[tuple[str, int]] = []
        self.residual_invoices: list[int] = []
        self.match_seconds = 0.0
        self.next_key = 0

    def match(self, lines: Sequence[ParsedLine]) -> list[Outcome | None]:
        """Outcomes of ``lines`` in order (None for a debit, which is ignored)."""
        started = time.perf_counter()
        config, index = self.config, self.index
        out: list[Outcome | None] = []
        for source in lines:
            if source.amount_minor <= 0:
                out.append(None)
                continue
            line = Line(
                self.next_key,
                source.amount_minor,
                source.currency,
                source.reference,
                source.payer_name,
                source.payer_account,
            )
            self.next_key += 1
            [outcome] = match_lines(config, index, [line])
            if outcome.auto:
                self.residual_invoices.extend(
                    _short_within_tolerance(config, index, outcome, self.before)
                )
            out.append(outcome)
        self.match_seconds += time.perf_counter() - started
        return out

    def plans(
        self, lines: Sequence[ParsedLine], outcomes: Sequence[Outcome | None]
    ) -> list[bulk.PaymentPlan]:
        entities = self.index.entities
        return [
            _plan(o.line.key, o.suggestion, source, entities)
            for source, o in zip(lines, outcomes, strict=True)
            if o is not None and o.auto and o.suggestion is not None
        ]

    def records(
        self,
        statement_id: int,
        lines: Sequence[ParsedLine],
        outcomes: Sequence[Outcome | None],
        payment_of: Mapping[int, int],
        refused: set[int],
    ) -> tuple[list[tuple[Any, ...]], _Tally]:
        """Statement line rows (``_LINE_COLUMNS`` order), and their status counts and the
        payers the applied lines teach (for ``_Tally.add_to`` once they are stored)."""
        tally = _Tally()
        counts, learned, now = tally.counts, tally.learned, self.now
        rows: list[tuple[Any, ...]] = []
        for line, outcome in zip(lines, outcomes, strict=True):
            s = outcome.suggestion if outcome is not None else None
            if outcome is None:
                status, reason = "ignored", ""
            elif s is None:
                status, reason = "unmatched", "no rule found a match"
            elif outcome.auto and outcome.line.key not in refused:
                status, reason = "auto_applied", s.reason
                learned.extend(
                    (k, s.billing_account_id)
                    for k in payer_keys(line.payer_name, line.payer_account)
                )
            else:
                status = "suggested"
                reason = s.reason + (_REFUSED_NOTE if outcome.auto else "")
            if status != "ignored":
                counts[status] += 1
            rows.append(
                (
                    statement_id,
                    line.line_no,
                    line.value_date,
                    line.amount_minor,
                    line.currency,
                    line.reference[:2000],
                    line.payer_name[:200],
                    line.payer_account[:64],
                    line.bank_reference[:120],
                    status,
                    s.rule if s else "",
                    reason,
                    s.confidence if s else 0,
                    _suggestion_json(s),
                    s.billing_account_id if s else None,
                    payment_of.get(outcome.line.key) if outcome is not None else None,
                    "",
                    now,
                )
            )
        return rows, tally

    async def bulk(self, statement_id: int) -> None:
        """PostgreSQL: chunk k+1 is matched and its rows are built (payments, entries,
        audit events hashed, statement lines) while chunk k is written (COPY and
        ``UPDATE … FROM unnest``, no per-line round trip). Payment and entry ids are
        reserved in one round trip at the start, while the first chunk is matched."""
        conn = bulk.connection()
        ledger_ids = {r["code"]: r["id"] for r in await LedgerAccount.select()}
        lines = self.parsed.lines
        credits = sum(1 for line in lines if line.amount_minor > 0)
        reserving = asyncio.create_task(_reserve(conn, credits))
        ids: list[tuple[int, int]] | None = None
        writer: asyncio.Task[None] | None = None
        head: str | None = None  # the audit chain's head once the previous batch is in
        try:
            for start, end in _chunks(len(lines), _CHUNK_LINES):
                chunk = lines[start:end]
                outcomes: list[Outcome | None] = []
                for piece in range(0, len(chunk), _MATCH_SLICE):
                    outcomes.extend(self.match(chunk[piece : piece + _MATCH_SLICE]))
                    await asyncio.sleep(0)  # let the writer's round trips go on
                plans = self.plans(chunk, outcomes)
                if ids is None:
                    ids, head = await reserving
                taken, ids = ids[: len(plans)], ids[len(plans) :]
                batch = await self._batch(
                    statement_id, chunk, outcomes, plans, taken, ledger_ids, head
                )
                head = batch.audit.last_hash
                if end == len(lines):
                    await self._release_index()  # while the previous chunk is written
                if writer is not None:
                    await writer  # one statement at a time on the connection, in order
                writer = asyncio.create_task(self._write(conn, batch, ledger_ids))
            if writer is not None:
                await writer
        except BaseException:
            for task in (reserving, writer):
                if task is not None and not task.done():
                    await asyncio.gather(task, return_exceptions=True)
            raise

    async def _batch(
        self,
        statement_id: int,
        lines: Sequence[ParsedLine],
        outcomes: Sequence[Outcome | None],
        plans: Sequence[bulk.PaymentPlan],
        ids: Sequence[tuple[int, int]],
        ledger_ids: Mapping[str, int],
        audit_head: str | None,
        refused: Sequence[bulk.PaymentPlan] = (),
    ) -> _Batch:
        """Everything one chunk writes, built without I/O (``plans`` are the ones to
        apply, ``refused`` the ones the balance check turned down). It yields to the
        event loop between steps so that the writer's statements go on meanwhile."""
        rows = bulk.build_rows(plans, ids, self.now, ledger_ids)
        await asyncio.sleep(0)
        audit = prepare(
            [
                AuditRecord(self.actor, "payment.recorded", "payment", pid, data=p.audit)
                for p, pid in zip(plans, rows.payment_ids, strict=True)
            ],
            audit_head,
        )
        await asyncio.sleep(0)
        payment_of = {p.key: pid for p, pid in zip(plans, rows.payment_ids, strict=True)}
        statement_rows, tally = self.records(
            statement_id, lines, outcomes, payment_of, {p.key for p in refused}
        )
        return _Batch(
            statement_id, lines, outcomes, ids, rows, audit, statement_rows, tally, audit_head
        )

    async def _release_index(self) -> None:
        """Matching is over: free the index's 100,000-entry structures piece by piece,
        yielding between pieces, so that their deallocation overlaps the last writes
        instead of delaying the reply."""
        index = self.index
        self.before = {}
        await asyncio.sleep(0)
        for name in ("by_core", "by_seq", "seqs_by_year", "by_account", "by_amount"):
            setattr(index, name, {})
            await asyncio.sleep(0)
        for name in ("by_number", "remaining", "invoices", "payers"):
            setattr(index, name, {})
            await asyncio.sleep(0)

    async def _write(self, conn: Any, batch: _Batch, ledger_ids: Mapping[str, int]) -> None:
        """Lock the chunk's invoices and check their balances; in the rare case that one
        changed since the index was loaded, rebuild the chunk without the plans that no
        longer fit (they become suggestions); then send the rows."""
        applied, refused = await bulk.lock_and_check(conn, batch.payments.plans)
        if refused:
            batch = await self._batch(
                batch.statement_id,
                batch.lines,
                batch.outcomes,
                applied,
                batch.ids,
                ledger_ids,
                batch.audit_head,
                refused,
            )
        await bulk.write_rows(conn, batch.payments)
        await append_prepared(batch.audit)
        await conn.copy_records_to_table(
            "bank_statement_line", columns=list(_LINE_COLUMNS), records=batch.statement_rows
        )
        batch.tally.add_to(self.counts, self.learned)

    async def rowwise(self, statement_id: int) -> None:
        """SQLite (embedded, small files): the same outcome, row by row through
        ``record_payment``."""
        lines = self.parsed.lines
        outcomes = self.match(lines)
        applied, refused = await _apply_rowwise(self.plans(lines, outcomes), self.actor)
        payment_of = {p.key: pid for p, pid in applied}
        rows, tally = self.records(
            statement_id, lines, outcomes, payment_of, {p.key for p in refused}
        )
        tally.add_to(self.counts, self.learned)
        for start in range(0, len(rows), 200):
            await StatementLine.insert(
                *[
                    StatementLine(**dict(zip(_LINE_COLUMNS, r, strict=True)))
                    for r in rows[start : start + 200]
                ]
            )


async def _reserve(conn: Any, credits: int) -> tuple[list[tuple[int, int]], str]:
    """Ids for every credit line's payment and entry, and the audit chain's head (its lock
    held from here to the commit, so the batches can be hashed ahead of their writes)."""
    ids = await bulk.reserve_ids(conn, credits)
    return ids, await locked_head()


def _suggestion_json(s: Any) -> str:
    """``json.dumps`` of the suggestion's allocations, written out directly (10,000 per
    import): ``[{"invoice_id": 1, "amount_minor": 2}, …]``."""
    if s is None:
        return "[]"
    return (
        "["
        + ", ".join(f'{{"invoice_id": {i}, "amount_minor": {a}}}' for i, a in s.allocations)
        + "]"
    )


async def _finish(statement_id: int, parsed: ParsedStatement, filename: str, run: _Run) -> None:
    """The statement's counts, the payers learned, and the import's audit event."""
    counts, now = run.counts, run.now
    await BankStatement.update(
        {
            BankStatement.auto_applied: counts["auto_applied"],
            BankStatement.suggested: counts["suggested"],
            BankStatement.unmatched: counts["unmatched"],
        }
    ).where(BankStatement.id == statement_id)
    if is_sqlite():
        for payer_key, account in run.learned:
            await _learn_one(payer_key, account, now)
    else:
        stored = run.stored_payers
        await bulk.learn_payers(bulk.connection(), [p for p in run.learned if p not in stored], now)
    await record(
        AuditRecord(
            run.actor,
            "remittance.statement_imported",
            "bank_statement",
            statement_id,
            data={
                "format": parsed.format,
                "statement": parsed.statement_id,
                "filename": filename,
                "lines": len(parsed.lines),
                **counts,
            },
        )
    )


_LINE_COLUMNS = (
    "statement",
    "line_no",
    "value_date",
    "amount_minor",
    "currency",
    "reference",
    "payer_name",
    "payer_account",
    "bank_reference",
    "status",
    "rule",
    "reason",
    "confidence",
    "suggestion",
    "billing_account",
    "payment_id",
    "note",
    "updated_at",
)


async def _learn_one(payer_key: str, account: int, now: datetime) -> None:
    existing = (
        await KnownPayer.select(KnownPayer.id, KnownPayer.times_seen)
        .where((KnownPayer.payer_key == payer_key) & (KnownPayer.billing_account == account))
        .first()
    )
    if existing:
        await KnownPayer.update({KnownPayer.times_seen: existing["times_seen"] + 1}).where(
            KnownPayer.id == existing["id"]
        )
    else:
        await KnownPayer.insert(
            KnownPayer(payer_key=payer_key[:220], billing_account=account, learned_at=now)
        )


async def _apply_rowwise(
    plans: Sequence[bulk.PaymentPlan], actor: Actor
) -> tuple[list[tuple[bulk.PaymentPlan, int]], list[bulk.PaymentPlan]]:
    from core.payments.services import record_payment

    applied: list[tuple[bulk.PaymentPlan, int]] = []
    refused: list[bulk.PaymentPlan] = []
    for plan in plans:
        try:
            pid = await record_payment(
                billing_account_id=plan.billing_account_id,
                amount_minor=plan.amount_minor,
                currency_code=plan.currency,
                method="bank_transfer",
                reference=plan.reference,
                allocations=[AllocationRequest(i, a) for i, a in plan.allocations],
                actor=actor,
                received_at=datetime(
                    plan.value_date.year, plan.value_date.month, plan.value_date.day, tzinfo=UTC
                ),
            )
        except ValidationFailed:
            refused.append(plan)
            continue
        applied.append((plan, pid))
    return applied, refused


# ------------------------------------------------------------------ workbench queries


async def statements(limit: int = 50) -> list[dict[str, Any]]:
    return list(
        await BankStatement.select().order_by(BankStatement.id, ascending=False).limit(limit)
    )


async def work_items(
    status: str = "open", query: str = "", statement_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Lines for the workbench: "open" = suggested, unmatched and unidentified."""
    q = StatementLine.select()
    if status == "open":
        q = q.where(StatementLine.status.is_in(list(OPEN_STATUSES)))
    elif status != "all":
        q = q.where(StatementLine.status == status)
    if statement_id is not None:
        q = q.where(StatementLine.statement == statement_id)
    if query:
        like = f"%{query.strip()[:100]}%"
        q = q.where(
            StatementLine.reference.ilike(like)
            | StatementLine.payer_name.ilike(like)
            | StatementLine.bank_reference.ilike(like)
        )
    rows = (
        await q.order_by(StatementLine.confidence, ascending=False)
        .order_by(StatementLine.id)
        .limit(limit)
    )
    return [_decoded(r) for r in rows]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("suggestion")
    row["suggestion"] = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return row


async def line_detail(line_id: int) -> dict[str, Any]:
    row = await StatementLine.select().where(StatementLine.id == line_id).first()
    if row is None:
        raise NotFound("statement line")
    row = _decoded(row)
    ids = [item["invoice_id"] for item in row["suggestion"]]
    invoices = await _invoices(ids)
    row["suggested_invoices"] = [
        {**invoices[item["invoice_id"]], "amount_minor": item["amount_minor"]}
        for item in row["suggestion"]
        if item["invoice_id"] in invoices
    ]
    row["allocations"] = []
    if row["payment_id"]:
        row["allocations"] = list(
            await Allocation.select(
                Allocation.id,
                Allocation.amount_minor,
                Allocation.invoice.number.as_alias("number"),
                Allocation.invoice.id.as_alias("invoice_id"),
            ).where(Allocation.payment == row["payment_id"])
        )
        payment = (
            await Payment.select(Payment.unapplied_minor)
            .where(Payment.id == row["payment_id"])
            .first()
        )
        row["unapplied_minor"] = payment["unapplied_minor"] if payment else 0
    return row


async def _invoices(ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = await Invoice.select(
        Invoice.id,
        Invoice.number,
        Invoice.billing_account,
        Invoice.billing_account.name.as_alias("account_name"),
        Invoice.currency,
        Invoice.balance_minor,
        Invoice.total_minor,
        Invoice.due_date,
        Invoice.status,
    ).where(Invoice.id.is_in(list(ids)))
    return {r["id"]: r for r in rows}


async def search_open_invoices(
    query: str, currency_code: str, billing_account_id: int | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Open invoices of the currency by number, customer name or exact amount."""
    q = Invoice.select(
        Invoice.id,
        Invoice.number,
        Invoice.billing_account,
        Invoice.billing_account.name.as_alias("account_name"),
        Invoice.billing_account.organization.name.as_alias("customer"),
        Invoice.currency,
        Invoice.balance_minor,
        Invoice.due_date,
    ).where(
        (Invoice.status == "open")
        & (Invoice.currency == currency_code)
        & (Invoice.balance_minor > 0)
    )
    text = query.strip()[:100]
    if text:
        condition = (
            Invoice.number.ilike(f"%{text}%")
            | Invoice.billing_account.name.ilike(f"%{text}%")
            | Invoice.billing_account.organization.name.ilike(f"%{text}%")
        )
        try:
            amount = parse_amount(text, currency_code).to_minor()
            condition = condition | (Invoice.balance_minor == amount)
        except (AmountParseError, ValueError):
            pass
        q = q.where(condition)
    if billing_account_id is not None:
        q = q.where(Invoice.billing_account == billing_account_id)
    return list(await q.order_by(Invoice.due_date).limit(limit))


# ------------------------------------------------------------------ workbench actions


async def _locked_line(line_id: int) -> dict[str, Any]:
    row = await for_update(StatementLine.select().where(StatementLine.id == line_id)).first()
    if row is None:
        raise NotFound("statement line")
    return _decoded(row)


async def items_by_number(
    numbers: Sequence[str], amounts: Sequence[str], currency_code: str
) -> list[AllocationRequest]:
    """Form rows (invoice number, amount) → allocation requests; blank rows skipped."""
    raw = [(n.strip(), a.strip()) for n, a in zip(numbers, amounts, strict=False)]
    wanted = [n for n, _ in raw if n][:50]
    rows = [(n.upper(), a) for n, a in raw if n or a]
    if not rows:
        raise ValidationFailed({"allocations": "Enter at least one invoice number and amount."})
    found = {
        r["number"].upper(): r["id"]
        for r in await Invoice.select(Invoice.id, Invoice.number).where(
            Invoice.number.is_in([*wanted, *(n.upper() for n in wanted)] or ["-"])
        )
    }
    items: list[AllocationRequest] = []
    for number, raw_amount in rows:
        if number not in found:
            raise ValidationFailed({"allocations": f"No invoice numbered {number or '(blank)'}."})
        try:
            money = parse_amount(raw_amount, currency_code)
        except AmountParseError as exc:
            raise ValidationFailed({"allocations": f"{number}: {exc}"}) from None
        items.append(AllocationRequest(found[number], money.to_minor()))
    return items


async def apply_line(
    line_id: int, items: Sequence[AllocationRequest], actor: Actor, note: str = ""
) -> int:
    """Apply a line to one or more open invoices of ONE billing account (a split); what
    is left becomes unapplied cash on that account. Returns the payment id. The system
    (the re-matching job) applies as ``auto_applied``; people as ``applied``."""
    await require(actor, OPERATORS, system=True)
    from core.payments.services import record_payment

    if not items:
        raise ValidationFailed({"allocations": "Choose at least one invoice and an amount."})
    async with transaction():
        line = await _locked_line(line_id)
        if line["status"] not in OPEN_STATUSES:
            raise Conflict("This line is already applied.")
        invoices = await _invoices([i.invoice_id for i in items])
        accounts = {inv["billing_account"] for inv in invoices.values()}
        if len(invoices) != len({i.invoice_id for i in items}):
            raise ValidationFailed({"allocations": "Choose open invoices."})
        if len(accounts) != 1:
            raise ValidationFailed(
                {"allocations": "Apply one line to invoices of one billing account at a time."}
            )
        if any(inv["currency"] != line["currency"] for inv in invoices.values()):
            raise ValidationFailed({"allocations": "The invoices must be in the line's currency."})
        account = accounts.pop()
        payment_id = await record_payment(
            billing_account_id=account,
            amount_minor=line["amount_minor"],
            currency_code=line["currency"],
            method="bank_transfer",
            reference=(line["bank_reference"] or line["reference"])[:120],
            allocations=list(items),
            actor=actor,
            received_at=datetime(
                line["value_date"].year,
                line["value_date"].month,
                line["value_date"].day,
                tzinfo=UTC,
            ),
        )
        now = datetime.now(UTC)
        await StatementLine.update(
            {
                StatementLine.status: "auto_applied" if actor.type == "system" else "applied",
                StatementLine.payment_id: payment_id,
                StatementLine.billing_account: account,
                StatementLine.updated_at: now,
                StatementLine.note: _append_note(line["note"], note, actor, now),
            }
        ).where(StatementLine.id == line_id)
        for key in payer_keys(line["payer_name"], line["payer_account"]):
            await _learn_one(key, account, now)
        await record(
            AuditRecord(
                actor,
                "remittance.line_applied",
                "bank_statement_line",
                line_id,
                data={
                    "payment": payment_id,
                    "allocations": {str(i.invoice_id): i.amount_minor for i in items},
                    "suggested": [s["invoice_id"] for s in line["suggestion"]],
                },
            )
        )
    return payment_id


async def accept_suggestion(line_id: int, actor: Actor) -> int:
    line = (
        await StatementLine.select(StatementLine.suggestion)
        .where(StatementLine.id == line_id)
        .first()
    )
    if line is None:
        raise NotFound("statement line")
    suggestion = _decoded(dict(line))["suggestion"]
    if not suggestion:
        raise ValidationFailed({"allocations": "This line has no suggestion."})
    items = [AllocationRequest(s["invoice_id"], s["amount_minor"]) for s in suggestion]
    return await apply_line(line_id, items, actor)


async def unapply_line(line_id: int, actor: Actor, reason: str) -> None:
    """Take back every allocation of the line's payment: the invoices reopen and the
    money stays on the customer's account as unapplied cash (the cash area's
    ``unapply``); the line returns to the workbench marked ``unapplied``."""
    await require(actor, OPERATORS)
    from core.cash.allocations import unapply

    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": "Give a reason for unapplying."})
    async with transaction():
        line = await _locked_line(line_id)
        if line["status"] not in ("auto_applied", "applied") or not line["payment_id"]:
            raise Conflict("Only an applied line can be unapplied.")
        allocations = await Allocation.select(Allocation.id, Allocation.invoice).where(
            Allocation.payment == line["payment_id"]
        )
        for allocation in allocations:
            await unapply(allocation["id"], actor, reason)
        now = datetime.now(UTC)
        await StatementLine.update(
            {
                StatementLine.status: "unapplied",
                StatementLine.updated_at: now,
                StatementLine.note: _append_note(line["note"], f"Unapplied: {reason}", actor, now),
            }
        ).where(StatementLine.id == line_id)
        await record(
            AuditRecord(
                actor,
                "remittance.line_unapplied",
                "bank_statement_line",
                line_id,
                data={"payment": line["payment_id"], "allocations": len(allocations)},
                reason_code="staff_unapply",
            )
        )


async def mark_unidentified(line_id: int, actor: Actor, note: str) -> None:
    await require(actor, OPERATORS)
    note = note.strip()
    if not note:
        raise ValidationFailed({"note": "Say what you checked before marking it unidentified."})
    async with transaction():
        line = await _locked_line(line_id)
        if line["status"] not in ("suggested", "unmatched"):
            raise Conflict("Only an unmatched or suggested line can be marked unidentified.")
        now = datetime.now(UTC)
        await StatementLine.update(
            {
                StatementLine.status: "unidentified",
                StatementLine.updated_at: now,
                StatementLine.note: _append_note(line["note"], note, actor, now),
            }
        ).where(StatementLine.id == line_id)
        await record(
            AuditRecord(
                actor,
                "remittance.line_unidentified",
                "bank_statement_line",
                line_id,
                data={"note": note[:NOTE_MAX]},
            )
        )


async def add_note(line_id: int, actor: Actor, note: str) -> None:
    await require(actor, OPERATORS)
    note = note.strip()
    if not note or len(note) > NOTE_MAX:
        raise ValidationFailed({"note": f"Write a note of 1 to {NOTE_MAX} characters."})
    async with transaction():
        line = await _locked_line(line_id)
        now = datetime.now(UTC)
        await StatementLine.update(
            {
                StatementLine.note: _append_note(line["note"], note, actor, now),
                StatementLine.updated_at: now,
            }
        ).where(StatementLine.id == line_id)
        await record(
            AuditRecord(
                actor, "remittance.line_noted", "bank_statement_line", line_id, data={"note": note}
            )
        )


def _append_note(existing: str, note: str, actor: Actor, now: datetime) -> str:
    note = note.strip()[:NOTE_MAX]
    if not note:
        return existing
    entry = f"[{now.strftime('%Y-%m-%d %H:%M')} {actor_ref(actor)}] {note}"
    return f"{existing}\n{entry}".strip()[-8000:]


async def can_read(actor: Actor) -> bool:
    try:
        await require(actor, READERS)
    except NotPermitted:
        return False
    return True


async def rematch_open_lines(actor: Actor = SYSTEM, limit: int = 2000) -> int:
    """Match suggested and unmatched lines again against today's open invoices (an
    invoice issued after the money arrived, a payer learned since): apply those that now
    reach the auto-apply confidence, refresh the others' suggestions. Returns how many
    were applied. Each application is its own transaction (``apply_line``)."""
    rows = await (
        StatementLine.select()
        .where(StatementLine.status.is_in(["suggested", "unmatched"]))
        .order_by(StatementLine.id)
        .limit(limit)
    )
    if not rows:
        return 0
    config = await load_config()
    index = await load_index({r["currency"] for r in rows})
    lines = [
        Line(
            r["id"],
            r["amount_minor"],
            r["currency"],
            r["reference"],
            r["payer_name"],
            r["payer_account"],
        )
        for r in rows
    ]
    with _no_gc():
        outcomes = match_lines(config, index, lines)
    applied = 0
    now = datetime.now(UTC)
    for row, outcome in zip(rows, outcomes, strict=True):
        s = outcome.suggestion
        if outcome.auto and s is not None:
            try:
                await apply_line(
                    row["id"],
                    [AllocationRequest(i, a) for i, a in s.allocations],
                    actor,
                    f"Re-matched: {s.reason} ({s.confidence}%)",
                )
            except (ValidationFailed, Conflict):
                continue  # changed meanwhile: stays in the workbench
            applied += 1
        elif s is not None and (s.rule != row["rule"] or s.confidence != row["confidence"]):
            await StatementLine.update(
                {
                    StatementLine.status: "suggested",
                    StatementLine.rule: s.rule,
                    StatementLine.reason: s.reason,
                    StatementLine.confidence: s.confidence,
                    StatementLine.suggestion: json.dumps(
                        [{"invoice_id": i, "amount_minor": a} for i, a in s.allocations]
                    ),
                    StatementLine.billing_account: s.billing_account_id,
                    StatementLine.updated_at: now,
                }
            ).where(
                (StatementLine.id == row["id"])
                & StatementLine.status.is_in(["suggested", "unmatched"])
            )
    return applied
