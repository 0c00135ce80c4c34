"""SSO in Chromium through a real OpenID provider (oidc-provider's own dev login and
consent pages): from our sign-in form (email only) or our "company account" page, to the
provider, back to our dashboard, as a person provisioned just in time with the admin
role from the ``groups`` claim, who then opens the SSO settings. Every page of ours
visited is axe-scanned and must run under its CSP without console errors; the
provider's pages are not ours and are not scanned."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.e2e.support import assert_accessible
from tests.integration import oidc_fixtures as fx
from tests.integration.oidc_fixtures import INITECH, provider_subject, user_by_subject

pytestmark = pytest.mark.e2e
HELD = re.compile(r"/sso/start\?.*email=")

oidc_provider = fx.oidc_provider
sso_config = fx.sso_config


@pytest.fixture
async def initech_sso(live_server: Any, oidc_provider: Any, sso_config: Any) -> Any:
    await sso_config(
        INITECH, oidc_provider.issuer, oidc_provider.client_id, oidc_provider.client_secret
    )
    return oidc_provider


async def offline(context: BrowserContext) -> None:
    """The provider's dev pages ask for web fonts: answer anything not on this machine
    with an empty response (the tests never leave 127.0.0.1)."""

    async def empty(route: Route) -> None:
        await route.fulfill(status=200, body="", content_type="text/css")

    await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), empty)


async def sign_in_at_provider(page: Page, provider: Any, login: str) -> None:
    """The provider's dev pages: any login name and password, then consent."""
    await page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
    await page.locator('input[name="login"]').fill(login)
    await page.locator('input[name="password"]').fill("any password")
    await page.locator('button[type="submit"]').click()
    await page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
    await expect(page.locator('input[name="prompt"][value="consent"]')).to_have_count(1)
    await page.locator('button[type="submit"]').click()


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_sso_login_through_the_real_provider(
    open_session, initech_sso, viewport: str
) -> None:
    s = await open_session(viewport)
    page, guard = s.page, s.guard
    await offline(s.context)
    guard.expect_status(404, initech_sso.issuer + "/favicon.ico")  # the provider's, not ours
    name = f"walk{uuid.uuid4().hex[:8]}"
    login = f"{name}+admin@initech.example"

    # Our sign-in form, email only: it routes the domain to /sso/start, whose page
    # continues to the provider at once (a meta refresh, which CSP form-action allows).
    await page.goto("/login")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await assert_accessible(page, "login page", guard)
    await page.get_by_label("Email").fill(login)
    await page.get_by_role("button", name="Sign in").click()

    await sign_in_at_provider(page, initech_sso, login)
    await page.wait_for_url(re.compile(r"127\.0\.0\.1:\d+/$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await assert_accessible(page, "dashboard after SSO", guard)

    user = await user_by_subject(initech_sso.issuer, provider_subject(login))
    assert user is not None, "provisioned just in time, keyed by (issuer, subject)"

    # The groups claim made this person an admin of the group: the SSO settings are open.
    await page.goto("/admin/sso")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Company sign-in (SSO)")
    await expect(page.get_by_label("Issuer URL")).to_have_value(initech_sso.issuer)
    await assert_accessible(page, "SSO settings", guard)

    # A wrong value re-renders the form with the field's error (422).
    guard.expect_status(422, "/admin/sso")
    await page.get_by_label("Allowed email domains").fill("initech.example, not a domain")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#allowed_domains-error")).to_be_visible()
    await expect(page.get_by_label("Allowed email domains")).to_have_attribute(
        "aria-invalid", "true"
    )
    await assert_accessible(page, "SSO settings with an error", guard)
    guard.check("end of SSO walk")


async def test_company_account_page_and_continue_page(open_session, initech_sso) -> None:
    """Our own entry page, and the continue page held still (its refresh removed) so it
    can be scanned, then left through its link."""
    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await offline(s.context)
    guard.expect_status(404, initech_sso.issuer + "/favicon.ico")

    await page.goto("/sso/start")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in with your company account"
    )
    await assert_accessible(page, "company account page", guard)

    guard.expect_status(404, "/sso/start")
    await page.get_by_label("Work email").fill("someone@nowhere.example")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#sso-email-error")).to_be_visible()
    await assert_accessible(page, "company account page, unknown domain", guard)

    async def hold_still(route: Route) -> None:
        response = await route.fetch()
        body = re.sub(r"<meta http-equiv=\"refresh\"[^>]*>", "", await response.text())
        await route.fulfill(response=response, body=body)

    await page.route(HELD, hold_still)
    await page.get_by_label("Work email").fill(f"held{uuid.uuid4().hex[:6]}@initech.example")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Continue to your company sign-in"
    )
    await assert_accessible(page, "continue page", guard)
    await page.unroute(HELD)
    await page.get_by_test_id("sso-continue").click()
    await sign_in_at_provider(page, initech_sso, f"held{uuid.uuid4().hex[:6]}@initech.example")
    await page.wait_for_url(re.compile(r"127\.0\.0\.1:\d+/$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # A refused callback: a clear page of ours.
    guard.expect_status(400, "/sso/callback")
    await page.goto("/sso/callback?state=forged&code=x")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    await expect(page.get_by_test_id("sso-reason")).to_have_text("state_unknown")
    await assert_accessible(page, "refused sign-in page", guard)
    guard.check("end of company account walk")
