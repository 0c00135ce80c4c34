"""A generator of open invoices and a noisy bank file whose right answers are known.

Shared by the accuracy test (tests/integration/test_remittance_accuracy.py) and the
benchmark (bench/cash_match.py). ``generate`` is pure (seeded); ``seed_database`` writes
the customers, open invoices (with their balanced invoice entries) and the known payer
accounts on PostgreSQL in bulk; ``to_camt053`` renders the lines as a camt.053 file.

Kinds of lines (share of the file): exact reference (50%), OCR-noisy reference (8%),
reference without prefix or year, or without separators (6%), a one-character typo in
the reference (5%), no reference but a known payer account and the amount of one of
its invoices (7%), several invoices quoted in one payment (4%), several invoices of a
known payer and no reference (3%), short payment within tolerance (4%), two payments
for one invoice (2 x 3%), overpayment (2%), unknown payer (2%: nobody to match).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from core.money import Money

KINDS: tuple[tuple[str, float], ...] = (
    ("exact", 0.50),
    ("ocr", 0.08),
    ("no_prefix", 0.06),
    ("typo", 0.05),
    ("payer_amount", 0.07),
    ("bundle_refs", 0.04),
    ("bundle_payer", 0.03),
    ("short", 0.04),
    ("split", 0.06),
    ("over", 0.02),
    ("unknown", 0.02),
)
_OCR = {"0": "O", "1": "I", "5": "S", "8": "B"}


@dataclass(frozen=True, slots=True)
class SynthCustomer:
    index: int
    name: str
    iban: str
    known: bool  # its bank account is in the known payer table before the import


@dataclass(frozen=True, slots=True)
class SynthInvoice:
    index: int
    customer: int
    number: str
    amount_minor: int
    due_date: date


@dataclass(frozen=True, slots=True)
class SynthLine:
    kind: str
    amount_minor: int
    reference: str
    payer_name: str
    payer_account: str
    expected: tuple[tuple[int, int], ...]  # (invoice index, amount), sorted; () = none


@dataclass
class SynthData:
    currency: str
    customers: list[SynthCustomer]
    invoices: list[SynthInvoice]
    lines: list[SynthLine] = field(default_factory=list)


def _iban(rng: random.Random) -> str:
    return "DE" + "".join(rng.choice("0123456789") for _ in range(20))


def _noisy_ocr(rng: random.Random, number: str) -> str:
    chars = list(number)
    spots = [i for i, c in enumerate(chars) if c in _OCR and i > 7]
    for i in rng.sample(spots, k=min(len(spots), rng.randint(1, 3))):
        chars[i] = _OCR[chars[i]]
    return "".join(chars)


def _typo(rng: random.Random, number: str) -> str:
    prefix, year, seq = number.rsplit("-", 2)
    digits = list(seq.lstrip("0") or "0")
    how = rng.choice(("swap", "replace", "drop", "insert"))
    i = rng.randrange(len(digits))
    if how == "swap" and len(digits) > 1 and i + 1 < len(digits) and digits[i] != digits[i + 1]:
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    elif how == "drop" and len(digits) > 1:
        del digits[i]
    elif how == "insert":
        digits.insert(i, rng.choice("123456789"))
    else:
        digits[i] = rng.choice([d for d in "0123456789" if d != digits[i]])
    return f"{prefix}-{year}-{''.join(digits).zfill(6)}"


def _without_prefix(rng: random.Random, number: str) -> str:
    prefix, year, seq = number.rsplit("-", 2)
    return rng.choice(
        (
            f"{year}-{seq}",
            f"{year}{seq}",
            f"nr {seq}",
            number.replace("-", ""),
            f"{prefix.replace('-', ' ')} {year} {seq}",
        )
    )


def _say(rng: random.Random, ref: str) -> str:
    return rng.choice(
        (ref, f"Invoice {ref}", f"Payment {ref} thank you", f"RE {ref}", f"{ref} / ACME AP")
    )


def generate(
    *,
    n_invoices: int,
    n_lines: int,
    n_customers: int | None = None,
    seed: int = 20261122,
    currency: str = "EUR",
    prefix: str = "INV-DE",
    year: int = 2026,
) -> SynthData:
    rng = random.Random(seed)
    n_customers = n_customers or max(10, n_invoices // 20)
    customers = [
        SynthCustomer(i, f"Customer {i:05d} GmbH", _iban(rng), rng.random() < 0.85)
        for i in range(n_customers)
    ]
    start = date(year, 1, 1)
    invoices = [
        SynthInvoice(
            index=i,
            customer=rng.randrange(n_customers),
            number=f"{prefix}-{year}-{i + 1:06d}",
            amount_minor=rng.randint(5_000, 2_500_000),
            due_date=start + timedelta(days=rng.randrange(330)),
        )
        for i in range(n_invoices)
    ]
    by_customer: dict[int, list[int]] = {}
    for inv in invoices:
        by_customer.setdefault(inv.customer, []).append(inv.index)
    free = list(range(n_invoices))
    rng.shuffle(free)
    used: set[int] = set()

    def take(customer: int | None = None) -> SynthInvoice:
        if customer is not None:
            options = [i for i in by_customer.get(customer, []) if i not in used]
            pick = options[0]
        else:
            while True:
                pick = free.pop()
                if pick not in used:
                    break
        used.add(pick)
        return invoices[pick]

    def payer(inv: SynthInvoice) -> tuple[str, str]:
        customer = customers[inv.customer]
        return customer.name.upper(), customer.iban

    lines: list[SynthLine] = []
    weights = [w for _, w in KINDS]
    names = [k for k, _ in KINDS]
    while len(lines) < n_lines:
        kind = rng.choices(names, weights)[0]
        if kind in ("payer_amount", "bundle_payer"):
            customer = rng.choice([c for c in customers if c.known])
            need = 1 if kind == "payer_amount" else rng.randint(2, 3)
            if len([i for i in by_customer.get(customer.index, []) if i not in used]) < need + 1:
                continue
            chosen = [take(customer.index) for _ in range(need)]
            name, iban = payer(chosen[0])
            lines.append(
                SynthLine(
                    kind,
                    sum(i.amount_minor for i in chosen),
                    rng.choice(("", "Payment", "Thank you", "Sammelzahlung")),
                    name,
                    iban,
                    tuple(sorted((i.index, i.amount_minor) for i in chosen)),
                )
            )
            continue
        if kind == "unknown":
            lines.append(
                SynthLine(
                    kind,
                    rng.randint(5_000, 2_500_000),
                    rng.choice(("", "Refund", f"Order {rng.randint(100, 99999)}", "Deposit")),
                    f"Stranger {rng.randint(1, 10**6)} Ltd",
                    _iban(rng),
                    (),
                )
            )
            continue
        inv = take()
        name, iban = payer(inv)
        if kind == "bundle_refs":
            others = [i for i in by_customer[inv.customer] if i not in used and i != inv.index][
                : rng.randint(1, 3)
            ]
            chosen = [inv] + [invoices[i] for i in others]
            used.update(others)
            refs = ", ".join(i.number for i in chosen)
            lines.append(
                SynthLine(
                    kind,
                    sum(i.amount_minor for i in chosen),
                    f"Invoices {refs}",
                    name,
                    iban,
                    tuple(sorted((i.index, i.amount_minor) for i in chosen)),
                )
            )
            continue
        if kind == "split":
            first = inv.amount_minor * rng.randint(30, 70) // 100
            for part in (first, inv.amount_minor - first):
                lines.append(
                    SynthLine(kind, part, _say(rng, inv.number), name, iban, ((inv.index, part),))
                )
            continue
        amount = inv.amount_minor
        expected: tuple[tuple[int, int], ...] = ((inv.index, amount),)
        ref = inv.number
        if kind == "ocr":
            ref = _noisy_ocr(rng, inv.number)
        elif kind == "no_prefix":
            ref = _without_prefix(rng, inv.number)
        elif kind == "typo":
            ref = _typo(rng, inv.number)
        elif kind == "short":
            shortfall = rng.randint(1, max(1, min(500, amount // 100)))
            amount -= shortfall
            expected = ((inv.index, amount),)
        elif kind == "over":
            amount += rng.randint(100, 50_000)
        lines.append(SynthLine(kind, amount, _say(rng, ref), name, iban, expected))
    rng.shuffle(lines)
    return SynthData(currency, customers, invoices, lines[:n_lines])


def to_camt053(data: SynthData, statement_id: str, value_date: date) -> bytes:
    """The lines as a camt.053.001.08 statement (one <Ntry> per line)."""
    cur = data.currency
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>',
        "<GrpHdr><MsgId>",
        escape(statement_id),
        "</MsgId><CreDtTm>",
        datetime(value_date.year, value_date.month, value_date.day, tzinfo=UTC).isoformat(),
        "</CreDtTm></GrpHdr><Stmt><Id>",
        escape(statement_id),
        "</Id><Acct><Id><IBAN>DE02120300000000202051</IBAN></Id><Ccy>",
        cur,
        "</Ccy></Acct>",
    ]
    day = value_date.isoformat()
    for n, line in enumerate(data.lines, start=1):
        amount = Money.from_minor(line.amount_minor, cur).amount
        parts.append(
            f'<Ntry><Amt Ccy="{cur}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
            f"<ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>B{n:07d}</AcctSvcrRef>"
            "<NtryDtls><TxDtls><RltdPties>"
            f"<Dbtr><Pty><Nm>{escape(line.payer_name)}</Nm></Pty></Dbtr>"
            f"<DbtrAcct><Id><IBAN>{line.payer_account}</IBAN></Id></DbtrAcct></RltdPties>"
            f"<RmtInf><Ustrd>{escape(line.reference)}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        )
    parts.append("</Stmt></BkToCstmrStmt></Document>")
    return "".join(parts).encode()


async def seed_database(data: SynthData) -> dict[str, Any]:
    """Write customers, open invoices (posted: AR / revenue) and known payer accounts in
    bulk on PostgreSQL. Returns {"invoice_ids": [...], "account_ids": [...]} by index."""
    from core.db import engine, transaction
    from core.identity.services import create_issuing_entity
    from core.ledger.accounts import AR, REVENUE
    from core.ledger.posting import ensure_chart
    from core.remittance.bulk import ENTRY_COLUMNS, LINE_COLUMNS, next_ids

    await ensure_chart()
    entity_id = await create_issuing_entity(
        code=f"S{random.Random(data.lines and len(data.lines)).randint(100, 999)}",
        name="Synthetic Seller",
        legal_name="Synthetic Seller GmbH",
        country="DE",
        functional_currency=data.currency,
    )
    now = datetime.now(UTC)
    async with transaction():
        conn: Any = engine().current_transaction.get().connection  # type: ignore[attr-defined]

        async def ids(table: str, n: int) -> list[int]:
            return await next_ids(conn, table, n)

        n_cust = len(data.customers)
        org_ids = await ids("customer_organization", n_cust)
        await conn.copy_records_to_table(
            "customer_organization",
            columns=["id", "name", "root_id", "path", "depth", "country"],
            records=[
                (org_ids[c.index], c.name, org_ids[c.index], f"/{org_ids[c.index]}/", 0, "DE")
                for c in data.customers
            ],
        )
        account_ids = await ids("billing_account", n_cust)
        suffix = random.Random(len(data.invoices)).randint(1000, 9999)
        await conn.copy_records_to_table(
            "billing_account",
            columns=["id", "code", "name", "organization", "issuing_entity", "currency"],
            records=[
                (
                    account_ids[c.index],
                    f"SYN{suffix}-{c.index}",
                    c.name,
                    org_ids[c.index],
                    entity_id,
                    data.currency,
                )
                for c in data.customers
            ],
        )
        invoice_ids = await ids("invoice", len(data.invoices))
        issue = date(2026, 1, 1)
        await conn.copy_records_to_table(
            "invoice",
            columns=[
                "id",
                "number",
                "billing_account",
                "issuing_entity",
                "status",
                "currency",
                "issue_date",
                "due_date",
                "subtotal_minor",
                "total_minor",
                "balance_minor",
                "created_at",
                "finalized_at",
                "tax_status",
            ],
            records=[
                (
                    invoice_ids[i.index],
                    i.number,
                    account_ids[i.customer],
                    entity_id,
                    "open",
                    data.currency,
                    issue,
                    i.due_date,
                    i.amount_minor,
                    i.amount_minor,
                    i.amount_minor,
                    now,
                    now,
                    "exempt",
                )
                for i in data.invoices
            ],
        )
        entry_ids = await ids("journal_entry", len(data.invoices))
        await conn.copy_records_to_table(
            "journal_entry",
            columns=list(ENTRY_COLUMNS),
            records=[
                (
                    entry_ids[i.index],
                    entity_id,
                    data.currency,
                    issue,
                    f"Invoice {i.number}",
                    "invoice",
                    invoice_ids[i.index],
                    "finalized",
                    now,
                )
                for i in data.invoices
            ],
        )
        accounts = {
            r["code"]: r["id"] for r in await conn.fetch("SELECT id, code FROM ledger_account")
        }
        lines: list[tuple[Any, ...]] = []
        for i in data.invoices:
            lines.append(
                (entry_ids[i.index], accounts[AR], account_ids[i.customer], i.amount_minor, 0)
            )
            lines.append((entry_ids[i.index], accounts[REVENUE], None, 0, i.amount_minor))
        await conn.copy_records_to_table(
            "journal_line",
            columns=list(LINE_COLUMNS),
            records=lines,
        )
        await conn.copy_records_to_table(
            "remittance_known_payer",
            columns=["payer_key", "billing_account", "times_seen", "learned_at"],
            records=[
                (f"acct:{c.iban}", account_ids[c.index], 1, now) for c in data.customers if c.known
            ],
        )
    return {"invoice_ids": invoice_ids, "account_ids": account_ids, "entity_id": entity_id}


def score(data: SynthData, applied: list[tuple[tuple[int, int], ...] | None]) -> dict[str, Any]:
    """Compare what was auto-applied (per line, invoice indexes) with the right answers."""
    auto = sum(1 for a in applied if a is not None)
    wrong = [
        n
        for n, (line, a) in enumerate(zip(data.lines, applied, strict=True))
        if a is not None and tuple(sorted(a)) != line.expected
    ]
    matchable = sum(1 for line in data.lines if line.expected)
    return {
        "lines": len(data.lines),
        "auto": auto,
        "auto_match_rate": auto / len(data.lines) if data.lines else 0.0,
        "auto_rate_of_matchable": auto / matchable if matchable else 0.0,
        "wrong": len(wrong),
        "wrong_lines": wrong[:20],
    }
