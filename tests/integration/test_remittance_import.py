"""Importing bank statements: every format, refusals (malformed, duplicate), auto-apply
with balanced books, and the workbench actions with their roles and audit events."""

from __future__ import annotations

import pytest

from core.audit.log import verify_chain
from core.audit.tables import AuditEvent
from core.errors import Conflict, ValidationFailed
from core.identity.security import NotPermitted
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.payments.allocation import AllocationRequest
from core.payments.tables import Allocation, Payment
from core.remittance import services
from core.remittance.tables import BankStatement, KnownPayer, StatementLine
from tests.integration.cash_support import assert_books, crew, open_invoice, sibling_account
from tests.integration.factories import SYSTEM, billing_account

IBAN = "DE12500105170648489890"


def camt(statement_id: str, entries: list[tuple[str, str, str, str]]) -> bytes:
    """(amount, reference, payer name, payer IBAN) → a camt.053.001.02 file."""
    ntry = "".join(
        f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        "<BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt>"
        f"<AcctSvcrRef>REF{n}</AcctSvcrRef><NtryDtls><TxDtls><RltdPties><Dbtr><Nm>{name}</Nm>"
        f"</Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct></RltdPties>"
        f"<RmtInf><Ustrd>{ref}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        for n, (amount, ref, name, iban) in enumerate(entries)
    )
    return (
        '<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
        f"<BkToCstmrStmt><Stmt><Id>{statement_id}</Id><Acct><Id><IBAN>DE02120300000000202051"
        f"</IBAN></Id></Acct>{ntry}</Stmt></BkToCstmrStmt></Document>"
    ).encode()


async def numbers(*ids: int) -> list[str]:
    rows = await Invoice.select(Invoice.id, Invoice.number).where(Invoice.id.is_in(list(ids)))
    by_id = {r["id"]: r["number"] for r in rows}
    return [by_id[i] for i in ids]


async def balance(invoice_id: int) -> int:
    row = await Invoice.select(Invoice.balance_minor).where(Invoice.id == invoice_id).first()
    return row["balance_minor"]


async def test_camt053_import_auto_applies_and_keeps_the_books(db) -> None:
    account = await billing_account("EUR")
    a, b, c, d = [
        await open_invoice(account, amount) for amount in ("100.00", "250.00", "80.00", "40.00")
    ]
    na, nb, nc, nd = await numbers(a, b, c, d)
    noisy = nb.replace("0", "O")  # OCR noise
    data = camt(
        "STMT-1",
        [
            ("100.00", f"Invoice {na}", "Customer AG", IBAN),
            ("250.00", f"Pay {noisy}", "Customer AG", IBAN),
            ("999.99", "Thanks", "Somebody Else", "GB33BUKB20201555555555"),
            ("120.00", f"{nc} {nd}", "Customer AG", IBAN),
        ],
    )
    result = await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert (result.lines, result.auto_applied, result.unmatched + result.suggested) == (4, 3, 1)
    assert [await balance(i) for i in (a, b, c, d)] == [0, 0, 0, 0]
    lines = await StatementLine.select().order_by(StatementLine.line_no)
    assert [line["status"] for line in lines] == [
        "auto_applied",
        "auto_applied",
        lines[2]["status"],
        "auto_applied",
    ]
    assert lines[2]["status"] in ("unmatched", "suggested")
    assert lines[1]["rule"] == "reference_fuzzy"
    assert "OCR" in lines[1]["reason"]
    assert await Payment.count().where(Payment.method == "bank_transfer") == 3
    assert await KnownPayer.exists().where(KnownPayer.payer_key == f"acct:{IBAN}")
    await assert_books("EUR")
    assert (await verify_chain()).ok
    assert await AuditEvent.count().where(AuditEvent.action == "payment.recorded") == 3


async def test_chunked_import_is_all_or_nothing(db, monkeypatch) -> None:
    """PostgreSQL writes an import chunk by chunk inside one transaction: a failure in a
    later chunk leaves nothing stored, and the retry applies every chunk."""
    monkeypatch.setattr(services, "_CHUNK_LINES", 2)
    account = await billing_account("EUR")
    ids = [await open_invoice(account, f"{n}0.00") for n in range(1, 6)]
    entries = [
        (f"{n}0.00", number, "Customer AG", IBAN)
        for n, number in enumerate(await numbers(*ids), start=1)
    ]
    data = camt("STMT-CHUNKS", entries)
    write_rows = services.bulk.write_rows
    calls = []

    async def fail_in_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return await write_rows(*args, **kwargs)

    monkeypatch.setattr(services.bulk, "write_rows", fail_in_the_third_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert len(calls) == 3
    assert await BankStatement.count() == 0
    assert await StatementLine.count() == 0
    assert await Payment.count() == 0
    assert [await balance(i) for i in ids] == [1000, 2000, 3000, 4000, 5000]
    await assert_books("EUR")
    monkeypatch.setattr(services.bulk, "write_rows", write_rows)
    result = await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert (result.lines, result.auto_applied) == (5, 5)
    assert [await balance(i) for i in ids] == [0, 0, 0, 0, 0]
    lines = await StatementLine.select(StatementLine.line_no, StatementLine.payment_id).order_by(
        StatementLine.line_no
    )
    assert [line["line_no"] for line in lines] == [1, 2, 3, 4, 5]
    assert len({line["payment_id"] for line in lines}) == 5
    await assert_books("EUR")
    assert (await verify_chain()).ok
    assert await AuditEvent.count().where(AuditEvent.action == "payment.recorded") == 5


async def test_a_balance_paid_meanwhile_is_not_applied_twice(db, monkeypatch) -> None:
    """An invoice paid by someone else after the import loaded its open invoices (here: a
    portal payment between loading and writing) is not paid again: that line becomes a
    suggestion saying why, the other lines still apply, the books balance. The chunk is
    rebuilt without it, so the next chunk's audit events, hashed ahead from the old chunk,
    are re-chained: the audit chain stays intact."""
    from core.payments.services import record_payment

    monkeypatch.setattr(services, "_CHUNK_LINES", 2)  # chunks: [a], [b, c], [d]
    account = await billing_account("EUR")
    amounts = ("10.00", "20.00", "30.00", "40.00")
    a, b, c, d = [await open_invoice(account, amount) for amount in amounts]
    numbers_ = await numbers(a, b, c, d)
    load_index = services.load_index

    async def load_then_someone_pays_b(currencies):
        index = await load_index(currencies)
        await record_payment(
            billing_account_id=account,
            amount_minor=2000,
            currency_code="EUR",
            method="card",
            reference="portal",
            allocations=[AllocationRequest(b, 2000)],
            actor=SYSTEM,
        )
        return index

    monkeypatch.setattr(services, "load_index", load_then_someone_pays_b)
    data = camt(
        "STMT-RACE",
        [(amount, ref, "Customer AG", IBAN) for amount, ref in zip(amounts, numbers_, strict=True)],
    )
    result = await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert (result.auto_applied, result.suggested) == (3, 1)
    assert [await balance(i) for i in (a, b, c, d)] == [0, 0, 0, 0]
    line = await StatementLine.select().where(StatementLine.line_no == 2).first()
    assert line["status"] == "suggested"
    assert line["payment_id"] is None
    assert "changed during the import" in line["reason"]
    assert await Payment.count().where(Payment.method == "bank_transfer") == 3
    assert await Allocation.count().where(Allocation.invoice == b) == 1
    await assert_books("EUR")
    assert (await verify_chain()).ok
    assert await AuditEvent.count().where(AuditEvent.action == "payment.recorded") == 4


async def test_duplicate_and_malformed_files_are_refused_and_store_nothing(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "10.00")
    [number] = await numbers(inv)
    data = camt("STMT-2", [("10.00", number, "Customer AG", IBAN)])
    await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    with pytest.raises(ValidationFailed) as same_file:
        await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert "already imported" in same_file.value.errors["file"]
    other_content = camt("STMT-2", [("10.00", "again", "Customer AG", IBAN)])
    with pytest.raises(ValidationFailed) as same_id:
        await services.import_statement(fmt="camt053", data=other_content, actor=SYSTEM)
    assert "STMT-2" in same_id.value.errors["file"]
    broken = data.replace(b'<Amt Ccy="EUR">10.00</Amt>', b'<Amt Ccy="EUR">ten</Amt>')
    broken = broken.replace(b"STMT-2", b"STMT-3")
    with pytest.raises(ValidationFailed) as bad:
        await services.import_statement(fmt="camt053", data=broken, actor=SYSTEM)
    assert "<Ntry> #1" in bad.value.errors["file"]
    assert "not a number" in bad.value.errors["file"]
    with pytest.raises(ValidationFailed) as not_xml:
        await services.import_statement(
            fmt="camt053", data=b"<Document><oops></Document>", actor=SYSTEM
        )
    assert "line 1" in not_xml.value.errors["file"]
    assert await BankStatement.count() == 1
    assert await StatementLine.count() == 1
    await assert_books("EUR")


async def test_mt940_bai2_and_csv_imports(db) -> None:
    account = await billing_account("EUR")
    a, b, c = [await open_invoice(account, amount) for amount in ("11.90", "20.00", "30.00")]
    na, nb, nc = await numbers(a, b, c)
    mt940 = (
        ":20:STMT-MT\n:25:DE89370400440532013000\n:28C:00001/001\n:60F:C261120EUR0,00\n"
        f":61:2611201120CR11,90NTRFNONREF//B1\n:86:166?00SEPA?20{na}?32CUSTOMER AG?31{IBAN}\n"
        ":61:2611201120DR5,00NTRFNONREF\n:86:FEES\n:62F:C261120EUR6,90\n"
    ).encode()
    result = await services.import_statement(fmt="mt940", data=mt940, actor=SYSTEM)
    assert (result.auto_applied, result.ignored) == (1, 1)
    bad_mt940 = mt940.replace(b":61:2611201120DR5,00", b":61:garbage").replace(b"STMT-MT", b"X")
    with pytest.raises(ValidationFailed) as refused:
        await services.import_statement(fmt="mt940", data=bad_mt940, actor=SYSTEM)
    assert "line 7" in refused.value.errors["file"]

    bai2 = (
        "01,BANK,LEDGERLINE,261120,0800,7,,,2/\n02,LEDGERLINE,BANK,1,261120,0800,EUR,2/\n"
        f"03,123456789,EUR,010,0,,/\n16,165,2000,Z,B1,,{nb}/\n49,2000,3/\n98,2000,1,5/\n"
        "99,2000,1,7/\n"
    ).encode()
    result = await services.import_statement(fmt="bai2", data=bai2, actor=SYSTEM)
    assert result.auto_applied == 1
    with pytest.raises(ValidationFailed) as refused:
        await services.import_statement(
            fmt="bai2",
            data=bai2.replace(b"16,165", b"XX,165").replace(b",7,", b",8,"),
            actor=SYSTEM,
        )
    assert "line 4" in refused.value.errors["file"]

    ops = (await crew()).ops
    mapping = await services.save_mapping(
        name="Sparkasse CSV",
        columns={
            "value_date": "Datum",
            "amount": "Betrag",
            "reference": "Verwendungszweck",
            "payer_name": "Name",
            "payer_account": "IBAN",
        },
        delimiter=";",
        has_header=True,
        date_format="%d.%m.%Y",
        decimal_separator=",",
        sign_convention="plus_is_credit",
        default_currency="EUR",
        actor=ops,
    )
    csv_data = (
        "Datum;Betrag;Verwendungszweck;Name;IBAN\n"
        f"20.11.2026;30,00;Rechnung {nc};Customer AG;{IBAN}\n"
        "20.11.2026;-1,50;Gebühr;;\n"
    ).encode()
    result = await services.import_statement(
        fmt="csv", data=csv_data, actor=SYSTEM, mapping_id=mapping
    )
    assert (result.auto_applied, result.ignored) == (1, 1)
    with pytest.raises(ValidationFailed) as refused:
        await services.import_statement(
            fmt="csv",
            data=csv_data.replace(b"20.11.2026;30,00", b"2026-11-20;30,00"),
            actor=SYSTEM,
            mapping_id=mapping,
        )
    assert "line 2" in refused.value.errors["file"]
    assert "%d.%m.%Y" in refused.value.errors["file"]
    assert [await balance(i) for i in (a, b, c)] == [0, 0, 0]
    await assert_books("EUR")


async def test_short_payment_within_tolerance_hands_the_residual_to_write_off(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "200.00")
    [number] = await numbers(inv)
    data = camt("STMT-SHORT", [("199.50", number, "Customer AG", IBAN)])
    result = await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    assert result.auto_applied == 1
    row = (
        await Invoice.select(Invoice.balance_minor, Invoice.status).where(Invoice.id == inv).first()
    )
    # 0.50 short: within the cash area's default write-off rule, written off at once
    assert result.written_off == 1
    assert row["balance_minor"] == 0
    await assert_books("EUR")


async def test_workbench_actions_are_audited_and_role_checked(db) -> None:
    team = await crew()
    account = await billing_account("EUR")
    other = await sibling_account(account, "OTHER-1")
    a, b = await open_invoice(account, "70.00"), await open_invoice(account, "30.00")
    c = await open_invoice(other, "55.00")
    data = camt(
        "STMT-WB",
        [
            ("100.00", "Sammelzahlung", "Nobody", "FR7630006000011234567890189"),
            ("55.00", "", "Stranger", "NL91ABNA0417164300"),
            ("12.34", "??", "Stranger", "NL91ABNA0417164300"),
        ],
    )
    await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    lines = await StatementLine.select().order_by(StatementLine.line_no)
    split_line, suggested_line, odd_line = (line["id"] for line in lines)
    assert lines[1]["status"] == "suggested"
    assert lines[1]["rule"] == "amount_unique"

    with pytest.raises(NotPermitted):
        await services.accept_suggestion(suggested_line, team.auditor)
    with pytest.raises(NotPermitted):
        await services.add_note(suggested_line, team.support, "hello")
    await services.accept_suggestion(suggested_line, team.collections)
    assert await balance(c) == 0

    with pytest.raises(ValidationFailed):  # invoices of two billing accounts
        await services.apply_line(
            split_line, [AllocationRequest(a, 7000), AllocationRequest(c, 100)], team.ops
        )
    payment = await services.apply_line(
        split_line, [AllocationRequest(a, 7000), AllocationRequest(b, 3000)], team.ops, "split"
    )
    assert await Allocation.count().where(Allocation.payment == payment) == 2
    assert (await balance(a), await balance(b)) == (0, 0)
    with pytest.raises(Conflict):
        await services.apply_line(split_line, [AllocationRequest(a, 1)], team.ops)

    await services.unapply_line(split_line, team.admin, "wrong customer")
    assert (await balance(a), await balance(b)) == (7000, 3000)
    unapplied = await Payment.select(Payment.unapplied_minor).where(Payment.id == payment).first()
    assert unapplied["unapplied_minor"] == 10000

    with pytest.raises(ValidationFailed):
        await services.mark_unidentified(odd_line, team.ops, "  ")
    await services.mark_unidentified(odd_line, team.ops, "Called the bank: no remittance info")
    await services.add_note(odd_line, team.ops, "Asked sales")
    detail = await services.line_detail(odd_line)
    assert detail["status"] == "unidentified"
    assert "Asked sales" in detail["note"]
    actions = {
        r["action"]
        for r in await AuditEvent.select(AuditEvent.action).where(
            AuditEvent.action.like("remittance.%")
        )
    }
    assert {
        "remittance.statement_imported",
        "remittance.line_applied",
        "remittance.line_unapplied",
        "remittance.line_unidentified",
        "remittance.line_noted",
        "remittance.mapping_saved",
    } - actions == {"remittance.mapping_saved"}
    found = await services.search_open_invoices("70.00", "EUR")
    assert [r["id"] for r in found] == [a]
    assert await BillingAccount.count() == 2
    assert (await verify_chain()).ok
    balances = await assert_books("EUR")
    assert balances.get(acct.UNAPPLIED_CASH, 0) == -10000


async def test_rematch_applies_lines_once_their_invoice_exists(db) -> None:
    account = await billing_account("EUR")
    first = await open_invoice(account, "10.00")
    [number] = await numbers(first)
    data = camt(
        "STMT-LATER",
        [("10.00", number, "Customer AG", IBAN), ("45.00", "prepayment", "Customer AG", IBAN)],
    )
    await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
    later = await StatementLine.select().where(StatementLine.reference == "prepayment").first()
    assert later["status"] == "unmatched"
    assert await services.rematch_open_lines() == 0
    invoice = await open_invoice(account, "45.00")  # issued after the money arrived
    assert await services.rematch_open_lines() == 1
    assert await balance(invoice) == 0
    line = await StatementLine.select().where(StatementLine.id == later["id"]).first()
    assert line["status"] == "auto_applied"
    assert "Re-matched" in line["note"]
    assert await services.rematch_open_lines() == 0
    await assert_books("EUR")


async def test_matching_settings_by_finance_admins_only(db) -> None:
    team = await crew()
    with pytest.raises(NotPermitted):
        await services.save_config({"auto_apply_confidence": 101}, team.ops)
    with pytest.raises(ValidationFailed):
        await services.save_config({"rules": ["astrology"]}, team.admin)
    await services.save_config(
        {"auto_apply_confidence": 101, "tolerances": {"EUR": {"absolute_minor": 0}}}, team.admin
    )
    config = await services.load_config()
    assert services.config_as_dict(config)["auto_apply_confidence"] == 101
    account = await billing_account("EUR")
    inv = await open_invoice(account, "10.00")
    [number] = await numbers(inv)
    result = await services.import_statement(
        fmt="camt053", data=camt("STMT-OFF", [("10.00", number, "C", IBAN)]), actor=SYSTEM
    )
    assert (result.auto_applied, result.suggested) == (0, 1)  # auto-apply turned off
    assert await balance(inv) == 1000
