"""Browser walk of an assisted session: a support agent (password + TOTP) asks a
customer user for a session; the customer, on a phone, grants it; the agent starts it,
sees the portal as the customer under the banner and switches entity; the customer sees
the banner, ends the session at once and reads what was done; the agent is back in the
staff console. Every page visited is scanned with axe-core (0 serious/critical) and
must run under the CSP without console errors.

The world is seeded on the integration database and served by a portal process of this
module's own (``live_server`` is overridden here), so the shared demo data is untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer, Mailbox
from tests.e2e.support import assert_accessible
from tests.integration.assisted_support import PASSWORD, World, assisted_server, build_world

pytestmark = pytest.mark.e2e

REASON = "Customer asks why an invoice is missing from the list"


@pytest.fixture(scope="module")
def live_server(
    databases: Any, smtp_server: tuple[str, Mailbox], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """This module's portal over the integration database (overrides the shared one)."""
    with assisted_server(
        databases.it_url,
        smtp_server[0],
        tmp_path_factory.mktemp("assisted-e2e-var"),
        tmp_path_factory.mktemp("assisted-e2e-log"),
    ) as url:
        yield LiveServer(url)


@pytest.fixture
async def world(db: Any, tmp_path: Path) -> World:
    return await build_world(tmp_path)


async def sign_in(page: Page, email: str) -> None:
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


def banner(page: Page) -> Any:
    return page.get_by_role("region", name=re.compile(r"^Assisted session"))


async def test_assisted_session_walk(open_session, world: World, mailbox: Mailbox) -> None:
    agent_s = await open_session("desktop")
    agent, agent_guard = agent_s.page, agent_s.guard
    customer_s = await open_session("mobile")
    customer, customer_guard = customer_s.page, customer_s.guard
    assert world.agent.app is not None

    # -- the agent signs in with password and TOTP, and asks for a session
    await agent.goto("/login")
    await assert_accessible(agent, "agent: sign in", agent_guard)
    await sign_in(agent, world.agent.email)
    await agent.wait_for_url(re.compile(r"/login/mfa"))
    await assert_accessible(agent, "agent: two-step verification", agent_guard)
    await agent.get_by_label("Authentication code or recovery code").fill(world.agent.app.code())
    await agent.get_by_role("button", name="Verify").click()
    await agent.wait_for_url(re.compile(r"/staff$"))
    await assert_accessible(agent, "agent: staff console", agent_guard)
    await agent.get_by_test_id("assisted-link").click()
    await agent.wait_for_url(re.compile(r"/staff/assisted$"))
    await expect(agent.get_by_role("heading", level=1)).to_have_text("Assisted sessions")
    await assert_accessible(agent, "agent: assisted sessions (empty)", agent_guard)

    await agent.get_by_label("Customer user's email address").fill(world.paul.email)
    await agent.get_by_label("Ticket reference").fill("SUP-4711")
    await agent.get_by_label("Reason (the customer reads this)").fill(REASON)
    await agent.get_by_label("View and act").check()
    await agent.get_by_role("button", name="Send request").click()
    await agent.wait_for_url(re.compile(r"notice=requested"))
    row = agent.get_by_test_id("assisted-row").first
    await expect(row.get_by_test_id("assisted-status")).to_have_text("Waiting for the customer")
    await assert_accessible(agent, "agent: request sent", agent_guard)
    assert len(mailbox.to(world.paul.email)) == 1

    # -- the customer, on a phone, is told on every page and grants it
    await customer.goto("/login")
    await sign_in(customer, world.paul.email)
    await customer.wait_for_url(re.compile(r"/$"))
    await expect(banner(customer)).to_contain_text("A support agent asks for an assisted session")
    await assert_accessible(customer, "customer: dashboard with a request waiting", customer_guard)
    await customer.get_by_test_id("assisted-review").click()
    await customer.wait_for_url(re.compile(r"/assisted$"))
    request = customer.get_by_test_id("assisted-pending")
    await expect(request).to_contain_text("SUP-4711")
    await expect(request).to_contain_text(REASON)
    await assert_accessible(
        customer, "customer: assisted sessions, request waiting", customer_guard
    )
    await request.get_by_label("How long").select_option(label="1 hour")
    await request.get_by_role("radio", name=re.compile(r"View and act")).check()
    await request.get_by_test_id("assisted-grant").click()
    await customer.wait_for_url(re.compile(r"notice=granted"))
    await expect(customer.get_by_test_id("assisted-active")).to_contain_text("Sue Support")
    await assert_accessible(customer, "customer: access granted", customer_guard)

    # -- the agent starts it and sees the portal as paul, under the banner
    await agent.reload()
    await expect(row.get_by_test_id("assisted-status")).to_have_text("Granted")
    await assert_accessible(agent, "agent: request granted", agent_guard)
    await row.get_by_test_id("assisted-start").click()
    await agent.wait_for_url(re.compile(r"/$"))
    await expect(banner(agent)).to_contain_text(
        re.compile(
            r"Assisted session: you are viewing as Paul Payer \(view and act\) "
            r"— ends at \d\d:\d\d UTC"
        )
    )
    await expect(agent.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await assert_accessible(agent, "agent as paul: dashboard", agent_guard)
    nav = agent.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Invoices", exact=True).click()
    await agent.wait_for_url(re.compile(r"/invoices$"))
    for number in world.na_invoices + world.eu_invoices:
        await expect(agent.get_by_role("link", name=number)).to_be_visible()
    await expect(banner(agent)).to_be_visible()
    await assert_accessible(agent, "agent as paul: invoices", agent_guard)
    # An action: paul's own entity switcher.
    await agent.get_by_label("Entity shown").select_option(label="Globex North America LLC")
    await agent.get_by_test_id("entity-switcher").get_by_role("button", name="Show").click()
    await expect(agent.get_by_role("link", name=world.eu_invoices[0])).to_have_count(0)
    await expect(agent.get_by_role("link", name=world.na_invoices[0])).to_be_visible()
    await expect(banner(agent)).to_be_visible()
    await assert_accessible(agent, "agent as paul: invoices of one entity", agent_guard)

    # -- the customer sees the session on every page; the banner holds at 375 px
    await customer.set_viewport_size({"width": 375, "height": 740})
    await customer.goto("/invoices")
    running = banner(customer)
    await expect(running).to_contain_text(
        re.compile(
            r"Sue Support from support has an active assisted session \(view and act\) "
            r"until \d\d:\d\d UTC"
        )
    )
    await assert_accessible(customer, "customer: invoices with a session running", customer_guard)
    await customer.mouse.wheel(0, 4000)
    await customer.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    box = await running.bounding_box()
    assert box is not None
    assert box["y"] >= -1
    assert box["y"] + box["height"] <= 740, "the banner stays in view while scrolling"
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 376, "the banner fits a 375 px screen"
    await running.get_by_test_id("assisted-end-now").click()
    await customer.wait_for_url(re.compile(r"/invoices$"))
    await expect(banner(customer)).to_have_count(0)
    await assert_accessible(customer, "customer: session ended", customer_guard)

    # -- ... and reads what was done
    await customer.goto("/assisted")
    past = customer.get_by_test_id("assisted-history").first
    await expect(past).to_contain_text("SUP-4711")
    await past.locator("summary").click()
    done = past.get_by_test_id("assisted-done")
    await expect(done).to_contain_text("POST /entity")
    await expect(done).to_contain_text("GET /invoices")
    await expect(done).to_contain_text("on behalf of Paul Payer")
    await assert_accessible(customer, "customer: what was done", customer_guard)

    # -- the agent's next page is the staff console, with the reason
    await nav.get_by_role("link", name="Dashboard", exact=True).click()
    await agent.wait_for_url(re.compile(r"/staff/assisted\?notice=ended$"))
    await expect(agent.get_by_test_id("notice")).to_have_text(
        "The assisted session has ended. You are back in the staff console."
    )
    await expect(banner(agent)).to_have_count(0)
    await expect(row.get_by_test_id("assisted-status")).to_have_text("Ended")
    await assert_accessible(agent, "agent: back in the staff console", agent_guard)
