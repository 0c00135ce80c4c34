"""POST /api/v1/usage against the real app (uvicorn), PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from core.audit.tables import AuditEvent
from core.billing.tables import Subscription
from core.catalog.tables import Price, Product
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
)
from core.usage import keys
from core.usage.tables import ApiKey, UsageEvent
from tests.conftest import free_port, server_env
from tests.integration.factories import SYSTEM
from tests.serving import serve

RATE_LIMIT = 6


@pytest.fixture
def usage_server(databases, tmp_path) -> Iterator[str]:
    env = server_env(
        databases.it_url, tmp_path, USAGE_RATE_LIMIT=str(RATE_LIMIT), USAGE_RATE_WINDOW="60"
    )
    with serve(env, tmp_path / "server.log", free_port()) as url:
        yield url


@dataclass
class World:
    org: int
    child: int
    account: int
    child_account: int
    foreign_account: int
    key: str
    key_id: int


@pytest.fixture
async def world(db) -> World:
    entity = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    org = await create_organization(name="Umbrella Group")
    child = await create_organization(name="Umbrella Labs", parent_id=org)
    other = await create_organization(name="Rival Corp")

    async def account(code: str, organization: int) -> int:
        return await create_billing_account(
            code=code,
            name=code,
            organization_id=organization,
            issuing_entity_id=entity,
            currency_code="USD",
        )

    created = await keys.create_key(child, "ingest", SYSTEM)  # any node: stored on the root
    return World(
        org=org,
        child=child,
        account=await account("UMB-1", org),
        child_account=await account("UMB-LABS", child),
        foreign_account=await account("RIVAL-1", other),
        key=created.key,
        key_id=created.id,
    )


def now_iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def event(i: str, account: str = "UMB-1", quantity: object = "1", **extra: object) -> dict:
    return {
        "id": i,
        "billing_account": account,
        "metric": "api.calls",
        "quantity": quantity,
        "timestamp": now_iso(-timedelta(minutes=1)),
        **extra,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def rows() -> list[dict]:
    return await UsageEvent.select().order_by(UsageEvent.event_id)


async def test_key_is_shown_once_stored_hashed_and_audited(world: World) -> None:
    assert world.key.startswith("ll_live_")
    assert len(world.key) > 40
    row = await ApiKey.select().where(ApiKey.id == world.key_id).first()
    assert row["organization"] == world.org  # the group's root
    assert row["prefix"] == world.key[:8]
    assert row["secret_hash"] == keys.key_hash(world.key) != world.key
    assert await keys.authenticate(world.key) == world.org
    assert await keys.authenticate(world.key + "x") is None
    assert await keys.authenticate("nonsense") is None
    rotated = await keys.rotate_key(world.key_id, world.org, SYSTEM)
    assert await keys.authenticate(world.key) is None
    assert await keys.authenticate(rotated.key) == world.org
    await keys.revoke_key(rotated.id, world.child, SYSTEM)
    assert await keys.authenticate(rotated.key) is None
    actions = {r["action"] for r in await AuditEvent.select(AuditEvent.action)}
    assert {"api_key.create", "api_key.rotate", "api_key.revoke"} <= actions


async def test_auth_failures_are_401_and_reveal_nothing(world: World, usage_server: str) -> None:
    body = {"events": [event("e1")]}
    revoked = await keys.create_key(world.org, "old", SYSTEM)
    await keys.revoke_key(revoked.id, world.org, SYSTEM)
    async with httpx.AsyncClient(base_url=usage_server, timeout=30) as client:
        for headers in (
            {},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer"},
            bearer("ll_live_not-a-real-key"),
            bearer(revoked.key),
        ):
            response = await client.post("/api/v1/usage", json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "UMB" not in response.text
    assert await rows() == []


async def test_mixed_batch_keeps_the_good_and_reports_the_bad(
    world: World, usage_server: str
) -> None:
    batch = [
        event("good-1", quantity="12.5", properties={"region": "eu", "n": 1.25}),
        event("good-2", account="UMB-LABS", quantity=3),
        event("good-3", quantity=0.1),  # JSON number: read exactly, never as a float
        event("bad-metric", metric="API Calls"),
        event("bad-qty-digits", quantity="0.1234567"),
        event("bad-qty-exp", quantity="1e3"),
        event("bad-qty-neg", quantity=-1),
        event("bad-qty-bool", quantity=True),
        event("bad-future", timestamp=now_iso(timedelta(minutes=10))),
        event("bad-naive", timestamp="2026-01-01T00:00:00"),
        event("bad-foreign", account="RIVAL-1"),
        event("bad-unknown", account="NOPE-1"),
        {"id": "bad-sub", "subscription": "sub_1", "metric": "x", "quantity": 1},
        event("bad-props", properties={"blob": "x" * 5000}),
        {"metric": "no.id"},
        "not an object",
    ]
    async with httpx.AsyncClient(base_url=usage_server, timeout=30) as client:
        response = await client.post(
            "/api/v1/usage", json={"events": batch}, headers=bearer(world.key)
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, len(batch) - 3)
    statuses = [(r["id"], r["status"]) for r in body["results"]]
    assert statuses[:3] == [("good-1", "accepted"), ("good-2", "accepted"), ("good-3", "accepted")]
    errors = {r["id"]: r.get("error") for r in body["results"][3:]}
    assert all(r["status"] == "rejected" and r["error"] for r in body["results"][3:])
    assert errors["bad-foreign"] == errors["bad-unknown"]  # no existence leak
    assert errors["bad-sub"] == "subscription must be a subscription id"
    assert "future" in errors["bad-future"]
    stored = await rows()
    assert [r["event_id"] for r in stored] == ["good-1", "good-2", "good-3"]
    assert [r["quantity"] for r in stored] == [Decimal("12.5"), Decimal(3), Decimal("0.1")]
    assert {r["organization"] for r in stored} == {world.org}
    assert [r["billing_account"] for r in stored] == [
        world.account,
        world.child_account,
        world.account,
    ]
    assert stored[0]["properties"] in ('{"region":"eu","n":1.25}', {"region": "eu", "n": 1.25})


async def subscription_on(account: int) -> int:
    now = datetime.now(UTC)
    [product] = await Product.insert(Product(code=f"p-{account}", name="API", created_at=now))
    [price] = await Price.insert(
        Price(
            product=product["id"],
            code=f"api-{account}",
            currency="USD",
            model="per_unit",
            definition={"unit_amount": "0.01"},
            metric="api.calls",
            created_at=now,
        )
    )
    [sub] = await Subscription.insert(
        Subscription(
            billing_account=account,
            price=price["id"],
            quantity=Decimal(1),
            status="active",
            current_period_start=now - timedelta(days=1),
            current_period_end=now + timedelta(days=29),
            created_at=now,
            updated_at=now,
        )
    )
    return int(sub["id"])


async def test_events_may_name_a_subscription_of_the_group(world: World, usage_server: str) -> None:
    own = await subscription_on(world.child_account)
    foreign = await subscription_on(world.foreign_account)
    batch = [
        {k: v for k, v in event("by-sub", subscription=own).items() if k != "billing_account"},
        event("both", account="UMB-LABS", subscription=str(own)),
        event("mismatch", account="UMB-1", subscription=own),
        {k: v for k, v in event("foreign", subscription=foreign).items() if k != "billing_account"},
    ]
    async with httpx.AsyncClient(base_url=usage_server, timeout=30) as client:
        response = await client.post(
            "/api/v1/usage", json={"events": batch}, headers=bearer(world.key)
        )
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()["results"]}
    assert results["by-sub"]["status"] == results["both"]["status"] == "accepted"
    assert "does not match" in results["mismatch"]["error"]
    assert results["foreign"]["error"] == "unknown subscription"  # another group's: unknown
    stored = await rows()
    assert [(r["event_id"], r["billing_account"]) for r in stored] == [
        ("both", world.child_account),
        ("by-sub", world.child_account),
    ]


async def test_duplicates_within_and_across_batches(world: World, usage_server: str) -> None:
    async with httpx.AsyncClient(base_url=usage_server, timeout=30) as client:
        first = await client.post(
            "/api/v1/usage",
            json={"events": [event("a"), event("b"), event("a", quantity="5")]},
            headers=bearer(world.key),
        )
        second = await client.post(
            "/api/v1/usage",
            json={"events": [event("b"), event("c")]},
            headers=bearer(world.key),
        )
    assert [r["status"] for r in first.json()["results"]] == ["accepted", "accepted", "duplicate"]
    assert [r["status"] for r in second.json()["results"]] == ["duplicate", "accepted"]
    assert second.json()["duplicates"] == 1
    stored = await rows()
    assert [(r["event_id"], r["quantity"]) for r in stored] == [
        ("a", Decimal(1)),
        ("b", Decimal(1)),
        ("c", Decimal(1)),
    ]


async def test_concurrent_overlapping_batches_store_each_event_once(
    world: World, usage_server: str
) -> None:
    # 4 batches of 2,000: each shares half its ids with the next (a ring).
    batches = []
    for b in range(4):
        own = [event(f"own-{b}-{i}", quantity=str(b + 1)) for i in range(1000)]
        shared = [event(f"shared-{b}-{i}", quantity="1") for i in range(1000)]
        prev = [event(f"shared-{(b - 1) % 4}-{i}", quantity="1") for i in range(1000)]
        batches.append(own + shared + prev if b % 2 else prev + shared + own)
    async with httpx.AsyncClient(base_url=usage_server, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post("/api/v1/usage", json={"events": b}, headers=bearer(world.key))
                for b in batches
            )
        )
    bodies = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert sum(b["accepted"] for b in bodies) == 8000  # 4,000 own + 4,000 shared
    assert sum(b["duplicates"] for b in bodies) == 4000
    assert sum(b["rejected"] for b in bodies) == 0
    stored = await rows()
    assert len(stored) == len({r["event_id"] for r in stored}) == 8000
    assert sum(r["quantity"] for r in stored) == 1000 * (1 + 2 + 3 + 4) + 4000


async def test_rate_limit_answers_429_with_retry_after(world: World, usage_server: str) -> None:
    async with httpx.AsyncClient(base_url=usage_server, timeout=30) as client:
        codes = []
        for _ in range(RATE_LIMIT + 2):
            response = await client.post(
                "/api/v1/usage", json={"events": []}, headers=bearer(world.key)
            )
            codes.append(response.status_code)
        assert codes[:RATE_LIMIT] == [200] * RATE_LIMIT  # one window of 60 s in the test
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 61
        assert response.headers["content-type"].startswith("application/problem+json")
        other = await keys.create_key(world.org, "second", SYSTEM)  # limits are per key
        ok = await client.post("/api/v1/usage", json={"events": []}, headers=bearer(other.key))
        assert ok.status_code == 200


async def test_bad_bodies_are_problems_and_change_nothing(world: World, usage_server: str) -> None:
    headers = bearer(world.key) | {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=usage_server, timeout=60) as client:
        malformed = await client.post("/api/v1/usage", content=b'{"events": [', headers=headers)
        shape = await client.post("/api/v1/usage", json={"events": {}}, headers=headers)
        big = await client.post(
            "/api/v1/usage",
            json={"events": [event(f"x{i}") for i in range(10_001)]},
            headers=headers,
        )
    assert malformed.status_code == 400
    assert shape.status_code == 422
    assert big.status_code == 413
    for response in (malformed, shape, big):
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await rows() == []


async def test_ingest_on_sqlite_keeps_good_events_and_deduplicates(databases, tmp_path) -> None:
    from core.db import bind_engine, make_engine, migrate
    from core.usage.ingest import ingest

    url = f"sqlite:///{tmp_path / 'usage.sqlite3'}"
    migrate(url)
    bind_engine(make_engine(url))
    try:
        entity = await create_issuing_entity(
            code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
        )
        org = await create_organization(name="Solo Ltd")
        await create_billing_account(
            code="SOLO-1",
            name="Solo",
            organization_id=org,
            issuing_entity_id=entity,
            currency_code="USD",
        )
        created = await keys.create_key(org, "k", SYSTEM)
        assert await keys.authenticate(created.key) == org
        first = await ingest(
            org,
            [
                event("a", "SOLO-1", "1.5"),
                event("b", "SOLO-1"),
                event("a", "SOLO-1"),
                event("c", "NOPE"),
            ],
        )
        second = await ingest(org, [event("b", "SOLO-1"), event("d", "SOLO-1", 2)])
        assert [r.status for r in first.results] == [
            "accepted",
            "accepted",
            "duplicate",
            "rejected",
        ]
        assert [r.status for r in second.results] == ["duplicate", "accepted"]
        stored = await UsageEvent.select(UsageEvent.event_id, UsageEvent.quantity).order_by(
            UsageEvent.event_id
        )
        assert [(r["event_id"], Decimal(str(r["quantity"]))) for r in stored] == [
            ("a", Decimal("1.5")),
            ("b", Decimal(1)),
            ("d", Decimal(2)),
        ]
    finally:
        bind_engine(databases.it)
