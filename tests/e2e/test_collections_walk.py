"""Browser walk of the collections pages: a collections agent (password + TOTP) opens the
overdue list from the staff console, records a promise to pay (first with a mistake),
answers a chargeback's evidence checklist, and looks at the Stripe reconciliation; the
chargeback page is also checked on a phone. Every page visited is scanned with axe-core
(0 serious/critical) and must run under the CSP without console errors.

The data lives on the integration database, served by a portal process of this module's
own (``live_server`` is overridden here) paying through this module's Stripe double.
"""

# ruff: noqa: F811 - fixtures imported from tests.integration.collections_support

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from playwright.async_api import Page, expect

from core.collections.chargebacks import on_dispute_event
from core.collections.tables import Chargeback
from core.identity.roles import StaffRole
from stripe_double import RunningDouble
from tests.conftest import (
    TEST_REDIS_URL,
    LiveServer,
    Mailbox,
    free_port,
    server_env,
    stripe_env,
)
from tests.e2e.support import assert_accessible
from tests.integration.assisted_support import PASSWORD, _staff, use_server_keys
from tests.integration.collections_support import (
    client,  # noqa: F401 - a fixture
    invoice,
    own_double,  # noqa: F401 - a fixture
    pay_through_stripe,
    second_account,
)
from tests.integration.factories import billing_account
from tests.serving import serve
from tests.stripe_double.support import control

pytestmark = pytest.mark.e2e
REDIS_DB = "/10"


@pytest.fixture(scope="module")
def live_server(
    databases: Any,
    smtp_server: tuple[str, Mailbox],
    own_double: RunningDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """This module's portal over the integration database (overrides the shared one)."""
    port = free_port()
    env = server_env(
        databases.it_url,
        tmp_path_factory.mktemp("collections-e2e-var"),
        SMTP_URL=smtp_server[0],
        BASE_URL=f"http://127.0.0.1:{port}",
        REDIS_URL=urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path=REDIS_DB)),
        **stripe_env(own_double.url),
    )
    log = tmp_path_factory.mktemp("collections-e2e-log") / "server.log"
    with serve(env, log, port) as url:
        yield LiveServer(url, own_double.url)


async def sign_in_staff(page: Page, email: str, code: str) -> None:
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/login/mfa"))
    await page.get_by_label("Authentication code or recovery code").fill(code)
    await page.get_by_role("button", name="Verify").click()
    await page.wait_for_url(re.compile(r"/staff$"))


async def test_collections_walk(db, client, own_double, open_session, tmp_path: Path) -> None:
    use_server_keys(tmp_path)
    account = await billing_account("USD")
    overdue = await invoice(account, "250.00", datetime.now(UTC).date() - timedelta(days=40))
    disputed_account = await second_account(account, "ACME-CB")
    disputed = await invoice(disputed_account, "80.00")
    paid = await pay_through_stripe(client, disputed_account, {disputed: 8000})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    [cb] = await Chargeback.select()
    agent = await _staff("Cora Collector", StaffRole.COLLECTIONS)
    assert agent.app is not None

    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await sign_in_staff(page, agent.email, agent.app.code())
    await page.get_by_test_id("collections-link").click()
    await page.wait_for_url(re.compile(r"/staff/collections$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Collections")
    await assert_accessible(page, "collections: overdue invoices", guard)

    row = page.get_by_test_id("overdue-row").filter(has_text="$250.00")
    await expect(row.get_by_test_id("dunning-state")).to_contain_text("Active")
    await row.get_by_role("link").click()
    await page.wait_for_url(re.compile(rf"/staff/collections/invoices/{overdue}$"))
    await assert_accessible(page, "collections: invoice dunning", guard)

    guard.expect_status(422, "/promise")
    await page.get_by_label("Promised date").fill(
        (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    )
    await page.get_by_label("Amount (USD)").fill("2500.00")
    await page.get_by_role("button", name="Record promise").click()
    await expect(page.get_by_text("at most the open balance")).to_be_visible()
    await assert_accessible(page, "collections: promise with an error", guard)
    await page.get_by_label("Amount (USD)").fill("250.00")
    await page.get_by_role("button", name="Record promise").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Promise to pay recorded")
    await expect(page.get_by_test_id("dunning-state")).to_have_text("Not sending: promise to pay")
    await assert_accessible(page, "collections: promise recorded", guard)

    await page.get_by_role("link", name="Chargebacks", exact=True).click()
    await page.wait_for_url(re.compile(r"/staff/collections/chargebacks$"))
    await assert_accessible(page, "collections: chargebacks", guard)
    await page.get_by_role("link", name=dispute["id"]).click()
    await page.wait_for_url(re.compile(rf"/chargebacks/{cb['id']}$"))
    await expect(page.get_by_test_id("evidence-due")).to_contain_text("(7 days left)")
    await page.get_by_label("Receipt or invoice").fill("file_receipt_0001")
    await page.get_by_role("button", name="Save evidence").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Evidence saved at Stripe")
    await expect(
        page.get_by_role("heading", name=re.compile("Evidence checklist"))
    ).to_contain_text("(1 of 11)")
    await assert_accessible(page, "collections: chargeback", guard)

    await page.get_by_role("link", name="Stripe reconciliation").click()
    await page.wait_for_url(re.compile(r"/staff/collections/reconciliation$"))
    await assert_accessible(page, "collections: reconciliation", guard)

    phone = await open_session("mobile")
    await phone.context.add_cookies(await s.context.cookies())
    await phone.page.goto(f"/staff/collections/chargebacks/{cb['id']}")
    await expect(phone.page.get_by_role("heading", level=1)).to_contain_text(dispute["id"])
    await assert_accessible(phone.page, "collections: chargeback on a phone", phone.guard)
