"""Assisted sessions over HTTP against real PostgreSQL, Redis and SMTP.

A support agent (signed in with password + TOTP) asks a customer user for a session;
the customer is emailed, grants it (view, or view and act) or denies it; the agent
starts it and sees the portal as the user under a banner; the customer sees that it
runs and ends it at once, or it expires. Every request in it is audited with both
identities, and the customer's page lists them. The world is seeded per test on the
integration database, served by this module's own portal process.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.audit.log import verify_chain
from core.audit.tables import AuditEvent
from core.identity.tables import AssistedSession, StaffUser
from tests.conftest import Mailbox
from tests.integration.assisted_support import (
    World,
    assisted_server,
    build_world,
    post_form,
    sign_in_customer,
    sign_in_staff,
)

COOKIE = "ledgerline_session"
REASON = "Customer cannot find last month's invoice"


@pytest.fixture(scope="module")
def server(
    databases: Any, smtp_server: tuple[str, Mailbox], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with assisted_server(
        databases.it_url,
        smtp_server[0],
        tmp_path_factory.mktemp("assisted-var"),
        tmp_path_factory.mktemp("assisted-log"),
    ) as url:
        yield url


@pytest.fixture
async def world(db: Any, tmp_path: Path) -> World:
    return await build_world(tmp_path)


@pytest.fixture
async def browsers(server: str) -> AsyncIterator[Any]:
    opened: list[httpx.AsyncClient] = []

    def open_client() -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=server, timeout=20)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.aclose()


def text(response: httpx.Response) -> str:
    """The page's words, without tags."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def ask(
    agent: httpx.AsyncClient, email: str, access: str = "view", ticket: str = "SUP-1001"
) -> int:
    response = await post_form(
        agent,
        "/staff/assisted",
        {"email": email, "reason": REASON, "ticket_ref": ticket, "access": access},
        page="/staff/assisted",
    )
    assert response.status_code == 303, text(response)[:500]
    assert response.headers["location"] == "/staff/assisted?notice=requested"
    row = (
        await AssistedSession.select(AssistedSession.id)
        .where(AssistedSession.ticket_ref == ticket)
        .order_by(AssistedSession.id, ascending=False)
        .first()
    )
    return int(row["id"])


async def grant(
    customer: httpx.AsyncClient, assisted_id: int, access: str = "view", minutes: str = "30"
) -> httpx.Response:
    return await post_form(
        customer,
        f"/assisted/{assisted_id}/grant",
        {"minutes": minutes, "access": access},
        page="/assisted",
    )


async def start(agent: httpx.AsyncClient, assisted_id: int) -> httpx.Response:
    return await post_form(agent, f"/staff/assisted/{assisted_id}/start", page="/staff/assisted")


async def status_of(assisted_id: int) -> str:
    row = (
        await AssistedSession.select(AssistedSession.status)
        .where(AssistedSession.id == assisted_id)
        .first()
    )
    return str(row["status"])


async def events(action: str, **where: str) -> list[dict[str, Any]]:
    query = AuditEvent.select().where(AuditEvent.action == action)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    return await query.order_by(AuditEvent.id)


def _json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        if isinstance(row["data"], str):
            row["data"] = json.loads(row["data"])
    return rows


async def signed_in_pair(browsers: Any, world: World) -> tuple[httpx.AsyncClient, ...]:
    agent, paul = browsers(), browsers()
    await sign_in_staff(agent, world.agent)
    await sign_in_customer(paul, world.paul)
    return agent, paul


# ---------------------------------------------------------------------------- the whole flow


async def test_view_only_session_from_request_to_end(
    world: World, server: str, browsers: Any, smtp_server: tuple[str, Mailbox]
) -> None:
    mailbox = smtp_server[1]
    mailbox.clear()
    agent, paul = await signed_in_pair(browsers, world)
    staff_cookie = agent.cookies[COOKIE]

    assisted_id = await ask(agent, world.paul.email)
    [requested] = await events("assisted.requested", object_id=str(assisted_id))
    assert (requested["actor_type"], requested["actor_id"]) == ("staff", str(world.agent.id))
    page = text(await agent.get("/staff/assisted"))
    assert "Waiting for the customer" in page

    # The customer is emailed a link to the page where they decide.
    [message] = mailbox.to(world.paul.email)
    body = message.get_body(("plain",)).get_content()
    assert f"{server}/assisted" in body
    assert "SUP-1001" in body
    assert "Sue Support" in str(message["Subject"])
    # ... and the portal tells them on every page.
    home = text(await paul.get("/"))
    assert "A support agent asks for an assisted session" in home
    pending = text(await paul.get("/assisted"))
    assert "Requests waiting for an answer" in pending
    assert "SUP-1001" in pending
    assert REASON in pending

    granted = await grant(paul, assisted_id, "view")
    assert granted.status_code == 303, text(granted)[:500]
    assert granted.headers["location"] == "/assisted?notice=granted"
    [event] = await events("assisted.granted", object_id=str(assisted_id))
    assert (event["actor_type"], event["actor_id"]) == ("customer", str(world.paul.id))
    assert await status_of(assisted_id) == "granted"

    # The agent starts it: a new session in their browser, as paul, with paul's scope.
    started = await start(agent, assisted_id)
    assert started.status_code == 303
    assert started.headers["location"] == "/"
    assisted_cookie = agent.cookies[COOKIE]
    assert assisted_cookie != staff_cookie
    invoices = text(await agent.get("/invoices"))
    for number in world.na_invoices + world.eu_invoices:
        assert number in invoices
    assert "Assisted session: you are viewing as Paul Payer (view only) — ends at" in invoices
    assert re.search(r"ends at \d\d:\d\d UTC", invoices)
    assert "End session" in invoices

    # View only: nothing that changes state, even where the route itself would allow it.
    switched = await post_form(agent, "/entity", {"entity": "all", "next": "/invoices"})
    assert switched.status_code == 403
    assert "view-only" in text(switched)
    assert "you are viewing as Paul Payer" in text(switched)  # the banner stays
    # Never the customer's own pages: consent, credentials, MFA.
    assert (await agent.get("/assisted")).status_code == 403
    for path in ("/account", "/account/mfa", "/password/forgot"):
        refused = await agent.get(path)
        assert refused.status_code == 403, path
        assert "Not available in an assisted session" in text(refused)
    # Nor the staff console: this browser is paul now.
    assert (await agent.get("/staff")).status_code == 403

    # The customer sees the session on every page, and ends it at once.
    seen = text(await paul.get("/invoices"))
    assert re.search(
        r"Sue Support from support has an active assisted session \(view only\) "
        r"until \d\d:\d\d UTC",
        seen,
    )
    ended = await post_form(
        paul, f"/assisted/{assisted_id}/end", {"next": "/invoices"}, page="/invoices"
    )
    assert ended.status_code == 303
    assert ended.headers["location"] == "/invoices"
    assert await status_of(assisted_id) == "ended"
    assert "from support has an active assisted session" not in text(await paul.get("/invoices"))

    # The agent's next request is refused: back to the staff console, with a message.
    refused = await agent.get("/invoices")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/staff/assisted?notice=ended"
    resumed = agent.cookies[COOKIE]
    assert resumed not in (assisted_cookie, staff_cookie)  # the staff session, rotated
    console = text(await agent.get(refused.headers["location"]))
    assert "The assisted session has ended. You are back in the staff console." in console
    assert "you are viewing as" not in console
    async with httpx.AsyncClient(base_url=server, cookies={COOKIE: assisted_cookie}) as stale:
        gone = await stale.get("/invoices")
        assert gone.status_code in (302, 303)
        assert gone.headers["location"].startswith("/login")  # no session any more

    # Every request of the session is audited with both identities, and listed for paul.
    requests = await events("assisted.request", object_id=str(assisted_id))
    assert [
        (r["data"]["method"], r["data"]["path"], r["data"]["status"]) for r in _json(requests)
    ] == [
        ("GET", "/invoices", 200),
        ("GET", "/", 200),  # the page the form's CSRF token came from
        ("POST", "/entity", 403),
        ("GET", "/assisted", 403),
        ("GET", "/account", 403),
        ("GET", "/account/mfa", 403),
        ("GET", "/password/forgot", 403),
        ("GET", "/staff", 403),
        ("GET", "/invoices", 303),
    ]
    for r in requests:
        assert (r["actor_type"], r["actor_id"]) == ("agent", str(world.agent.id))
        assert r["on_behalf_of"] == f"customer:{world.paul.id}"
    history = text(await paul.get("/assisted"))
    assert "Past sessions and requests" in history
    assert "POST /entity" in history
    assert "GET /invoices" in history
    assert f"agent {world.agent.id}, on behalf of Paul Payer" in history
    assert (await verify_chain()).ok


async def test_act_access_allows_an_action_that_paul_then_sees(world: World, browsers: Any) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    assisted_id = await ask(agent, world.paul.email, access="act", ticket="SUP-2002")
    assert (await grant(paul, assisted_id, "act", minutes="60")).status_code == 303
    assert (await start(agent, assisted_id)).status_code == 303
    assert "(view and act)" in text(await agent.get("/"))

    export = await agent.get("/invoices/export.csv")
    assert export.status_code == 200
    assert world.na_invoices[0] in export.text
    switched = await post_form(agent, "/entity", {"entity": str(world.na), "next": "/invoices"})
    assert switched.status_code == 303
    # Acting as paul is not consenting as paul: no extending or ending one's own session.
    for action in ("grant", "end"):
        refused = await post_form(agent, f"/assisted/{assisted_id}/{action}", {"minutes": "240"})
        assert refused.status_code == 403, action
    narrowed = text(await agent.get("/invoices"))
    assert world.na_invoices[0] in narrowed
    assert world.eu_invoices[0] not in narrowed  # paul's own entity switcher, as paul

    # The export is recorded with both identities...
    [exported] = await events("invoices.exported", actor_type="agent")
    assert exported["actor_id"] == str(world.agent.id)
    assert exported["on_behalf_of"] == f"customer:{world.paul.id}"
    # ... and paul sees it, with the switch, while the session still runs.
    page = text(await paul.get("/assisted"))
    assert "Running now" in page
    assert "Exported invoices" in page
    assert "POST /entity" in page

    # The agent ends it from the banner and is back in the staff console.
    left = await post_form(agent, "/assisted/session/end", page="/invoices")
    assert left.status_code == 303
    assert left.headers["location"] == "/staff/assisted?notice=ended"
    assert (await agent.get("/staff/assisted")).status_code == 200
    assert await status_of(assisted_id) == "ended"
    [ended] = await events("assisted.ended", object_id=str(assisted_id))
    assert (ended["actor_type"], ended["on_behalf_of"]) == ("agent", f"customer:{world.paul.id}")
    # A second start is refused: the consent is over.
    again = await start(agent, assisted_id)
    assert again.status_code == 409
    assert "This assisted session has ended." in text(again)


async def test_a_session_ends_by_itself_at_expiry(world: World, browsers: Any) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    assisted_id = await ask(agent, world.paul.email)
    assert (await grant(paul, assisted_id)).status_code == 303
    assert (await start(agent, assisted_id)).status_code == 303
    assert (await agent.get("/invoices")).status_code == 200

    await AssistedSession.update(
        {AssistedSession.expires_at: datetime.now(UTC) - timedelta(seconds=1)}
    ).where(AssistedSession.id == assisted_id)
    # An htmx request is sent to the console with a full-page redirect, not a swap.
    refused = await agent.get("/invoices", headers={"HX-Request": "true"})
    assert refused.status_code == 200
    assert refused.headers["hx-redirect"] == "/staff/assisted?notice=ended"
    assert await status_of(assisted_id) == "expired"  # marked when seen
    assert len(await events("assisted.expired", object_id=str(assisted_id))) == 1
    page = text(await agent.get("/staff/assisted"))
    assert "Expired" in page
    assert "Start assisted session" not in page
    assert "from support has an active" not in text(await paul.get("/"))
    assert (await start(agent, assisted_id)).status_code == 409


async def test_the_agents_role_caps_access_on_every_request(world: World, browsers: Any) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    assisted_id = await ask(agent, world.paul.email, access="act", ticket="SUP-3003")
    assert (await grant(paul, assisted_id, "act")).status_code == 303
    assert (await start(agent, assisted_id)).status_code == 303
    ok = await post_form(agent, "/entity", {"entity": "all", "next": "/"})
    assert ok.status_code == 303
    # A form without its CSRF token is refused before any route, and still audited.
    forged = await agent.post("/entity", data={"entity": "all"})
    assert forged.status_code == 403
    audited = _json(await events("assisted.request", object_id=str(assisted_id)))
    assert (audited[-1]["data"]["method"], audited[-1]["data"]["status"]) == ("POST", 403)

    await StaffUser.update({StaffUser.role: "auditor"}).where(StaffUser.id == world.agent.id)
    page = text(await agent.get("/"))
    assert "(view only)" in page
    refused = await post_form(agent, "/entity", {"entity": "all", "next": "/"})
    assert refused.status_code == 403


async def test_auditors_may_only_ask_to_view(world: World, browsers: Any) -> None:
    auditor = browsers()
    await sign_in_staff(auditor, world.auditor)
    page = await auditor.get("/staff/assisted")
    assert 'value="act"' not in page.text
    response = await post_form(
        auditor,
        "/staff/assisted",
        {"email": world.paul.email, "reason": REASON, "ticket_ref": "AUD-1", "access": "act"},
        page="/staff/assisted",
    )
    assert response.status_code == 422
    assert "you may only ask for view access" in text(response)
    assert await AssistedSession.count() == 0
    assisted_id = await ask(auditor, world.paul.email, access="view", ticket="AUD-2")

    paul = browsers()
    await sign_in_customer(paul, world.paul)
    refused = await grant(paul, assisted_id, "act")
    assert refused.status_code == 422
    assert "The agent asked for view-only access" in text(refused)
    assert await status_of(assisted_id) == "requested"


async def test_bad_input_changes_nothing(world: World, browsers: Any) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    cases = [
        ({"email": "", "reason": "", "ticket_ref": "", "access": ""}, ["Enter the customer"]),
        (
            {"email": "nobody@nowhere.test", "reason": REASON, "ticket_ref": "X", "access": "view"},
            ["No active customer user has this email address."],
        ),
        (
            {"email": world.paul.email, "reason": "x" * 600, "ticket_ref": "T" * 80, "access": "x"},
            ["at most 500 characters", "at most 64 characters", "Choose view only"],
        ),
    ]
    for form, messages in cases:
        response = await post_form(agent, "/staff/assisted", form, page="/staff/assisted")
        assert response.status_code == 422, form
        for message in messages:
            assert message in text(response), message
    assert await AssistedSession.count() == 0

    assisted_id = await ask(agent, world.paul.email)
    duplicate = await post_form(
        agent,
        "/staff/assisted",
        {"email": world.paul.email, "reason": REASON, "ticket_ref": "AGAIN", "access": "view"},
        page="/staff/assisted",
    )
    assert duplicate.status_code == 422
    assert "already have an open request" in text(duplicate)

    for minutes in ("999", "0", "abc", "-5"):
        response = await grant(paul, assisted_id, minutes=minutes)
        assert response.status_code == 422, minutes
        assert "Choose a duration between 5 and 240 minutes." in text(response)
    assert await status_of(assisted_id) == "requested"
    assert (await grant(paul, 999_999)).status_code == 404
    assert (await post_form(paul, "/assisted/99999999999999999999/grant")).status_code == 404
    assert (await start(agent, assisted_id)).status_code == 409  # not granted yet

    # Denied: nothing to start.
    denied = await post_form(paul, f"/assisted/{assisted_id}/deny", page="/assisted")
    assert denied.status_code == 303
    assert await status_of(assisted_id) == "denied"
    assert (await grant(paul, assisted_id)).status_code == 409
    refused = await start(agent, assisted_id)
    assert refused.status_code == 409
    assert "This request was denied." in text(refused)


async def test_no_one_starts_or_decides_what_is_not_theirs(world: World, browsers: Any) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    assisted_id = await ask(agent, world.paul.email, access="act")

    # Sam administers Globex EU only; paul also works for NA: not sam's to grant.
    # Xena administers another group.
    for outsider in (world.sam, world.xena):
        client = browsers()
        await sign_in_customer(client, outsider)
        page = text(await client.get("/assisted"))
        assert "SUP-1001" not in page
        for action in ("grant", "deny", "end"):
            response = await post_form(
                client, f"/assisted/{assisted_id}/{action}", page="/assisted"
            )
            assert response.status_code == 404, (outsider.name, action)
    assert await status_of(assisted_id) == "requested"

    # Alice administers the whole group: she sees it and may grant it.
    alice = browsers()
    await sign_in_customer(alice, world.alice)
    page = text(await alice.get("/assisted"))
    assert "Sue Support from support, for Paul Payer" in page
    assert (await grant(alice, assisted_id, "act")).status_code == 303
    [event] = await events("assisted.granted", object_id=str(assisted_id))
    assert event["actor_id"] == str(world.alice.id)

    # Another agent can neither start nor end it.
    other = browsers()
    await sign_in_staff(other, world.other_agent)
    assert (await start(other, assisted_id)).status_code == 404
    ended = await post_form(other, f"/staff/assisted/{assisted_id}/end", page="/staff/assisted")
    assert ended.status_code == 404
    assert await status_of(assisted_id) == "granted"
    assert "SUP-1001" not in text(await other.get("/staff/assisted"))

    # A customer cannot use the staff side, nor end the agent's session from it.
    assert (await paul.get("/staff/assisted")).status_code == 403
    # Paul himself ends it.
    ended = await post_form(paul, f"/assisted/{assisted_id}/end", page="/assisted")
    assert ended.status_code == 303
    assert ended.headers["location"] == "/assisted?notice=ended"
    assert await status_of(assisted_id) == "ended"


async def test_signing_out_of_an_assisted_session_signs_the_agent_out(
    world: World, browsers: Any, server: str
) -> None:
    agent, paul = await signed_in_pair(browsers, world)
    staff_sid = agent.cookies[COOKIE]
    assisted_id = await ask(agent, world.paul.email)
    assert (await grant(paul, assisted_id)).status_code == 303
    assert (await start(agent, assisted_id)).status_code == 303
    async with httpx.AsyncClient(base_url=server, cookies={COOKIE: staff_sid}) as aside:
        assert (await aside.get("/staff")).status_code == 200  # kept aside, alive
        out = await post_form(agent, "/logout")  # allowed in a view-only session too
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        gone = await aside.get("/staff")
        assert gone.status_code in (302, 303)
        assert gone.headers["location"].startswith("/login")
