"""The staff run console and the customer usage page, over HTTP (the real app in
process, over the integration database): live progress fragment, counts, a failed chunk's
reason and retry, roles (auditor read-only), late usage review, milestones, and the
usage page's scope."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from arq import create_pool

from core.billing import reconciliation, runs
from core.billing.run_tables import LateUsage
from core.billing.tables import PendingCharge, Subscription
from core.identity.roles import CustomerRole, StaffRole
from core.identity.services import create_billing_account, create_organization, grant_role
from core.identity.tables import IssuingEntity
from core.invoicing.tables import InvoiceLine
from tests.conftest import TEST_REDIS_URL, free_port, server_env
from tests.helpers import csrf_from
from tests.integration.assisted_support import _staff, sign_in_staff, use_server_keys
from tests.integration.billing_runs_support import (
    FEB,
    MAR,
    NOW,
    accounts,
    event,
    metric,
    price,
    subscription,
)
from tests.integration.conftest_auth import PASSWORD, browser, sign_in
from tests.integration.factories import SYSTEM
from tests.serving import serve
from workers.billing_runs_jobs import job_namespace
from workers.settings import redis_settings


@pytest.fixture(scope="module")
def it_server(databases, tmp_path_factory) -> Iterator[str]:
    """The portal served over the integration database (the tests' own data)."""
    var = tmp_path_factory.mktemp("runs-var")
    log = tmp_path_factory.mktemp("runs-server") / "server.log"
    with serve(server_env(databases.it_url, var), log, free_port()) as url:
        yield url


@pytest.fixture
async def app_client(db, databases, it_server, tmp_path) -> AsyncIterator[Any]:
    use_server_keys(tmp_path)
    redis = await create_pool(redis_settings(TEST_REDIS_URL))
    ns = job_namespace(databases.it_url)
    async with browser(it_server) as client:
        client.queued = lambda: _queued(redis, ns)
        yield client
    # Jobs the console enqueued on the default queue: removed, no worker runs them here.
    keys = [k async for k in redis.scan_iter(match=f"arq:job:{ns}:*")]
    for key in keys:
        await redis.zrem("arq:queue", key.decode().removeprefix("arq:job:"))
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def _queued(redis: Any, ns: str) -> list[str]:
    keys = [k.decode() async for k in redis.scan_iter(match=f"arq:job:{ns}:*")]
    return sorted(k.removeprefix(f"arq:job:{ns}:") for k in keys)


async def test_console_progress_failures_retry_and_roles(app_client, it_server) -> None:
    acct, _ = await accounts("CON-1", "CON-2")
    flat = await price("flat", {"amount": "20.00"})
    await subscription(acct, flat, start=MAR, end=APR_)
    ops = await _staff("Olga Ops", StaffRole.BILLING_OPS)
    auditor = await _staff("Aldo Auditor", StaffRole.AUDITOR)

    await sign_in_staff(app_client, ops)
    home = await app_client.get("/staff/runs")
    assert home.status_code == 200
    assert 'data-testid="start-run"' in home.text
    started = await app_client.post("/staff/runs", data={"_csrf_token": csrf_from(home.text)})
    assert started.status_code == 303
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    assert await app_client.queued() == [f"run:{run_id}:chunk:1"]

    # While it runs, the fragment polls every second; it shows the counts.
    fragment = await app_client.get(f"/staff/runs/{run_id}", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'hx-trigger="every 1s"' in fragment.text
    assert 'data-testid="count-subscriptions">1<' in fragment.text

    # The chunk fails for good: its reason and a retry button show.
    await runs.record_chunk_error(run_id, 1, "ConnectionError('database gone')", final=True)
    page = await app_client.get(f"/staff/runs/{run_id}")
    assert "database gone" in unescape(page.text)
    assert 'data-testid="retry-1"' in page.text
    retried = await app_client.post(
        f"/staff/runs/{run_id}/chunks/1/retry", data={"_csrf_token": csrf_from(page.text)}
    )
    assert retried.status_code == 303
    assert f"run:{run_id}:chunk:1:retry:1" in await app_client.queued()
    await runs.process_chunk(run_id, 1)  # what the worker does with the retried job
    done = await app_client.get(f"/staff/runs/{run_id}", headers={"HX-Request": "true"})
    assert "every 1s" not in done.text  # finished: polling stops
    assert 'data-testid="count-finalized">1<' in done.text
    assert 'data-testid="count-failed">0<' in done.text
    # The subscription was months behind (March): the completed run is continued by a
    # catch-up run, which the list names as such, linked to the run it follows.
    follow = await runs.start_catch_up(run_id, SYSTEM)
    assert follow is not None
    listing = await app_client.get("/staff/runs")
    assert f'catch-up 1 of <a href="/staff/runs/{run_id}">run {run_id}</a>' in listing.text
    missing = await app_client.get("/staff/runs/999999")
    assert missing.status_code == 404

    async with browser(it_server) as audit:
        await sign_in_staff(audit, auditor)
        read = await audit.get(f"/staff/runs/{run_id}")
        assert read.status_code == 200
        assert 'data-testid="retry-1"' not in read.text
        listing = await audit.get("/staff/runs")
        assert 'data-testid="start-run"' not in listing.text
        token = csrf_from(listing.text)
        assert (await audit.post("/staff/runs", data={"_csrf_token": token})).status_code == 403
        refused = await audit.post(
            f"/staff/runs/{run_id}/chunks/1/retry", data={"_csrf_token": token}
        )
        assert refused.status_code == 403
    assert len(await app_client.queued()) == 2


APR_ = datetime(2026, 4, 1, tzinfo=UTC)


async def test_late_usage_review_and_milestones(app_client) -> None:
    acct, _ = await accounts("REV-1", "REV-2")
    await metric("rev_calls", "rev_api")
    calls = await price("per_unit", {"unit_amount": "1.00"}, metric="rev_calls")
    sub = await subscription(acct, calls, start=FEB, end=MAR)
    await event(acct, "rev_api", "3", FEB + timedelta(days=2))
    plan = await runs.start_run(NOW, SYSTEM, trigger="test")
    await runs.process_chunk(plan.run_id, 1, clock=NOW)
    # Canceled afterwards: later runs bill only the account's pending charges.
    await Subscription.update({Subscription.status: "canceled"}).where(Subscription.id == sub)
    late = await event(
        acct, "rev_api", "4", FEB + timedelta(days=9), received=MAR + timedelta(days=5)
    )
    report = await reconciliation.reconcile(MAR + timedelta(days=5, hours=1), SYSTEM)
    assert report.held == 1

    ops = await _staff("Bea Billing", StaffRole.FINANCE_ADMIN)
    await sign_in_staff(app_client, ops)
    review = await app_client.get("/staff/runs/usage-review")
    assert review.status_code == 200
    row = await LateUsage.select().where(LateUsage.usage_event == late).first()
    assert f'data-testid="release-{row["id"]}"' in review.text
    decided = await app_client.post(
        f"/staff/runs/usage-review/{row['id']}",
        data={"decision": "release", "_csrf_token": csrf_from(review.text)},
    )
    assert decided.status_code == 303
    [correction] = await PendingCharge.select().where(PendingCharge.kind == "usage_correction")
    assert correction["amount_minor"] == 400

    page = await app_client.get("/staff/runs/milestones")
    token = csrf_from(page.text)
    bad = await app_client.post(
        "/staff/runs/milestones",
        data={"account": str(acct), "description": "", "amount": "-5", "trigger": "",
              "_csrf_token": token},
    )  # fmt: skip
    assert bad.status_code == 422
    text = unescape(bad.text)
    assert "Describe the milestone" in text
    assert "Say what triggers the charge" in text
    assert await PendingCharge.count().where(PendingCharge.kind == "milestone") == 0
    made = await app_client.post(
        "/staff/runs/milestones",
        data={"account": str(acct), "description": "Phase 1 delivery", "amount": "1,500.00",
              "trigger": "Acceptance of phase 1", "_csrf_token": token},
    )  # fmt: skip
    assert made.status_code == 303
    [milestone] = await PendingCharge.select().where(PendingCharge.kind == "milestone")
    assert milestone["amount_minor"] == 150000
    # Not triggered: the next run bills the usage correction and leaves the milestone alone.
    waiting = await runs.start_run(datetime.now(UTC), SYSTEM, trigger="test")
    assert waiting.accounts == 1
    await runs.process_chunk(waiting.run_id, 1)
    correction = await PendingCharge.select().where(PendingCharge.id == correction["id"]).first()
    assert correction["invoice"] is not None
    untouched = await PendingCharge.select().where(PendingCharge.id == milestone["id"]).first()
    assert untouched["invoice"] is None
    page = await app_client.get("/staff/runs/milestones")
    assert "Waiting for its trigger" in page.text
    triggered = await app_client.post(
        f"/staff/runs/milestones/{milestone['id']}/trigger",
        data={"note": "signed by the customer", "_csrf_token": csrf_from(page.text)},
    )
    assert triggered.status_code == 303
    # The next run bills it on the account's own invoice, once.
    billing = await runs.start_run(datetime.now(UTC), SYSTEM, trigger="test")
    assert billing.accounts == 1
    for n in billing.chunks:
        await runs.process_chunk(billing.run_id, n)
    again = await runs.start_run(datetime.now(UTC), SYSTEM, trigger="test")
    assert again.accounts == 0
    milestone = await PendingCharge.select().where(PendingCharge.id == milestone["id"]).first()
    lines = await InvoiceLine.select(InvoiceLine.kind, InvoiceLine.amount_minor).where(
        InvoiceLine.invoice == milestone["invoice"]
    )
    assert [(x["kind"], x["amount_minor"]) for x in lines] == [("milestone", 150000)]
    assert milestone["invoice"] != correction["invoice"]
    page = await app_client.get("/staff/runs/milestones")
    assert "Billed on" in page.text


async def test_usage_page_shows_scope_only(app_client) -> None:
    entity = await IssuingEntity.insert(
        IssuingEntity(code=f"U{uuid.uuid4().hex[:5]}", name="Acme", legal_name="Acme GmbH",
                      country="DE", functional_currency="EUR")
    )  # fmt: skip
    org = await create_organization(name="Usage Customer AG")
    mine = await create_billing_account(
        code="USE-MINE", name="Mine", organization_id=org,
        issuing_entity_id=entity[0]["id"], currency_code="EUR",
    )  # fmt: skip
    [theirs] = await accounts("USE-THEIRS")
    from core.identity.services import create_user

    email = f"usage-{uuid.uuid4().hex[:8]}@usage.example"
    user = await create_user(email=email, name="Uma", organization_id=org, password=PASSWORD)
    await grant_role(user, org, CustomerRole.VIEWER, SYSTEM)
    await metric("use_calls", "use_api")
    calls = await price("per_unit", {"unit_amount": "0.50"}, metric="use_calls", name="API")
    flat = await price("flat", {"amount": "30.00"}, name="Base plan")
    now = datetime.now(UTC)
    start = now - timedelta(days=10)
    await subscription(mine, calls, start=start, end=start + timedelta(days=30))
    await subscription(mine, flat, start=start, end=start + timedelta(days=30))
    await subscription(theirs, flat, start=start, end=start + timedelta(days=30))
    await event(mine, "use_api", "40", now - timedelta(days=1))
    await event(theirs, "use_api", "999", now - timedelta(days=1))

    response = await sign_in(app_client, email)
    assert response.status_code == 303
    page = await app_client.get("/usage")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "USE-MINE" in text
    assert "USE-THEIRS" not in text
    assert "€20.00" in text  # 40 calls so far at 0.50
    assert "€60.00" in text  # projected: 120 calls over the 30-day period
    assert "€30.00" in text  # the licensed plan
    assert 'data-testid="total-projected-EUR">€90.00<' in text
    assert (await app_client.get(f"/usage?account={mine}")).status_code == 200
    assert (await app_client.get(f"/usage?account={theirs}")).status_code == 404
    assert (await app_client.get("/usage?account=abc")).status_code == 404
