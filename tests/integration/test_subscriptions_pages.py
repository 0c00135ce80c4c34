"""Subscription pages over HTTP on the live server (demo data): scope, roles, the
preview -> confirm flow, concurrent confirmations, staff pages and the catalog."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest

from core.billing import subscriptions as subs
from core.billing.tables import PendingCharge, Subscription, SubscriptionChange
from core.catalog.tables import Price
from core.identity.roles import StaffRole
from core.identity.tables import BillingAccount
from tests.helpers import csrf_from, login
from tests.integration.assisted_support import _staff, sign_in_staff, use_server_keys
from tests.integration.conftest_auth import browser
from tests.integration.factories import SYSTEM

_FIELD = re.compile(r'name="(action|price|quantity|at|version|billed)" value="([^"]*)"')


async def price_id(code: str) -> int:
    row = await Price.select(Price.id).where(Price.code == code).first()
    return row["id"]


async def own_subscription(account_code: str, price_code: str, qty: str = "1") -> int:
    account = (
        await BillingAccount.select(BillingAccount.id)
        .where(BillingAccount.code == account_code)
        .first()
    )
    return await subs.create(account["id"], await price_id(price_code), Decimal(qty), SYSTEM)


async def drop(sub_ids: list[int]) -> None:
    await PendingCharge.delete().where(PendingCharge.subscription.is_in(sub_ids or [-1]))
    await SubscriptionChange.delete().where(SubscriptionChange.subscription.is_in(sub_ids or [-1]))
    await Subscription.delete().where(Subscription.id.is_in(sub_ids or [-1]))


@pytest.fixture
async def initech_sub(live_server, demo_db) -> AsyncIterator[int]:
    sub_id = await own_subscription("INITECH-US-01", "starter-m-usd")
    yield sub_id
    await drop([sub_id])


@asynccontextmanager
async def client_as(live_server, email: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(live_server.url) as client:
        await login(client, email)
        yield client


def confirm_fields(html: str) -> dict[str, str]:
    fields = dict(_FIELD.findall(html))
    fields["_csrf_token"] = csrf_from(html)
    return fields


async def test_customer_previews_and_confirms_a_plan_change(live_server, initech_sub) -> None:
    async with client_as(live_server, "carol@initech.example") as carol:
        listing = await carol.get("/subscriptions")
        assert listing.status_code == 200
        assert f'href="/subscriptions/{initech_sub}"' in listing.text
        assert "Globex" not in listing.text
        pro = await price_id("pro-m-usd")
        preview = await carol.get(
            f"/subscriptions/{initech_sub}/preview",
            params={"action": "change", "price": pro, "quantity": "2"},
            headers={"HX-Request": "true", "HX-Target": "preview"},
        )
        assert preview.status_code == 200
        assert "<html" not in preview.text  # the fragment only
        text = unescape(preview.text)
        # the run has not invoiced this period yet: it will bill it at the new plan, so the
        # time used so far is charged at the old plan and credited at the new one
        assert "Used time on Starter (monthly)" in text
        assert "Pro (monthly) × 2: time before the change" in text
        fields = confirm_fields(preview.text)
        shown = await subs.preview(
            initech_sub,
            subs.Request("change", pro, Decimal(2)),
            at=subs.parse_at(fields["at"]),
        )
        assert f'data-testid="preview-net">{_money(shown.preview.net)}' in text
        done = await carol.post(f"/subscriptions/{initech_sub}/confirm", data=fields)
        assert done.status_code == 303, done.text[:400]
        page = await carol.get(done.headers["location"])
        assert "Done: the plan change is applied" in page.text
        charges = await subs.pending_charges(initech_sub)
        assert [c["amount_minor"] for c in charges] == [
            line.amount.to_minor() for line in shown.preview.lines
        ]
        again = await carol.post(f"/subscriptions/{initech_sub}/confirm", data=fields)
        assert again.status_code == 409  # the same preview twice: the version moved on
        assert "changed by someone else" in unescape(again.text)


def _money(amount: Any) -> str:
    from portal.templating import money

    return money(amount.to_minor(), amount.currency.code)


async def test_concurrent_confirmations_over_http(live_server, initech_sub) -> None:
    async with (
        client_as(live_server, "carol@initech.example") as one,
        client_as(live_server, "carol@initech.example") as two,
    ):
        pro, business = await price_id("pro-m-usd"), await price_id("business-m-usd")
        pages = [
            await c.get(
                f"/subscriptions/{initech_sub}/preview",
                params={"action": "change", "price": p, "quantity": "1"},
            )
            for c, p in ((one, pro), (two, business))
        ]
        results = await asyncio.gather(
            *[
                c.post(f"/subscriptions/{initech_sub}/confirm", data=confirm_fields(p.text))
                for c, p in zip((one, two), pages, strict=True)
            ]
        )
        assert sorted(r.status_code for r in results) == [303, 409]
        winner = pro if results[0].status_code == 303 else business
        sub = await Subscription.select().where(Subscription.id == initech_sub).first()
        assert (sub["price"], sub["version"]) == (winner, 2)
        changes = await subs.history(initech_sub)
        assert [c["kind"] for c in changes] == ["change_price", "create"]
        assert {c["subscription_change"] for c in await subs.pending_charges(initech_sub)} == {
            changes[0]["id"]
        }


async def test_viewers_see_but_cannot_change(live_server, initech_sub) -> None:
    async with client_as(live_server, "dan@initech.example") as dan:
        page = await dan.get(f"/subscriptions/{initech_sub}")
        assert page.status_code == 200
        assert 'data-testid="read-only"' in page.text
        assert "Preview change" not in page.text
        preview = await dan.get(
            f"/subscriptions/{initech_sub}/preview", params={"action": "cancel_now"}
        )
        assert preview.status_code == 403
        token = csrf_from(page.text)
        posted = await dan.post(
            f"/subscriptions/{initech_sub}/confirm",
            data={"action": "cancel_now", "version": "1", "at": "x", "_csrf_token": token},
        )
        assert posted.status_code == 403
    sub = await Subscription.select().where(Subscription.id == initech_sub).first()
    assert (sub["status"], sub["version"]) == ("active", 1)
    async with client_as(live_server, "alice@globex.example") as alice:  # other tenant
        assert (await alice.get(f"/subscriptions/{initech_sub}")).status_code == 404


async def test_bad_input_is_a_clear_message(live_server, initech_sub) -> None:
    async with client_as(live_server, "carol@initech.example") as carol:
        page = await carol.get(
            f"/subscriptions/{initech_sub}/preview",
            params={"action": "change", "price": "abc", "quantity": "-3"},
        )
        assert page.status_code == 422
        assert "Choose a plan" in page.text
        assert "Enter a quantity above zero" in page.text
        token = csrf_from(page.text)
        stale = await carol.post(
            f"/subscriptions/{initech_sub}/confirm",
            data={
                "action": "cancel_now",
                "version": "1",
                "at": "2020-01-01T00:00:00+00:00",
                "_csrf_token": token,
            },
        )
        assert stale.status_code == 409
        assert "expired" in stale.text
        damaged = await carol.post(
            f"/subscriptions/{initech_sub}/confirm",
            data={"action": "cancel_now", "version": "x", "_csrf_token": token},
        )
        assert damaged.status_code == 422
    sub = await Subscription.select().where(Subscription.id == initech_sub).first()
    assert (sub["status"], sub["version"]) == ("active", 1)


async def test_staff_pages_editor_and_auditor(live_server, demo_db, tmp_path) -> None:
    use_server_keys(tmp_path)
    ops = await _staff("Bea Billing", StaffRole.BILLING_OPS)
    auditor = await _staff("Aldo Auditor", StaffRole.AUDITOR)
    created: list[int] = []
    try:
        async with browser(live_server.url) as staff:
            await sign_in_staff(staff, ops)
            catalog = await staff.get("/staff/catalog")
            assert catalog.status_code == 200
            assert "pro-m-usd" in catalog.text
            token = csrf_from(catalog.text)
            bad = await staff.post(
                "/staff/catalog/prices",
                data={"product": "1", "code": "bad price", "currency": "USD", "model": "volume",
                      "interval_months": "1", "tiers": "10 1\n5 2", "_csrf_token": token},
            )  # fmt: skip
            assert bad.status_code == 422
            assert "Use 1-64 letters" in bad.text
            assert "unbounded" in bad.text
            account = (
                await BillingAccount.select(BillingAccount.id)
                .where(BillingAccount.code == "GLOBEX-US-01")
                .first()
            )
            form = {"account": str(account["id"]), "price": str(await price_id("seat-m-usd")),
                    "quantity": "3", "anchor_day": "1", "_csrf_token": token}  # fmt: skip
            made = await staff.post("/staff/subscriptions", data=form)
            assert made.status_code == 303, made.text[:300]
            sub_id = int(made.headers["location"].split("/")[-1].split("?")[0])
            created.append(sub_id)
            detail = await staff.get(made.headers["location"])
            assert "Subscription created." in detail.text
            preview = await staff.get(
                f"/staff/subscriptions/{sub_id}/preview", params={"action": "cancel_now"}
            )
            assert preview.status_code == 200
            done = await staff.post(
                f"/staff/subscriptions/{sub_id}/confirm", data=confirm_fields(preview.text)
            )
            assert done.status_code == 303
            row = await Subscription.select().where(Subscription.id == sub_id).first()
            assert row["status"] == "canceled"
        async with browser(live_server.url) as audit:
            await sign_in_staff(audit, auditor)
            page = await audit.get(f"/staff/subscriptions/{sub_id}")
            assert page.status_code == 200
            assert 'data-testid="read-only"' in page.text
            assert (await audit.get("/staff/subscriptions/new")).status_code == 403
            token = csrf_from((await audit.get("/staff/catalog")).text)
            refused = await audit.post(
                "/staff/catalog/products", data={"code": "x", "name": "X", "_csrf_token": token}
            )
            assert refused.status_code == 403
            reactivate = await audit.post(
                f"/staff/subscriptions/{sub_id}/confirm",
                data={"action": "reactivate", "version": "2", "at": "x", "_csrf_token": token},
            )
            assert reactivate.status_code == 403
    finally:
        await drop(created)
