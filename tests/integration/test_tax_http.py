"""The HTTP tax provider against a real local HTTP server: a good answer is used; a slow
answer (timeout) or a 500 falls back to the rules and flags the tax estimated; staff can
recompute once the provider is back. A finalized invoice keeps its (estimated) tax."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.errors import Conflict
from core.invoicing.finalization import finalize_many
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.tax import providers
from core.tax.services import recompute_tax, save_settings
from tests.integration.finance_support import (
    APPROVER,
    CREATOR,
    assert_books_balanced,
    bulk_drafts,
    entity_account,
)

DAY = date(2026, 3, 10)


@dataclass
class FakeAvaTax:
    mode: str = "good"  # good | slow | error
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def avatax() -> Iterator[tuple[FakeAvaTax, str]]:
    state = FakeAvaTax()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "body": body})
            if state.mode == "slow":
                state.release.wait(10)  # held until the test ends: the client times out
                return  # the client is gone: answer nothing
            if state.mode == "error":
                self.send_response(500)
                self.end_headers()
                return
            lines = [
                {
                    "lineNumber": line["number"],
                    "rate": "0.2",
                    "tax": str(round(float(line["amount"]) * 0.2, 2)),
                    "taxCode": "P0000000",
                }
                for line in body["lines"]
            ]
            payload = json.dumps({"lines": lines, "note": "via fake AvaTax"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    providers._BREAKERS.clear()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        providers._BREAKERS.clear()


async def _tax_of(invoice_id: int) -> dict[str, Any]:
    return (
        await Invoice.select(
            Invoice.status, Invoice.tax_minor, Invoice.tax_status, Invoice.tax_note
        )
        .where(Invoice.id == invoice_id)
        .first()
    )


async def test_good_answer_is_used(db, avatax) -> None:
    state, url = avatax
    await save_settings("http", url, "2000", "ACME", APPROVER)
    entity, account = await entity_account()
    [draft] = await bulk_drafts(account, entity, 1, tax_status="pending", amount_minor=12345)
    report = await finalize_many([draft], CREATOR, issue_date=DAY)
    assert draft in report.finalized
    assert await _tax_of(draft) == {
        "status": "open",
        "tax_minor": 2469,
        "tax_status": "calculated",
        "tax_note": "via fake AvaTax",
    }
    [request] = state.requests
    assert request["path"] == "/api/v2/transactions/create"
    assert request["body"]["lines"] == [{"number": "1", "amount": "123.45", "taxCode": "STD"}]
    assert request["body"]["companyCode"] == "ACME"
    line = await InvoiceLine.select(InvoiceLine.tax_code).where(InvoiceLine.invoice == draft)
    assert line == [{"tax_code": "P0000000"}]
    assert (await account_balances("EUR"))[acct.TAX_PAYABLE] == -2469
    await assert_books_balanced("EUR")


async def test_timeout_falls_back_to_rules_and_flags_estimated(db, avatax) -> None:
    state, url = avatax
    state.mode = "slow"
    await save_settings("http", url, "200", "", APPROVER)
    entity, account = await entity_account()
    [draft] = await bulk_drafts(account, entity, 1, tax_status="pending", amount_minor=10000)
    report = await finalize_many([draft], CREATOR, issue_date=DAY)
    assert draft in report.finalized  # estimated tax does not block finalization
    tax = await _tax_of(draft)
    assert (tax["tax_minor"], tax["tax_status"]) == (1900, "estimated")  # DE 19% rules
    assert "timed out" in tax["tax_note"]
    await assert_books_balanced("EUR")


async def test_server_error_falls_back_and_staff_recompute_when_it_is_back(db, avatax) -> None:
    state, url = avatax
    state.mode = "error"
    await save_settings("http", url, "2000", "", APPROVER)
    entity, account = await entity_account()
    [draft] = await bulk_drafts(account, entity, 1, tax_status="pending", amount_minor=10000)
    estimated = await recompute_tax(draft, APPROVER)
    assert (estimated.status, estimated.tax_minor) == ("estimated", 1900)
    assert "HTTP 500" in estimated.note
    assert (await _tax_of(draft))["tax_status"] == "estimated"

    state.mode = "good"
    computed = await recompute_tax(draft, APPROVER)
    assert (computed.status, computed.tax_minor) == ("calculated", 2000)
    tax = await _tax_of(draft)
    assert (tax["status"], tax["tax_minor"], tax["tax_status"]) == ("draft", 2000, "calculated")

    assert (await finalize_many([draft], CREATOR, issue_date=DAY)).finalized
    with pytest.raises(Conflict, match="only a draft"):
        await recompute_tax(draft, APPROVER)
    await assert_books_balanced("EUR")
