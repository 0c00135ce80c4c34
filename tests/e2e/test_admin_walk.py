"""Browser walk through customer administration on the demo data: alice (admin of the
whole Globex group) invites a new person, the invitee opens the emailed link, sets a
password, signs in and uses the entity switcher; alice then sees them and gives them a
role. Every page visited is scanned with axe-core and must run under the CSP without
console errors. The invitee (a fresh address per run) is removed afterwards; no demo
user is changed."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect

from core.demo_data import DEMO_PASSWORD
from core.identity.tables import CustomerOrganization, Invitation, Membership, User
from tests.e2e.support import assert_accessible

pytestmark = pytest.mark.e2e

ALICE = "alice@globex.example"
NEW_PASSWORD = "a long and memorable passphrase"
LINK = re.compile(r"https?://\S+?(/invitations/[A-Za-z0-9_\-]+)")


@pytest.fixture
async def invitee(demo_db: Any) -> AsyncIterator[str]:
    """A fresh address; afterwards its invitation, memberships and account are removed."""
    email = f"walk-{uuid.uuid4().hex[:10]}@globex.example"
    yield email
    user = await User.select(User.id).where(User.email == email).first()
    if user is not None:
        await Membership.delete().where(Membership.user == user["id"])
    await Invitation.delete().where(Invitation.email == email)
    if user is not None:
        await User.delete().where(User.id == user["id"])


async def node_id(name: str) -> str:
    row = (
        await CustomerOrganization.select(CustomerOrganization.id)
        .where(CustomerOrganization.name == name)
        .first()
    )
    assert row is not None
    return str(row["id"])


async def sign_in(page: Page, email: str, password: str) -> None:
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def heading(page: Page, text: str) -> None:
    await expect(page.get_by_role("heading", level=1)).to_have_text(text)


async def assert_fits_viewport(page: Page, label: str) -> None:
    scroll_width, width = await page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= width, f"{label}: page is {scroll_width}px wide in a {width}px viewport"


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_admin_invites_and_the_invitee_switches_entities(
    open_session, mailbox, invitee: str, viewport: str
) -> None:
    root = await node_id("Globex Holdings")
    europe = await node_id("Globex Europe GmbH")

    # -- alice signs in and opens user administration
    admin = await open_session(viewport)
    page, guard = admin.page, admin.guard
    await page.goto("/login")
    await sign_in(page, ALICE, DEMO_PASSWORD)
    await page.wait_for_url(re.compile(r"/$"))
    await heading(page, "Dashboard")
    await expect(page.get_by_test_id("entity-switcher")).to_be_visible()
    await assert_accessible(page, "dashboard (alice)", guard)

    main_nav = page.get_by_role("navigation", name="Main")
    await main_nav.get_by_role("link", name="Users", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/users$"))
    await heading(page, "Users")
    await expect(page.get_by_test_id("users-table")).to_contain_text("Alice Admin")
    await assert_fits_viewport(page, "users")
    await assert_accessible(page, "users", guard)

    sub_nav = page.get_by_role("navigation", name="User administration")
    await sub_nav.get_by_role("link", name="Invite a person").click()
    await page.wait_for_url(re.compile(r"/admin/users/invite$"))
    await heading(page, "Invite a person")
    await assert_accessible(page, "invite form", guard)

    # -- bad input comes back with the field's error
    guard.expect_status(422, "/admin/users/invite")
    await page.get_by_label("Email address").fill("not an email")
    await page.get_by_label("Organization").select_option(root)
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.locator("#email-error")).to_be_visible()
    await expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    await assert_accessible(page, "invite form with an error", guard)

    await page.get_by_label("Email address").fill(invitee)
    await page.get_by_label("Organization").select_option(root)
    await page.get_by_label("Role", exact=True).select_option("viewer")
    await page.get_by_role("button", name="Send invitation").click()
    await page.wait_for_url(re.compile(r"/admin/users/invitations\?notice=invited$"))
    await expect(page.get_by_test_id("notice")).to_contain_text("Invitation sent")
    row = page.get_by_test_id("invitation-row").filter(has_text=invitee)
    await expect(row).to_contain_text("Pending")
    await assert_fits_viewport(page, "invitations")
    await assert_accessible(page, "invitations", guard)

    # -- the invitee opens the emailed link (the path, on this test server)
    [message] = mailbox.to(invitee)
    match = LINK.search(message.get_body(("plain",)).get_content())
    assert match, "no invitation link in the email"
    path = urlsplit(match.group(0)).path

    person = await open_session(viewport)
    p, pguard = person.page, person.guard
    await p.goto(path)
    await heading(p, "Join Globex Holdings")
    await expect(p.locator("main")).to_contain_text("Viewer")
    await assert_accessible(p, "invitation page", pguard)
    await p.get_by_label("Your name").fill("Walker Newcomer")
    await p.get_by_label("Choose a password").fill(NEW_PASSWORD)
    await p.get_by_role("button", name="Create my account").click()
    await heading(p, "Your account is ready")
    await assert_accessible(p, "account ready", pguard)

    # the link is used up
    pguard.expect_status(410, "/invitations/")
    await p.goto(path)
    await heading(p, "This invitation can't be used")
    await expect(p.get_by_test_id("invitation-problem")).to_have_attribute(
        "data-reason", "accepted"
    )
    await assert_accessible(p, "used invitation", pguard)

    # -- the new person signs in and switches entities
    await p.goto("/login")
    await sign_in(p, invitee, NEW_PASSWORD)
    await p.wait_for_url(re.compile(r"/$"))
    await heading(p, "Dashboard")
    await expect(p.get_by_test_id("open-USD")).to_be_visible()
    await expect(p.get_by_test_id("open-EUR")).to_be_visible()
    await expect(
        p.get_by_role("navigation", name="Main").get_by_role("link", name="Users")
    ).to_have_count(0)
    await assert_fits_viewport(p, "dashboard (invitee)")
    await assert_accessible(p, "dashboard (invitee)", pguard)

    switcher = p.get_by_test_id("entity-switcher")
    await switcher.get_by_label("Entity shown").select_option(europe)
    await switcher.get_by_role("button", name="Show").click()
    await p.wait_for_url(re.compile(r"/$"))
    await expect(p.get_by_test_id("open-EUR")).to_be_visible()
    await expect(p.get_by_test_id("open-USD")).to_have_count(0)
    await expect(p.get_by_label("Entity shown")).to_have_value(europe)
    await assert_accessible(p, "dashboard narrowed to Europe", pguard)

    await (
        p.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Invoices", exact=True)
        .click()
    )
    await p.wait_for_url(re.compile(r"/invoices$"))
    table = p.get_by_test_id("invoice-table")
    await expect(table).to_contain_text("Globex Europe GmbH")
    await expect(table).not_to_contain_text("Globex North America LLC")
    await assert_accessible(p, "invoice list narrowed to Europe", pguard)

    switcher = p.get_by_test_id("entity-switcher")
    await switcher.get_by_label("Entity shown").select_option("all")
    await switcher.get_by_role("button", name="Show").click()
    await p.wait_for_url(re.compile(r"/invoices$"))
    await expect(p.get_by_label("Entity shown")).to_have_value("all")
    await assert_accessible(p, "invoice list, all entities", pguard)

    # -- alice sees the new person and gives them a role in Europe
    await page.goto("/admin/users")
    await page.get_by_role("link", name="Walker Newcomer").click()
    await page.wait_for_url(re.compile(r"/admin/users/\d+$"))
    await heading(page, "Walker Newcomer")
    await expect(page.get_by_test_id("roles-table")).to_contain_text("Viewer")
    await assert_accessible(page, "user detail", guard)
    await page.get_by_label("Organization").select_option(europe)
    await page.get_by_label("Role", exact=True).select_option("payer")
    await page.get_by_role("button", name="Save role").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Role saved")
    await expect(page.get_by_test_id("roles-table")).to_contain_text("Payer")
    await assert_accessible(page, "user detail after a role change", guard)
