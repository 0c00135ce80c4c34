"""Password sign-in with forced MFA enrollment, in Chromium: the demo staff user
ops@ledgerline.example signs in, must set up TOTP (the secret is read from the page and
the code computed with pyotp, as an authenticator app would), sees the recovery codes
once, reaches the console, signs out, and signs in again with a code. Every page is
scanned with axe-core and must run under the CSP without console errors.

The demo database is left as it was found: ops's factor is removed at the end."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from core.demo_data import DEMO_PASSWORD
from core.identity.tables import MfaFactor, RecoveryCode, StaffUser
from tests.e2e.support import assert_accessible
from tests.integration.conftest_auth import Authenticator

pytestmark = pytest.mark.e2e

OPS = "ops@ledgerline.example"


@pytest.fixture
async def ops_without_mfa(demo_db: Any) -> AsyncIterator[int]:
    row = await StaffUser.select(StaffUser.id).where(StaffUser.email == OPS).first()
    assert row is not None
    staff_id = int(row["id"])

    async def forget() -> None:
        scope = (MfaFactor.principal_kind == "staff") & (MfaFactor.principal_id == staff_id)
        await MfaFactor.delete().where(scope)
        await RecoveryCode.delete().where(
            (RecoveryCode.principal_kind == "staff") & (RecoveryCode.principal_id == staff_id)
        )

    await forget()
    yield staff_id
    await forget()


async def sign_in_with_password(page: Page) -> None:
    await page.goto("/login")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await page.locator("#email").fill(OPS)
    await page.locator("#password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def test_staff_enrolls_then_signs_in_with_a_code(open_session, ops_without_mfa) -> None:
    s = await open_session("desktop")
    page, guard = s.page, s.guard

    await page.goto("/login")
    await assert_accessible(page, "sign-in page", guard)
    await sign_in_with_password(page)

    # Staff without MFA land on the set-up page, and nothing else opens until it is done.
    await page.wait_for_url(re.compile(r"/account/mfa$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Two-step verification")
    await expect(page.get_by_text("Staff accounts must use two-step verification")).to_be_visible()
    await expect(page.get_by_test_id("totp-qr")).to_be_visible()
    await assert_accessible(page, "forced MFA enrollment", guard)
    await page.goto("/staff")
    await page.wait_for_url(re.compile(r"/account/mfa$"))

    secret = (await page.get_by_test_id("totp-secret").inner_text()).replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    app = Authenticator(secret)

    # A wrong code first: the error sits next to the field (a 400 answer, on purpose).
    guard.expect_status(400, "/account/mfa/confirm")
    await page.get_by_label("Code from your app").fill("12345")
    await page.get_by_role("button", name="Turn on two-step verification").click()
    await expect(page.locator("#code-error")).to_be_visible()
    await expect(page.get_by_label("Code from your app")).to_have_attribute("aria-invalid", "true")
    await assert_accessible(page, "MFA enrollment with an error", guard)

    await page.get_by_label("Code from your app").fill(await app.code())
    await page.get_by_role("button", name="Turn on two-step verification").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    codes = await page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", c) for c in codes)
    await assert_accessible(page, "recovery codes", guard)

    await page.get_by_role("button", name="I have saved my codes, continue").click()
    await page.wait_for_url(re.compile(r"/staff$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Staff console")
    await expect(page.get_by_role("heading", name="Security flags")).to_be_visible()
    await assert_accessible(page, "staff console", guard)

    await page.get_by_role("link", name="Account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    await expect(page.get_by_test_id("mfa-status")).to_contain_text("10 unused recovery codes")
    await expect(page.get_by_test_id("this-session")).to_contain_text("This session")
    await assert_accessible(page, "account page", guard)

    await page.get_by_test_id("logout").click()
    await page.wait_for_url(re.compile(r"/login$"))

    # Second sign-in: password, then a code from the app.
    await sign_in_with_password(page)
    await page.wait_for_url(re.compile(r"/login/mfa$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Two-step verification")
    await assert_accessible(page, "second-factor page", guard)
    await page.get_by_label("Authentication code or recovery code").fill(await app.code())
    await page.get_by_role("button", name="Verify").click()
    await page.wait_for_url(re.compile(r"/staff$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Staff console")
    await assert_accessible(page, "staff console after MFA", guard)
    guard.check("end of MFA walk")


async def test_mfa_pages_on_mobile(open_session, ops_without_mfa) -> None:
    s = await open_session("mobile")
    page, guard = s.page, s.guard
    await sign_in_with_password(page)
    await page.wait_for_url(re.compile(r"/account/mfa$"))
    await assert_accessible(page, "forced MFA enrollment (mobile)", guard)
    scroll_width, width = await page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= width, "the enrollment page scrolls sideways on a phone"
    await page.goto("/password/forgot")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")
    await assert_accessible(page, "forgot password (mobile)", guard)
    guard.check("end of mobile MFA pages")
