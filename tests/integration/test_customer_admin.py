"""Customer administration over HTTP against real PostgreSQL, Redis and SMTP.

Changing flows (invitations, roles, deactivation) run on the integration database, with
a small two-tenant world seeded per test and a portal process of this module's own
(``admin_server``, mailing to the test SMTP server, sessions in a Redis database of its
own). Read-only checks on the shared demo data (bob, vera, alice's entity switcher) use
the shared ``live_server`` and change no demo user.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from core.audit.log import Actor
from core.audit.tables import AuditEvent
from core.crypto import token_hash
from core.identity.roles import CustomerRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import CustomerOrganization, Invitation, Membership, User
from core.invoicing.tables import Invoice
from tests.conftest import TEST_REDIS_URL, free_port, server_env
from tests.helpers import csrf_from, login
from tests.serving import serve

PASSWORD = "correct horse battery staple"
SEED = Actor.system("tests")
LINK = re.compile(r"(https?://\S+/invitations/([A-Za-z0-9_\-]+))")


# ---------------------------------------------------------------------------- fixtures


@dataclass
class Server:
    url: str
    mailbox: object


@pytest.fixture(scope="module")
def admin_server(
    databases, smtp_server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The portal over the integration database, with BASE_URL set to where it serves."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    redis = urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path="/9"))
    env = server_env(
        databases.it_url,
        tmp_path_factory.mktemp("admin-var"),
        SMTP_URL=smtp_server[0],
        BASE_URL=url,
        REDIS_URL=redis,
    )
    log: Path = tmp_path_factory.mktemp("admin-server") / "server.log"
    with serve(env, log, port) as served:
        yield Server(served, smtp_server[1])


@dataclass
class World:
    globex: int
    na: int
    eu: int
    eu_sub: int
    initech: int
    initech_sw: int
    alice: int  # admin at the Globex root
    paul: int  # payer at Globex NA
    sam: int  # admin at Globex EU
    erin: int  # viewer at Globex EU sub + payer at Globex NA
    xena: int  # admin at the Initech root


async def _user(email: str, name: str, root: int, node: int, role: CustomerRole) -> int:
    user_id = await create_user(email=email, name=name, organization_id=root, password=PASSWORD)
    await grant_role(user_id, node, role, SEED)
    return user_id


@pytest.fixture
async def world(db) -> World:
    us = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    globex = await create_organization(name="Globex Holdings")
    na = await create_organization(name="Globex North America LLC", parent_id=globex)
    eu = await create_organization(name="Globex Europe GmbH", parent_id=globex)
    eu_sub = await create_organization(name="Globex Benelux BV", parent_id=eu)
    initech = await create_organization(name="Initech Group")
    initech_sw = await create_organization(name="Initech Software Inc.", parent_id=initech)
    for code, node in (("G-NA", na), ("G-EU", eu), ("G-BX", eu_sub), ("I-SW", initech_sw)):
        await create_billing_account(
            code=code, name=code, organization_id=node, issuing_entity_id=us, currency_code="USD"
        )
    erin = await _user("erin@globex.test", "Erin Both", globex, eu_sub, CustomerRole.VIEWER)
    await grant_role(erin, na, CustomerRole.PAYER, SEED)
    return World(
        globex=globex,
        na=na,
        eu=eu,
        eu_sub=eu_sub,
        initech=initech,
        initech_sw=initech_sw,
        alice=await _user("alice@globex.test", "Alice Admin", globex, globex, CustomerRole.ADMIN),
        paul=await _user("paul@globex.test", "Paul Payer", globex, na, CustomerRole.PAYER),
        sam=await _user("sam@globex.test", "Sam Subadmin", globex, eu, CustomerRole.ADMIN),
        erin=erin,
        xena=await _user("xena@initech.test", "Xena Admin", initech, initech, CustomerRole.ADMIN),
    )


@pytest.fixture
async def clients(admin_server: Server) -> AsyncIterator[object]:
    opened: list[httpx.AsyncClient] = []

    async def open_as(email: str | None = None, password: str = PASSWORD) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=admin_server.url, timeout=15)
        opened.append(client)
        if email:
            await login(client, email, password)
        return client

    yield open_as
    for client in opened:
        await client.aclose()


async def post(
    client: httpx.AsyncClient, path: str, data: dict[str, str] | None = None, page: str = "/"
) -> httpx.Response:
    """POST a form with the CSRF token taken from ``page`` (any page with a form)."""
    token = csrf_from((await client.get(page)).text)
    return await client.post(path, data={**(data or {}), "_csrf_token": token})


async def csrf(client: httpx.AsyncClient) -> str:
    return csrf_from((await client.get("/login")).text)


async def audit_actions(object_type: str, object_id: int | str) -> list[str]:
    rows = await AuditEvent.select(AuditEvent.action).where(
        (AuditEvent.object_type == object_type) & (AuditEvent.object_id == str(object_id))
    )
    return [r["action"] for r in rows]


async def sees_node(client: httpx.AsyncClient, node: int) -> bool:
    status = (await client.get("/invoices", params={"org": node})).status_code
    assert status in (200, 404), status
    return status == 200


def link_in(mailbox, email: str) -> tuple[str, str]:
    [message] = mailbox.to(email)
    body = message.get_body(("plain",)).get_content()
    match = LINK.search(body)
    assert match, body
    return match.group(1), match.group(2)


# ---------------------------------------------------------------------------- invitations


async def test_invitation_is_mailed_works_once_and_gives_the_role(
    world: World, admin_server: Server, clients
) -> None:
    mailbox = admin_server.mailbox
    mailbox.clear()
    alice = await clients("alice@globex.test")
    form = await alice.get("/admin/users/invite")
    assert form.status_code == 200
    assert 'name="_csrf_token"' in form.text
    assert "Globex Europe GmbH" in form.text
    response = await post(
        alice,
        "/admin/users/invite",
        {"email": " New.Person@Globex.TEST ", "node": str(world.na), "role": "payer"},
        page="/admin/users/invite",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users/invitations?notice=invited"

    link, token = link_in(mailbox, "new.person@globex.test")
    assert link == f"{admin_server.url}/invitations/{token}"
    [row] = await Invitation.select().where(Invitation.email == "new.person@globex.test")
    assert row["token_hash"] == token_hash(token)
    assert token not in str(row)
    assert row["role"] == "payer"
    assert row["organization"] == world.na
    assert row["invited_by"] == world.alice
    lifetime = row["expires_at"] - row["created_at"]
    assert timedelta(days=7) - timedelta(seconds=5) < lifetime <= timedelta(days=7)
    listing = await alice.get("/admin/users/invitations")
    assert "new.person@globex.test" in listing.text
    assert "Pending" in listing.text

    visitor = await clients()
    page = await visitor.get(f"/invitations/{token}")
    assert page.status_code == 200
    assert "Globex North America LLC" in page.text
    assert "Payer" in page.text
    # bad input: re-rendered with field errors, nothing used up
    short = await visitor.post(
        f"/invitations/{token}",
        data={"name": "", "password": "short", "_csrf_token": csrf_from(page.text)},
    )
    assert short.status_code == 422
    assert 'aria-invalid="true"' in short.text
    assert "at least 12 characters" in short.text
    assert 'class="field-error" id="name-error"' in short.text
    assert not await User.exists().where(User.email == "new.person@globex.test")
    # no CSRF token: refused
    assert (
        await visitor.post(f"/invitations/{token}", data={"name": "N", "password": PASSWORD})
    ).status_code == 403

    accepted = await visitor.post(
        f"/invitations/{token}",
        data={"name": "New Person", "password": PASSWORD, "_csrf_token": csrf_from(page.text)},
    )
    assert accepted.status_code == 200
    assert "Your account is ready" in accepted.text
    user = await User.select().where(User.email == "new.person@globex.test").first()
    assert user["organization"] == world.globex
    assert user["name"] == "New Person"
    roles = await Membership.select(Membership.organization, Membership.role).where(
        Membership.user == user["id"]
    )
    assert roles == [{"organization": world.na, "role": "payer"}]
    assert "invitation.accepted" in await audit_actions("invitation", row["id"])
    assert "invitation.created" in await audit_actions("invitation", row["id"])
    assert "membership.granted" in await audit_actions("user", user["id"])

    # the link works once
    again = await visitor.get(f"/invitations/{token}")
    assert again.status_code == 410
    assert "already been used" in again.text
    replay = await visitor.post(
        f"/invitations/{token}",
        data={"name": "Mallory", "password": PASSWORD, "_csrf_token": csrf_from(page.text)},
    )
    assert replay.status_code == 410
    assert await User.count().where(User.email == "new.person@globex.test") == 1
    # an unknown token
    assert (await visitor.get("/invitations/not-a-real-token")).status_code == 404
    assert (await visitor.get("/invitations/" + "x" * 500)).status_code == 404

    # the new person signs in with the role given: North America, nothing else
    person = await clients("new.person@globex.test")
    assert await sees_node(person, world.na)
    assert not await sees_node(person, world.eu)
    assert not await sees_node(person, world.globex)
    assert (await person.get("/admin/users")).status_code == 404
    listing = await alice.get("/admin/users")
    assert "New Person" in listing.text


async def test_an_expired_or_revoked_invitation_is_refused(
    world: World, admin_server: Server, clients
) -> None:
    mailbox = admin_server.mailbox
    mailbox.clear()
    alice = await clients("alice@globex.test")
    for email in ("late@globex.test", "revoked@globex.test"):
        response = await post(
            alice, "/admin/users/invite", {"email": email, "node": str(world.eu), "role": "viewer"}
        )
        assert response.status_code == 303
    _, late = link_in(mailbox, "late@globex.test")
    _, revoked = link_in(mailbox, "revoked@globex.test")

    await Invitation.update(
        {Invitation.expires_at: datetime.now(UTC) - timedelta(minutes=1)}
    ).where(Invitation.email == "late@globex.test")
    visitor = await clients()
    page = await visitor.get(f"/invitations/{late}")
    assert page.status_code == 410
    assert "expired" in page.text
    token = csrf_from((await visitor.get("/login")).text)
    refused = await visitor.post(
        f"/invitations/{late}", data={"name": "Late", "password": PASSWORD, "_csrf_token": token}
    )
    assert refused.status_code == 410
    assert not await User.exists().where(User.email == "late@globex.test")

    invitation = (
        await Invitation.select(Invitation.id)
        .where(Invitation.email == "revoked@globex.test")
        .first()
    )
    response = await post(
        alice,
        f"/admin/users/invitations/{invitation['id']}/revoke",
        page="/admin/users/invitations",
    )
    assert response.status_code == 303
    assert "invitation.revoked" in await audit_actions("invitation", invitation["id"])
    page = await visitor.get(f"/invitations/{revoked}")
    assert page.status_code == 410
    assert "withdrawn" in page.text
    refused = await visitor.post(
        f"/invitations/{revoked}", data={"name": "R", "password": PASSWORD, "_csrf_token": token}
    )
    assert refused.status_code == 410
    # revoking twice: a clear message, nothing changes
    again = await post(alice, f"/admin/users/invitations/{invitation['id']}/revoke")
    assert again.status_code == 409
    assert "already revoked" in again.text


async def test_bad_invitations_are_refused_with_field_errors(world: World, clients) -> None:
    alice = await clients("alice@globex.test")
    cases = [
        ({"email": "not-an-email", "node": str(world.na), "role": "viewer"}, "email"),
        ({"email": "ok@globex.test", "node": str(world.na), "role": "owner"}, "role"),
        ({"email": "ok@globex.test", "node": "", "role": "viewer"}, "node"),
        ({"email": "ok@globex.test", "node": "abc", "role": "viewer"}, "node"),
        ({"email": "paul@globex.test", "node": str(world.na), "role": "viewer"}, "email"),
    ]
    for data, field in cases:
        response = await post(alice, "/admin/users/invite", data, page="/admin/users/invite")
        assert response.status_code == 422, (data, response.text[:300])
        assert f'id="{field}-error"' in response.text, data
        assert 'aria-invalid="true"' in response.text
    ok = {"email": "twice@globex.test", "node": str(world.na), "role": "viewer"}
    assert (await post(alice, "/admin/users/invite", ok)).status_code == 303
    duplicate = await post(alice, "/admin/users/invite", ok)
    assert duplicate.status_code == 422
    assert "already pending" in duplicate.text
    assert await Invitation.count() == 1
    # a node of the other tenant, or no node at all: not found
    for node in (world.initech, world.initech_sw, 2**31 - 1, 2**31, 2**70):
        data = {"email": "ok@globex.test", "node": str(node), "role": "viewer"}
        assert (await post(alice, "/admin/users/invite", data)).status_code in (404, 422)
    assert (
        await post(
            alice,
            "/admin/users/invite",
            {"email": "ok@globex.test", "node": str(world.initech), "role": "viewer"},
        )
    ).status_code == 404
    assert await Invitation.count() == 1


async def test_an_existing_group_member_accepts_after_signing_in(
    world: World, admin_server: Server, clients
) -> None:
    admin_server.mailbox.clear()
    alice = await clients("alice@globex.test")
    data = {"email": "paul@globex.test", "node": str(world.eu), "role": "viewer"}
    assert (await post(alice, "/admin/users/invite", data)).status_code == 303
    _, token = link_in(admin_server.mailbox, "paul@globex.test")

    visitor = await clients()
    page = await visitor.get(f"/invitations/{token}")
    assert page.status_code == 200
    assert "Sign in to accept" in page.text
    refused = await visitor.post(
        f"/invitations/{token}",
        data={"name": "Paul", "password": PASSWORD, "_csrf_token": await csrf(visitor)},
    )
    assert refused.status_code == 409
    # someone else of the group, signed in, cannot take it
    erin = await clients("erin@globex.test")
    assert "signed in as someone else" in (await erin.get(f"/invitations/{token}")).text
    assert (await post(erin, f"/invitations/{token}")).status_code == 409

    paul = await clients("paul@globex.test")
    assert not await sees_node(paul, world.eu)
    old_sid = paul.cookies.get("ledgerline_session")
    page = await paul.get(f"/invitations/{token}")
    assert "Accept the invitation" in page.text
    accepted = await paul.post(f"/invitations/{token}", data={"_csrf_token": csrf_from(page.text)})
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/"
    assert paul.cookies.get("ledgerline_session") != old_sid  # privilege change: new id
    assert await sees_node(paul, world.eu)
    async with httpx.AsyncClient(base_url=admin_server.url) as stale:
        stale.cookies.set("ledgerline_session", old_sid)
        assert (await stale.get("/")).status_code in (302, 303, 307)
    assert (await paul.get(f"/invitations/{token}")).status_code == 410


async def test_another_groups_address_cannot_join(
    world: World, admin_server: Server, clients
) -> None:
    admin_server.mailbox.clear()
    alice = await clients("alice@globex.test")
    data = {"email": "xena@initech.test", "node": str(world.na), "role": "admin"}
    assert (await post(alice, "/admin/users/invite", data)).status_code == 303
    _, token = link_in(admin_server.mailbox, "xena@initech.test")
    xena = await clients("xena@initech.test")
    page = await xena.get(f"/invitations/{token}")
    assert page.status_code == 409
    assert "another organization" in page.text
    assert (await post(xena, f"/invitations/{token}")).status_code == 409
    assert not await Membership.exists().where(
        (Membership.user == world.xena) & (Membership.organization == world.na)
    )


# ---------------------------------------------------------------------------- roles


async def test_role_changes_take_effect_on_the_next_request(world: World, clients) -> None:
    alice = await clients("alice@globex.test")
    paul = await clients("paul@globex.test")
    assert not await sees_node(paul, world.eu)
    paul_sid = paul.cookies.get("ledgerline_session")

    page = await alice.get(f"/admin/users/{world.paul}")
    assert page.status_code == 200
    assert "Paul Payer" in page.text
    response = await post(
        alice,
        f"/admin/users/{world.paul}/roles",
        {"node": str(world.eu), "role": "viewer"},
        page=f"/admin/users/{world.paul}",
    )
    assert response.status_code == 303
    assert await sees_node(paul, world.eu)  # same session, next request
    assert await sees_node(paul, world.eu_sub)  # the role applies to the subtree
    assert paul.cookies.get("ledgerline_session") == paul_sid  # others: nothing rotated
    assert (await alice.get(f"/admin/users/{world.paul}")).text.count("Globex Europe GmbH") >= 1

    response = await post(alice, f"/admin/users/{world.paul}/roles/{world.eu}/remove")
    assert response.status_code == 303
    assert not await sees_node(paul, world.eu)
    actions = [a for a in await audit_actions("user", world.paul) if a.startswith("member")]
    assert actions == [
        "membership.granted",  # seeding
        "membership.granted",
        "membership.revoked",
    ]
    # bad input re-renders the page with the error
    bad = await post(
        alice, f"/admin/users/{world.paul}/roles", {"node": str(world.eu), "role": "x"}
    )
    assert bad.status_code == 422
    assert 'id="role-error"' in bad.text
    # a role that is not there, or a node outside the area
    assert (
        await post(alice, f"/admin/users/{world.paul}/roles/{world.eu}/remove")
    ).status_code == 404


async def test_an_admin_cannot_drop_their_own_last_admin_role(world: World, clients) -> None:
    alice = await clients("alice@globex.test")
    response = await post(alice, f"/admin/users/{world.alice}/roles/{world.globex}/remove")
    assert response.status_code == 422
    assert "last administrator role" in response.text
    downgrade = await post(
        alice, f"/admin/users/{world.alice}/roles", {"node": str(world.globex), "role": "payer"}
    )
    assert downgrade.status_code == 422
    deactivate = await post(alice, f"/admin/users/{world.alice}/deactivate")
    assert deactivate.status_code == 422
    assert "your own account" in deactivate.text
    assert (await User.select(User.is_active).where(User.id == world.alice).first())["is_active"]

    # changing one's own roles rotates one's session id
    old_sid = alice.cookies.get("ledgerline_session")
    grant = await post(
        alice, f"/admin/users/{world.alice}/roles", {"node": str(world.eu), "role": "admin"}
    )
    assert grant.status_code == 303
    new_sid = alice.cookies.get("ledgerline_session")
    assert new_sid
    assert new_sid != old_sid
    assert (await alice.get("/admin/users")).status_code == 200
    # now the root admin role is not the last one: it may go
    response = await post(alice, f"/admin/users/{world.alice}/roles/{world.globex}/remove")
    assert response.status_code == 303
    assert alice.cookies.get("ledgerline_session") != new_sid
    assert not await sees_node(alice, world.na)  # only Europe is left
    assert (await alice.get(f"/admin/users/{world.paul}")).status_code == 404


# ---------------------------------------------------------------------------- deactivation


async def test_deactivation_ends_sessions_and_blocks_sign_in(
    world: World, admin_server: Server, clients
) -> None:
    alice = await clients("alice@globex.test")
    paul = await clients("paul@globex.test")
    paul_elsewhere = await clients("paul@globex.test")
    assert (await paul.get("/")).status_code == 200

    response = await post(alice, f"/admin/users/{world.paul}/deactivate")
    assert response.status_code == 303
    for session in (paul, paul_elsewhere):
        gone = await session.get("/")
        assert gone.status_code in (302, 303, 307)
        assert gone.headers["location"].startswith("/login")
    async with httpx.AsyncClient(base_url=admin_server.url) as client:
        page = await client.get("/login")
        refused = await client.post(
            "/login",
            data={
                "email": "paul@globex.test",
                "password": PASSWORD,
                "_csrf_token": csrf_from(page.text),
            },
        )
        assert refused.status_code in (400, 429)
        assert "ledgerline_session" not in client.cookies
    assert "Deactivated" in (await alice.get(f"/admin/users/{world.paul}")).text
    assert "Deactivated" in (await alice.get("/admin/users")).text

    response = await post(alice, f"/admin/users/{world.paul}/reactivate")
    assert response.status_code == 303
    again = await clients("paul@globex.test")
    assert (await again.get("/")).status_code == 200
    actions = await audit_actions("user", world.paul)
    assert "user.deactivated" in actions
    assert "user.reactivated" in actions
    event = (
        await AuditEvent.select(AuditEvent.actor_type, AuditEvent.actor_id)
        .where(AuditEvent.action == "user.deactivated")
        .first()
    )
    assert event == {"actor_type": "customer", "actor_id": str(world.alice)}


# ---------------------------------------------------------------------------- boundaries


async def test_a_subsidiary_admin_manages_only_their_subtree(world: World, clients) -> None:
    sam = await clients("sam@globex.test")
    listing = await sam.get("/admin/users")
    assert listing.status_code == 200
    assert "Erin Both" in listing.text
    assert "Sam Subadmin" in listing.text
    assert "Paul Payer" not in listing.text
    assert "Alice Admin" not in listing.text
    assert "Also holds roles elsewhere" in listing.text  # erin, payer at NA
    assert "Globex North America LLC" not in listing.text

    for user in (world.paul, world.alice, world.xena):
        assert (await sam.get(f"/admin/users/{user}")).status_code == 404
        assert (await post(sam, f"/admin/users/{user}/deactivate")).status_code == 404
    # a node outside the subtree, for a user inside it
    outside = {"node": str(world.na), "role": "viewer"}
    assert (await post(sam, f"/admin/users/{world.erin}/roles", outside)).status_code == 404
    assert (
        await post(sam, f"/admin/users/{world.erin}/roles/{world.na}/remove")
    ).status_code == 404
    # erin also works for North America: only a whole-group admin may deactivate her
    page = await sam.get(f"/admin/users/{world.erin}")
    assert "roles outside the part of the group you administer" in page.text
    refused = await post(sam, f"/admin/users/{world.erin}/deactivate")
    assert refused.status_code == 422
    assert (await User.select(User.is_active).where(User.id == world.erin).first())["is_active"]
    # inside the subtree: fine
    inside = {"node": str(world.eu_sub), "role": "payer"}
    assert (await post(sam, f"/admin/users/{world.erin}/roles", inside)).status_code == 303


async def test_the_other_tenant_is_not_found(world: World, clients) -> None:
    alice = await clients("alice@globex.test")
    xena = await clients("xena@initech.test")
    invite = {"email": "someone@initech.test", "node": str(world.initech_sw), "role": "viewer"}
    assert (await post(xena, "/admin/users/invite", invite)).status_code == 303
    initech_invitation = (await Invitation.select(Invitation.id).first())["id"]

    assert (await alice.get(f"/admin/users/{world.xena}")).status_code == 404
    for path, data in (
        (f"/admin/users/{world.xena}/roles", {"node": str(world.initech), "role": "viewer"}),
        (f"/admin/users/{world.alice}/roles", {"node": str(world.initech), "role": "admin"}),
        (f"/admin/users/{world.paul}/roles", {"node": str(world.initech_sw), "role": "viewer"}),
        (f"/admin/users/{world.xena}/roles/{world.initech}/remove", {}),
        (f"/admin/users/{world.paul}/roles/{world.initech}/remove", {}),
        (f"/admin/users/{world.xena}/deactivate", {}),
        (f"/admin/users/{world.xena}/reactivate", {}),
        (f"/admin/users/invitations/{initech_invitation}/revoke", {}),
        (f"/admin/users/{2**31 - 1}/deactivate", {}),
        (f"/admin/users/{2**31}/deactivate", {}),
        (f"/admin/users/{2**63}/roles/{world.na}/remove", {}),
        (f"/admin/users/{world.paul}/roles/{2**40}/remove", {}),
        (f"/admin/users/invitations/{2**31}/revoke", {}),
        (f"/admin/users/{2**64}/deactivate", {}),
        (f"/admin/users/invitations/{2**64}/revoke", {}),
    ):
        response = await post(alice, path, data)
        assert response.status_code == 404, (path, response.status_code)
    assert (await alice.get(f"/admin/users/{2**64}")).status_code == 404
    assert "someone@initech.test" not in (await alice.get("/admin/users/invitations")).text
    assert "Xena" not in (await alice.get("/admin/users")).text
    assert await Membership.count().where(Membership.user == world.alice) == 1
    assert await Membership.count().where(Membership.user == world.xena) == 1
    assert await User.count().where(User.is_active.eq(False)) == 0


async def test_non_admins_get_404_for_every_admin_url(world: World, clients) -> None:
    paul = await clients("paul@globex.test")
    anonymous = await clients()
    await Invitation.insert(
        Invitation(
            email="pending@globex.test",
            organization=world.na,
            role="viewer",
            token_hash="0" * 64,
            invited_by=world.alice,
            expires_at=datetime.now(UTC) + timedelta(days=1),
            created_at=datetime.now(UTC),
        )
    )
    invitation = (await Invitation.select(Invitation.id).first())["id"]
    gets = ["/admin/users", "/admin/users/invite", "/admin/users/invitations"]
    gets += [f"/admin/users/{u}" for u in (world.paul, world.alice, world.erin)]
    posts = [
        ("/admin/users/invite", {"email": "a@b.example", "node": str(world.na), "role": "admin"}),
        (f"/admin/users/{world.paul}/roles", {"node": str(world.na), "role": "admin"}),
        (f"/admin/users/{world.paul}/roles/{world.na}/remove", {}),
        (f"/admin/users/{world.alice}/deactivate", {}),
        (f"/admin/users/{world.alice}/reactivate", {}),
        (f"/admin/users/invitations/{invitation}/revoke", {}),
    ]
    for path in gets:
        assert (await paul.get(path)).status_code == 404, path
        assert (await anonymous.get(path)).status_code in (302, 303, 307), path
    for path, data in posts:
        assert (await post(paul, path, data)).status_code == 404, path
    assert await Membership.count().where(Membership.user == world.paul) == 1
    assert await Invitation.count() == 1
    assert "/admin/users" not in (await paul.get("/")).text  # no "Users" link either


# ---------------------------------------------------------------------------- demo data (read-only)


@pytest.fixture
async def demo_client(live_server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=15) as client:
        yield client


async def _node(name: str) -> int:
    row = (
        await CustomerOrganization.select(CustomerOrganization.id)
        .where(CustomerOrganization.name == name)
        .first()
    )
    return int(row["id"])


async def _user_id(email: str) -> int:
    return int((await User.select(User.id).where(User.email == email).first())["id"])


async def test_bob_gets_404_on_every_admin_url(demo_db, demo_client) -> None:
    alice, vera = await _user_id("alice@globex.example"), await _user_id("vera@globex.example")
    na = await _node("Globex North America LLC")
    await login(demo_client, "bob@globex.example")
    for path in ("/admin/users", "/admin/users/invite", "/admin/users/invitations"):
        assert (await demo_client.get(path)).status_code == 404, path
    for user in (alice, vera):
        assert (await demo_client.get(f"/admin/users/{user}")).status_code == 404
        for action in ("deactivate", "reactivate"):
            response = await post(demo_client, f"/admin/users/{user}/{action}")
            assert response.status_code == 404
        response = await post(
            demo_client, f"/admin/users/{user}/roles", {"node": str(na), "role": "admin"}
        )
        assert response.status_code == 404
    response = await post(
        demo_client,
        "/admin/users/invite",
        {"email": "bob-friend@globex.example", "node": str(na), "role": "admin"},
    )
    assert response.status_code == 404
    assert not await Invitation.exists().where(Invitation.email == "bob-friend@globex.example")
    dashboard = await demo_client.get("/")
    assert "/admin/users" not in dashboard.text
    assert 'action="/entity"' not in dashboard.text  # one entity: nothing to switch


async def test_vera_cannot_see_or_switch_to_the_sibling_subsidiary(demo_db, demo_client) -> None:
    na = await _node("Globex North America LLC")
    eu = await _node("Globex Europe GmbH")
    await login(demo_client, "vera@globex.example")
    assert (await demo_client.get("/invoices", params={"org": na})).status_code == 404
    assert (await post(demo_client, "/entity", {"entity": str(na)})).status_code == 404
    listing = await demo_client.get("/api/v1/invoices", params={"per_page": 100})
    assert {i["organization"] for i in listing.json()["items"]} == {"Globex Europe GmbH"}
    # her own node is fine to "switch" to, and changes nothing
    assert (await post(demo_client, "/entity", {"entity": str(eu)})).status_code == 303
    assert (await demo_client.get("/admin/users")).status_code == 404


async def test_the_entity_switcher_narrows_every_customer_view(demo_db, demo_client) -> None:
    eu = await _node("Globex Europe GmbH")
    na = await _node("Globex North America LLC")
    initech = await _node("Initech Group")
    initech_sw = await _node("Initech Software Inc.")
    await login(demo_client, "alice@globex.example")

    dashboard = await demo_client.get("/")
    assert 'action="/entity"' in dashboard.text
    assert "All entities" in dashboard.text
    assert 'href="/admin/users"' in dashboard.text  # alice is an admin
    assert 'data-testid="open-USD"' in dashboard.text
    assert 'data-testid="open-EUR"' in dashboard.text
    everything = (await demo_client.get("/api/v1/invoices", params={"per_page": 10})).json()

    switched = await post(demo_client, "/entity", {"entity": str(eu), "next": "/invoices?org=7"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/invoices"
    dashboard = await demo_client.get("/")
    assert 'data-testid="open-EUR"' in dashboard.text
    assert 'data-testid="open-USD"' not in dashboard.text
    assert re.search(rf'<option value="{eu}"\s+selected', dashboard.text)
    listing = await demo_client.get("/invoices", params={"per_page": 100})
    table = listing.text.split('data-testid="invoice-table"', 1)[1].split("</table>", 1)[0]
    assert "Globex Europe GmbH" in table
    assert "Globex North America LLC" not in table
    api = (await demo_client.get("/api/v1/invoices", params={"per_page": 100})).json()
    assert {i["organization"] for i in api["items"]} == {"Globex Europe GmbH"}
    assert 0 < api["total"] < everything["total"]
    europe = await Invoice.count().where(
        (Invoice.billing_account.organization == eu) & (Invoice.status != "draft")
    )
    assert api["total"] == europe
    export = await demo_client.get("/invoices/export.csv")
    assert "Globex North America LLC" not in export.text
    assert "Globex Europe GmbH" in export.text
    na_invoice = (
        await Invoice.select(Invoice.id)
        .where((Invoice.billing_account.organization == na) & (Invoice.status != "draft"))
        .first()
    )
    detail = await demo_client.get(f"/invoices/{na_invoice['id']}")
    assert detail.status_code == 404, (detail.status_code, detail.text[:3000])
    assert (await demo_client.get("/invoices", params={"org": na})).status_code == 404

    # another tenant's node, or nonsense: 404, and the choice stays as it was
    for bad in (str(initech), str(initech_sw), "0", "-1", "abc", str(2**64), ""):
        assert (await post(demo_client, "/entity", {"entity": bad})).status_code == 404, bad
    api = (await demo_client.get("/api/v1/invoices", params={"per_page": 10})).json()
    assert api["total"] == europe

    back = await post(demo_client, "/entity", {"entity": "all", "next": "https://evil.example/"})
    assert back.status_code == 303
    assert back.headers["location"] == "/"
    api = (await demo_client.get("/api/v1/invoices", params={"per_page": 10})).json()
    assert api["total"] == everything["total"]
