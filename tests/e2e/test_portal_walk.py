"""Browser walks through the customer portal as bob@globex.example (payer at Globex North
America: sees only the "Globex US operations" USD account), on desktop and mobile, with
htmx and without JavaScript. Every page state is scanned with axe-core and every page
must run under its CSP without console errors. Expected values come from the demo DB."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from core.demo_data import DEMO_PASSWORD
from core.identity.tables import BillingAccount, CustomerOrganization, Membership, User
from core.invoicing.tables import Invoice
from portal.templating import money, nice_date
from tests.e2e.support import assert_accessible, run_axe

pytestmark = pytest.mark.e2e

BOB = "bob@globex.example"
PER_PAGE = 25


@dataclass
class BobView:
    """What bob may see, read straight from the demo database."""

    invoices: list[dict[str, Any]]  # non-draft invoices in bob's billing accounts
    today: date

    def is_overdue(self, inv: dict[str, Any]) -> bool:
        return inv["status"] == "open" and inv["due_date"] < self.today

    @property
    def open(self) -> list[dict[str, Any]]:
        return [i for i in self.invoices if i["status"] == "open"]

    @property
    def overdue(self) -> list[dict[str, Any]]:
        return [i for i in self.invoices if self.is_overdue(i)]

    def by_id(self, invoice_id: int) -> dict[str, Any]:
        return next(i for i in self.invoices if i["id"] == invoice_id)


@pytest.fixture
async def bob(demo_db: Any) -> BobView:
    user = await User.select(User.id).where(User.email == BOB).first()
    assert user is not None
    paths = await Membership.select(Membership.organization.path.as_alias("path")).where(
        Membership.user == user["id"]
    )
    org_ids: set[int] = set()
    for row in paths:
        nodes = await CustomerOrganization.select(CustomerOrganization.id).where(
            CustomerOrganization.path.like(row["path"] + "%")
        )
        org_ids |= {n["id"] for n in nodes}
    accounts = await BillingAccount.select(
        BillingAccount.id, BillingAccount.name, BillingAccount.currency
    ).where(BillingAccount.organization.is_in(sorted(org_ids) or [-1]))
    assert [(a["name"], a["currency"]) for a in accounts] == [("Globex US operations", "USD")]
    invoices = await Invoice.select(
        Invoice.id,
        Invoice.number,
        Invoice.status,
        Invoice.due_date,
        Invoice.total_minor,
        Invoice.balance_minor,
    ).where(
        Invoice.billing_account.is_in([a["id"] for a in accounts]) & (Invoice.status != "draft")
    )
    view = BobView(invoices, datetime.now(UTC).date())
    assert len(view.overdue) > PER_PAGE, "the walk pages through overdue invoices"
    return view


# ---------------------------------------------------------------------------- helpers


def usd(minor: int) -> str:
    return money(minor, "USD")


def amount(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def count_text(total: int, first: int = 1) -> re.Pattern[str]:
    last = min(first + PER_PAGE - 1, total)
    noun = "invoice" if total == 1 else "invoices"
    return re.compile(rf"Showing {first}\W{last} of {total} {noun}\b")


def url_has(**params: str) -> re.Pattern[str]:
    """URL regex: the path is /invoices and the query holds every given name=value."""
    ahead = "".join(rf"(?=.*[?&]{re.escape(k)}={re.escape(v)}(&|$))" for k, v in params.items())
    return re.compile(rf"/invoices(?=\?){ahead}")


async def sign_in(page: Page, email: str = BOB) -> None:
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def numbers(page: Page) -> list[str]:
    return await page.get_by_test_id("invoice-link").all_inner_texts()


async def totals(page: Page) -> list[Decimal]:
    texts = await page.locator("[data-testid=invoice-table] [data-testid=total]").all_inner_texts()
    return [amount(t) for t in texts]


async def activate(target: Locator, touch: bool) -> None:
    """Tap on the touch (mobile) context, click otherwise."""
    await (target.tap() if touch else target.click())


async def assert_fits_viewport(page: Page, label: str) -> None:
    """No sideways scrolling of the page itself (wide tables scroll inside their wrapper)."""
    scroll_width, width = await page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= width, f"{label}: page is {scroll_width}px wide in a {width}px viewport"


def nav_link(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


async def set_marker(page: Page) -> None:
    await page.evaluate("() => { window.__marker = 1; }")


async def assert_no_full_load(page: Page, what: str) -> None:
    assert await page.evaluate("() => window.__marker") == 1, f"{what} reloaded the whole page"


def search_fragment(view: BobView) -> tuple[str, list[str]]:
    """Part of a real invoice number that narrows the list to a few (but >1) invoices."""
    all_numbers = sorted(i["number"] for i in view.invoices)
    for number in all_numbers:
        part = number[-4:-1]  # "INV-US-2026-000123" -> "012"
        hits = [n for n in all_numbers if part.lower() in n.lower()]
        if part.strip("0") and 1 < len(hits) < min(PER_PAGE, len(all_numbers)):
            return part, hits
    raise AssertionError("no invoice number fragment narrows the list")


# ---------------------------------------------------------------------------- tests


async def test_guards_catch_axe_and_csp_problems(open_session) -> None:
    """The checks themselves work: axe runs under the CSP and reports a planted
    violation, and a planted inline script is reported as a CSP violation."""
    s = await open_session("desktop")
    await s.page.goto("/login")
    await s.page.evaluate(
        """() => { const b = document.createElement("button");
                   b.id = "planted"; document.body.append(b); }"""
    )
    violations = await run_axe(s.page)
    assert any(v["id"] == "button-name" and "#planted" in v["targets"] for v in violations)
    assert not s.guard.problems
    csp_console = s.page.expect_console_message(lambda m: "Content Security Policy" in m.text)
    async with csp_console:
        await s.page.evaluate(
            """() => { const sc = document.createElement("script");
                       sc.textContent = "window.__inline = 1"; document.body.append(sc); }"""
        )
    await asyncio.wait_for(s.guard.csp_reported.wait(), timeout=5)
    assert any(p.startswith("CSP (console") for p in s.guard.problems), s.guard.problems
    assert any(p.startswith("CSP securitypolicyviolation") for p in s.guard.problems)
    assert await s.page.evaluate("() => window.__inline") is None
    s.guard.problems.clear()


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_portal_walk(open_session, bob: BobView, viewport: str) -> None:
    s = await open_session(viewport)
    page, guard = s.page, s.guard
    touch = viewport == "mobile"

    # -- sign in -> dashboard
    await page.goto("/login")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await assert_accessible(page, "login page", guard)
    await sign_in(page)
    await page.wait_for_url(re.compile(r"/$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await assert_accessible(page, "dashboard", guard)

    open_minor = sum(i["balance_minor"] for i in bob.open)
    overdue_minor = sum(i["balance_minor"] for i in bob.overdue)
    upcoming = [i["due_date"] for i in bob.open if i["due_date"] >= bob.today]
    await expect(page.get_by_test_id("open-USD").locator(".value")).to_have_text(usd(open_minor))
    await expect(page.get_by_test_id("open-USD")).to_contain_text(f"{len(bob.open)} open invoice")
    await expect(page.get_by_test_id("overdue-USD").locator(".value")).to_have_text(
        usd(overdue_minor)
    )
    await expect(page.get_by_test_id("overdue-USD")).to_contain_text(
        f"{len(bob.overdue)} overdue invoice"
    )
    await expect(page.get_by_test_id("next-due-USD").locator(".value")).to_have_text(
        nice_date(min(upcoming) if upcoming else None)
    )
    await expect(page.locator("[data-testid^=open-]")).to_have_count(1)  # USD only
    await assert_fits_viewport(page, "dashboard")

    # -- invoice list
    await activate(nav_link(page, "Invoices"), touch)
    await page.wait_for_url(re.compile(r"/invoices$"))
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.invoices)))
    await assert_fits_viewport(page, "invoice list")
    await assert_accessible(page, "invoice list", guard)

    # -- status filter: htmx swap, URL pushed, no full page load
    await set_marker(page)
    await page.locator("#status").select_option("overdue")
    await expect(page).to_have_url(url_has(status="overdue"))
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.overdue)))
    await assert_no_full_load(page, "the status filter")
    table = page.get_by_test_id("invoice-table")
    await expect(table.locator("tbody tr")).to_have_count(PER_PAGE)
    badges = await table.locator("tbody tr td:nth-child(2) .badge").all_inner_texts()
    assert badges == ["Overdue"] * PER_PAGE
    await assert_accessible(page, "invoice list, status=overdue", guard)

    # -- sort by total: ascending, then descending
    overdue_totals = sorted(Decimal(i["total_minor"]) / 100 for i in bob.overdue)
    await activate(page.get_by_test_id("sort-amount"), touch)
    await expect(page).to_have_url(url_has(status="overdue", sort="amount"))
    await expect(page.locator("th[aria-sort]")).to_have_count(1)
    await expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Total")
    ascending = await totals(page)
    assert ascending == sorted(ascending), ascending
    assert ascending == overdue_totals[:PER_PAGE]
    await assert_no_full_load(page, "sorting")
    await assert_accessible(page, "invoice list, sorted by total ascending", guard)

    await activate(page.get_by_test_id("sort-amount"), touch)
    await expect(page).to_have_url(url_has(status="overdue", sort="-amount"))
    await expect(page.locator("th[aria-sort=descending]")).to_contain_text("Total")
    descending = await totals(page)
    assert descending == sorted(descending, reverse=True), descending
    assert descending == overdue_totals[::-1][:PER_PAGE]
    await assert_no_full_load(page, "sorting")
    await assert_accessible(page, "invoice list, sorted by total descending", guard)

    # -- pagination, then browser back
    page_one_url = page.url
    page_one = await numbers(page)
    await activate(page.get_by_test_id("next-page"), touch)
    await expect(page).to_have_url(url_has(status="overdue", sort="-amount", page="2"))
    await expect(page.locator("#results-count")).to_contain_text(
        count_text(len(bob.overdue), first=PER_PAGE + 1)
    )
    page_two = await numbers(page)
    assert page_two[0] != page_one[0]
    assert not set(page_two) & set(page_one)
    await assert_no_full_load(page, "paging")
    await assert_accessible(page, "invoice list, page 2", guard)

    await page.go_back()
    await expect(page).to_have_url(page_one_url)
    await expect(page.get_by_test_id("invoice-link").first).to_have_text(page_one[0])
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.overdue)))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoices")
    assert await numbers(page) == page_one
    await assert_accessible(page, "invoice list, back to page 1", guard)

    # -- clear the status, then search by part of an invoice number
    await set_marker(page)
    await page.locator("#status").select_option("")
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.invoices)))
    await assert_accessible(page, "invoice list, any status", guard)

    part, hits = search_fragment(bob)
    await page.locator("#q").press_sequentially(part)
    await expect(page).to_have_url(url_has(q=part))
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(hits)))
    shown = await numbers(page)
    assert sorted(shown) == hits
    assert all(part in n for n in shown)
    await assert_no_full_load(page, "the number search")
    await expect(page.locator("#q")).to_have_value(part)
    await assert_accessible(page, f"invoice list, q={part}", guard)

    # -- invoice detail
    link = page.get_by_test_id("invoice-link").first
    number = await link.inner_text()
    await activate(link, touch)
    await page.wait_for_url(re.compile(r"/invoices/\d+$"))
    inv = bob.by_id(int(page.url.rsplit("/", 1)[1]))
    assert inv["number"] == number
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    await expect(page.get_by_test_id("invoice-total")).to_have_text(usd(inv["total_minor"]))
    await expect(page.get_by_test_id("invoice-balance")).to_have_text(usd(inv["balance_minor"]))
    status = "overdue" if bob.is_overdue(inv) else inv["status"]
    await expect(page.get_by_test_id("invoice-status")).to_have_text(status.capitalize())
    await assert_fits_viewport(page, "invoice detail")
    await assert_accessible(page, f"invoice detail {number}", guard)
    guard.check("end of walk")


async def test_no_javascript_walk(open_session, scan_as, bob: BobView) -> None:
    s = await open_session("desktop", js=False)
    page = s.page

    await page.goto("/login")
    await scan_as(s, "login page (no JS)")
    await sign_in(page)
    await page.wait_for_url(re.compile(r"/$"))
    await expect(page.get_by_test_id("overdue-USD")).to_be_visible()
    await scan_as(s, "dashboard (no JS)")

    async with page.expect_navigation():
        await nav_link(page, "Invoices").click()
    await expect(page).to_have_url(re.compile(r"/invoices$"))
    await scan_as(s, "invoice list (no JS)")

    # The filter form is a plain GET form: "Apply filters" navigates with the params.
    await page.locator("#status").select_option("overdue")
    await page.locator("#sort").select_option("amount")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(url_has(status="overdue", sort="amount"))
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.overdue)))
    await expect(page.locator("#status")).to_have_value("overdue")
    first_page = await numbers(page)
    shown = await totals(page)
    assert shown == sorted(shown)
    await scan_as(s, "invoice list, overdue by amount (no JS)")

    # Pagination and sort links are ordinary links.
    async with page.expect_navigation():
        await page.get_by_test_id("next-page").click()
    await expect(page).to_have_url(url_has(status="overdue", sort="amount", page="2"))
    await expect(page.locator("#results-count")).to_contain_text(
        count_text(len(bob.overdue), first=PER_PAGE + 1)
    )
    assert not set(await numbers(page)) & set(first_page)
    await scan_as(s, "invoice list, page 2 (no JS)")

    # Column sort links too (and they go back to page 1, keeping the filter).
    async with page.expect_navigation():
        await page.get_by_role("link", name="Number", exact=True).click()
    await expect(page).to_have_url(url_has(status="overdue", sort="number"))
    await expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Number")
    expected = sorted(i["number"] for i in bob.overdue)[:PER_PAGE]
    assert await numbers(page) == expected
    await scan_as(s, "invoice list, overdue by number (no JS)")

    link = page.get_by_test_id("invoice-link").first
    number = await link.inner_text()
    async with page.expect_navigation():
        await link.click()
    inv = bob.by_id(int(page.url.rsplit("/", 1)[1]))
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    await expect(page.get_by_test_id("invoice-total")).to_have_text(usd(inv["total_minor"]))
    await expect(page.get_by_test_id("invoice-balance")).to_have_text(usd(inv["balance_minor"]))
    await scan_as(s, f"invoice detail {number} (no JS)")
    s.guard.check("no-JS walk")


async def test_invalid_filters_and_not_found(open_session, bob: BobView) -> None:
    s = await open_session("desktop")
    page, guard = s.page, s.guard

    # Signed out: the bad-filter URL sends us to sign in and back, query string intact.
    bad = "/invoices?from=notadate&page=abc"
    await page.goto(bad)
    await page.wait_for_url(re.compile(r"/login\?next="))
    await sign_in(page)
    await page.wait_for_url(re.compile(r"/invoices\?from=notadate&page=abc$"))
    response = await page.reload()
    assert response is not None
    assert response.status == 200
    alert = page.locator("#invoice-results [role=alert]")
    await expect(alert).to_contain_text("Some filters were not understood")
    await expect(alert).to_contain_text("Enter a date as YYYY-MM-DD.")
    await expect(alert).to_contain_text("Choose a valid page number.")
    await expect(page.locator("#from")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#from-error")).to_have_text("Enter a date as YYYY-MM-DD.")
    # The invalid values are ignored: page 1 of everything.
    await expect(page.locator("#results-count")).to_contain_text(count_text(len(bob.invoices)))
    await assert_accessible(page, "invoice list with invalid filters", guard)

    guard.expect_status(404, "/invoices/999999999")
    response = await page.goto("/invoices/999999999")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    await expect(page.get_by_role("link", name="Go to the dashboard")).to_be_visible()
    await assert_accessible(page, "404 page", guard)
