"""Browser walk of cash application: a billing-ops user (password + TOTP) imports a
small camt.053 statement (first a malformed one, refused with the element and reason),
sees one line applied automatically and one suggested, opens the workbench, searches
open invoices and applies the suggested match; on a phone, another billing-ops user
imports a statement and applies its suggested match too. Every page visited is scanned
with axe-core (0 serious/critical) and must run under the CSP without console errors.

Objects of this test's own on the demo database served by the shared ``live_server``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import expect

from core.identity.roles import StaffRole
from core.invoicing.tables import Invoice
from tests.e2e.support import assert_accessible
from tests.e2e.test_cash_walk import sign_in_staff
from tests.integration.assisted_support import _staff, use_server_keys
from tests.integration.test_remittance_pages import camt, own_invoices

pytestmark = pytest.mark.e2e


async def test_workbench_walk(demo_db, open_session, tmp_path: Path) -> None:
    use_server_keys(tmp_path)
    ids, numbers, tag = await own_invoices(("250.00", "61.47"))
    ops = await _staff("Wanda Workbench", StaffRole.BILLING_OPS)
    iban = f"DE66{uuid.uuid4().int % 10**18:018d}"
    stranger = f"DE77{uuid.uuid4().int % 10**18:018d}"
    statement = camt(
        f"WALK-{tag}",
        [("250.00", f"Invoice {numbers[0]}", iban), ("61.47", f"remittance {tag}", stranger)],
    )
    statement_file = tmp_path / "statement.xml"
    statement_file.write_bytes(statement)
    broken_file = tmp_path / "broken.xml"
    broken_file.write_bytes(statement.replace(b"61.47", b"61,47").replace(b"WALK-", b"BAD-"))

    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await sign_in_staff(page, ops)
    await page.get_by_test_id("remittance-link").click()
    await page.wait_for_url(re.compile(r"/staff/remittance$"))
    await assert_accessible(page, "remittance: workbench", guard)

    await page.get_by_role("link", name="Import a statement").click()
    await assert_accessible(page, "remittance: import", guard)
    guard.expect_status(422, "/staff/remittance/import")
    await page.get_by_label("Format").select_option("camt053")
    await page.get_by_label("Statement file").set_input_files(broken_file)
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_test_id("import-error")).to_contain_text("<Ntry> #2")
    await expect(page.get_by_test_id("import-error")).to_contain_text("not a number")
    await assert_accessible(page, "remittance: import refused", guard)

    await page.get_by_label("Format").select_option("camt053")
    await page.get_by_label("Statement file").set_input_files(statement_file)
    await page.get_by_role("button", name="Import").click()
    result = page.get_by_test_id("import-result")
    await expect(result).to_contain_text("1 applied automatically, 1 with a suggestion")
    await assert_accessible(page, "remittance: import result", guard)

    await result.get_by_role("link", name="Open the workbench for this statement").click()
    row = page.get_by_test_id("line-row").filter(has_text=f"remittance {tag}")
    await expect(row).to_contain_text("Suggested")
    await expect(row).to_contain_text(numbers[1])
    await assert_accessible(page, "remittance: workbench for the statement", guard)
    await row.get_by_role("link").click()
    await page.wait_for_url(re.compile(r"/staff/remittance/lines/\d+$"))
    await expect(page.get_by_test_id("suggestion")).to_contain_text(numbers[1])
    await page.get_by_label(re.compile("Search open USD invoices")).fill(numbers[1])
    await expect(page.get_by_test_id("search-results")).to_contain_text(numbers[1])  # htmx
    await assert_accessible(page, "remittance: line with search results", guard)

    await page.get_by_test_id("accept").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Applied")
    await expect(page.get_by_test_id("allocations")).to_contain_text(numbers[1])
    await assert_accessible(page, "remittance: line applied", guard)
    guard.check("billing ops walk")
    statuses = await Invoice.select(Invoice.status).where(Invoice.id.is_in(ids))
    assert {r["status"] for r in statuses} == {"paid"}

    # On a phone: another billing-ops user imports a second statement and applies its
    # suggested match from the line page.
    amount = f"{uuid.uuid4().int % 900 + 100}.{uuid.uuid4().int % 89 + 11}"  # unlike others
    more_ids, more_numbers, more_tag = await own_invoices((amount,))
    phone_file = tmp_path / "statement-phone.xml"
    phone_file.write_bytes(
        camt(
            f"WALK-{more_tag}",
            [(amount, f"remittance {more_tag}", f"DE88{uuid.uuid4().int % 10**18:018d}")],
        )
    )
    m = await open_session("mobile")
    await sign_in_staff(m.page, await _staff("Mo Mobile", StaffRole.BILLING_OPS))
    await m.page.goto("/staff/remittance/import")
    await m.page.get_by_label("Format").select_option("camt053")
    await m.page.get_by_label("Statement file").set_input_files(phone_file)
    await m.page.get_by_role("button", name="Import").click()
    phone_result = m.page.get_by_test_id("import-result")
    await expect(phone_result).to_contain_text("0 applied automatically, 1 with a suggestion")
    await assert_accessible(m.page, "remittance: import result (mobile)", m.guard)
    await phone_result.get_by_role("link", name="Open the workbench for this statement").click()
    phone_row = m.page.get_by_test_id("line-row").filter(has_text=f"remittance {more_tag}")
    await expect(phone_row).to_contain_text(more_numbers[0])
    await assert_accessible(m.page, "remittance: workbench (mobile)", m.guard)
    await phone_row.get_by_role("link").click()
    await m.page.wait_for_url(re.compile(r"/staff/remittance/lines/\d+$"))
    await expect(m.page.get_by_test_id("suggestion")).to_contain_text(more_numbers[0])
    await assert_accessible(m.page, "remittance: line (mobile)", m.guard)
    await m.page.get_by_test_id("accept").click()
    await expect(m.page.get_by_test_id("notice")).to_contain_text("Applied")
    await expect(m.page.get_by_test_id("allocations")).to_contain_text(more_numbers[0])
    await assert_accessible(m.page, "remittance: line applied (mobile)", m.guard)
    [paid] = await Invoice.select(Invoice.status).where(Invoice.id.is_in(more_ids))
    assert paid["status"] == "paid"
    await m.page.goto("/staff/remittance/mappings")
    await expect(m.page.get_by_test_id("mapping-form")).to_be_visible()
    await assert_accessible(m.page, "remittance: CSV mappings (mobile)", m.guard)
    await m.page.goto("/staff/remittance/settings")
    await expect(m.page.get_by_test_id("current-settings")).to_contain_text("confidence")
    await assert_accessible(m.page, "remittance: matching settings (mobile)", m.guard)
    m.guard.check("mobile walk")
