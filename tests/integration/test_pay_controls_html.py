"""Pay controls without JavaScript: the invoice page's "Pay this invoice" link and the
navigation's Pay / Approvals links are in the page HTML itself (no htmx fetch), and
only for users whose role allows them. The scope is read on every request, so a role
change shows on the next page."""

from __future__ import annotations

import httpx

from core.identity.tables import Membership
from tests.helpers import login
from tests.integration import test_payments_http as http_tests
from tests.integration.test_payments_world import PASSWORD, World, assert_books

portal = http_tests.portal
world = http_tests.world

PAY_LINK = 'data-testid="pay-invoice"'
NAV_PAY = 'data-testid="nav-pay"'
NAV_APPROVALS = 'data-testid="nav-approvals"'


async def _page(portal: http_tests.Portal, email: str, path: str) -> str:
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False, timeout=30) as c:
        await login(c, email, PASSWORD)
        response = await c.get(path)
        assert response.status_code == 200, response.text[:300]
        return response.text


async def test_payer_sees_pay_link_in_the_page_and_viewer_does_not(
    world: World, portal: http_tests.Portal
) -> None:
    inv = world.invoices["a"]
    payer = await _page(portal, "payer@pay.example", f"/invoices/{inv}")
    assert PAY_LINK in payer
    assert f'href="/pay?invoice={inv}"' in payer
    assert NAV_PAY in payer
    assert NAV_APPROVALS not in payer
    assert 'hx-get="/pay/' not in payer  # rendered server-side, nothing fetched later

    viewer = await _page(portal, "viewer@pay.example", f"/invoices/{inv}")
    assert "Invoice " in viewer  # the viewer may see the invoice ...
    assert PAY_LINK not in viewer
    assert "/pay?invoice=" not in viewer
    assert NAV_PAY not in viewer
    assert NAV_APPROVALS not in viewer

    approver = await _page(portal, "approver@pay.example", "/invoices")
    assert NAV_PAY in approver
    assert NAV_APPROVALS in approver
    await assert_books()


async def test_the_pay_link_leads_to_the_pay_form_without_javascript(
    world: World, portal: http_tests.Portal
) -> None:
    inv = world.invoices["a"]
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False, timeout=30) as c:
        await login(c, "payer@pay.example", PASSWORD)
        form = await c.get(f"/pay?invoice={inv}")
        assert form.status_code == 200
        assert f'value="{inv}"' in form.text


async def test_role_change_shows_on_the_next_page(world: World, portal: http_tests.Portal) -> None:
    inv = world.invoices["a"]
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False, timeout=30) as c:
        await login(c, "payer@pay.example", PASSWORD)
        assert PAY_LINK in (await c.get(f"/invoices/{inv}")).text
        await Membership.update({Membership.role: "viewer"}).where(Membership.user == world.payer)
        page = (await c.get(f"/invoices/{inv}")).text
        assert PAY_LINK not in page
        assert NAV_PAY not in page
        assert (await c.get(f"/pay?invoice={inv}")).status_code == 403
