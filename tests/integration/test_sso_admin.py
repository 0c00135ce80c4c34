"""``/admin/sso``: only an administrator of the group's root sees it (everyone else gets a
404); the form re-renders with each field's error and changes nothing; a valid form
stores the connection with its secret encrypted and audits ``sso.configured`` without
the secret. Also the configuration service's checks, directly."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core import crypto
from core.audit.tables import AuditEvent
from core.errors import ValidationFailed
from core.identity.roles import CustomerRole
from core.identity.services import create_user, grant_role
from core.identity.sso import (
    MappingRow,
    SsoInput,
    configure_connection,
    get_connection,
    issuer_problem,
    parse_domains,
)
from core.identity.tables import Membership, SsoConnection, User
from core.settings import load_settings
from tests.conftest import server_env
from tests.helpers import csrf_from, login
from tests.integration.oidc_fixtures import GLOBEX, INITECH, TEST_ACTOR, group_nodes

PASSWORD = "sso-admin-password-123"


@pytest.fixture
async def globex(demo_db: Any, tmp_path: Any) -> AsyncIterator[dict[str, int]]:
    """Globex's nodes; any connection configured for Globex is removed afterwards."""
    crypto.configure(
        load_settings(server_env("postgresql://unused/none", tmp_path)).encryption_keys
    )
    nodes = await group_nodes(GLOBEX)
    await SsoConnection.delete().where(SsoConnection.organization == nodes[GLOBEX])
    yield nodes
    await SsoConnection.delete().where(SsoConnection.organization == nodes[GLOBEX])


@pytest.fixture
async def subsidiary_admin(globex: dict[str, int]) -> AsyncIterator[str]:
    """An admin of Globex North America only (not of the group's root)."""
    email = f"na-admin-{uuid.uuid4().hex[:8]}@globex.example"
    user_id = await create_user(
        email=email, name="NA Admin", organization_id=globex[GLOBEX], password=PASSWORD
    )
    await grant_role(user_id, globex["Globex North America LLC"], CustomerRole.ADMIN, TEST_ACTOR)
    yield email
    await Membership.delete().where(Membership.user == user_id)
    await User.delete().where(User.id == user_id)


def form(**fields: str) -> dict[str, str]:
    base = {
        "issuer": "https://login.globex.example",
        "client_id": "ledgerline",
        "client_secret": "s3cret-value-for-the-test",
        "allowed_domains": "globex.example, globex.de",
        "role_claim": "groups",
        "default_role": "viewer",
        "enabled": "on",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


async def test_only_a_root_admin_sees_the_page(live_server, globex, subsidiary_admin) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as anon:
        response = await anon.get("/admin/sso")
        assert response.status_code in (302, 303)
        assert "/login" in response.headers["location"]
    for email, password in (
        ("bob@globex.example", None),  # payer
        ("vera@globex.example", None),  # viewer
        ("carol@initech.example", None),  # approver at Initech's root
        (subsidiary_admin, PASSWORD),  # admin, but of a subsidiary only
    ):
        async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
            await (login(client, email, password) if password else login(client, email))
            page = await client.get("/admin/sso")
            assert page.status_code == 404, email
            csrf = csrf_from((await client.get("/invoices")).text)
            response = await client.post("/admin/sso", data=form(_csrf_token=csrf))
            assert response.status_code == 404, email
    assert await get_connection(globex[GLOBEX]) is None


async def test_admin_configures_with_field_errors_first(live_server, globex) -> None:
    initech_nodes = await group_nodes(INITECH)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        await login(client, "alice@globex.example")
        page = await client.get("/admin/sso")
        assert page.status_code == 200
        assert "Company sign-in (SSO)" in page.text
        assert f'<code data-testid="sso-redirect-uri">{live_server.url}/sso/callback</code>' in (
            page.text
        )
        csrf = csrf_from(page.text)

        bad = await client.post(
            "/admin/sso",
            data=form(
                _csrf_token=csrf,
                issuer="http://login.globex.example",
                allowed_domains="globex.example, not a domain",
                **{
                    "map-0-claim": "ledgerline-admin",
                    "map-0-role": "overlord",
                    "map-0-org": str(globex[GLOBEX]),
                    "map-1-claim": "ledgerline-spy",
                    "map-1-role": "viewer",
                    "map-1-org": str(initech_nodes[INITECH]),  # another group's node
                },
            ),
        )
        assert bad.status_code == 422
        for field in ("issuer", "allowed_domains", "map-0-role", "map-1-org"):
            assert f'id="{field}-error"' in bad.text, field
            assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', bad.text), field
        assert "must use https" in bad.text
        assert 'value="ledgerline-spy"' in bad.text, "the form keeps what was typed"
        assert "s3cret-value-for-the-test" not in bad.text, "the secret is never echoed"
        assert await get_connection(globex[GLOBEX]) is None, "nothing saved"

        good = await client.post(
            "/admin/sso",
            data=form(
                _csrf_token=csrf,
                sso_required="on",
                **{
                    "map-0-claim": "ledgerline-admin",
                    "map-0-role": "admin",
                    "map-0-org": str(globex[GLOBEX]),
                    "map-2-claim": "ledgerline-na-payer",
                    "map-2-role": "payer",
                    "map-2-org": str(globex["Globex North America LLC"]),
                },
            ),
        )
        assert good.status_code == 303, good.text[:1000]
        assert good.headers["location"] == "/admin/sso?saved=1"
        saved = await client.get("/admin/sso?saved=1")
        assert 'data-testid="sso-saved"' in saved.text
        assert "s3cret-value-for-the-test" not in saved.text
        assert 'value="https://login.globex.example"' in saved.text

        view = await get_connection(globex[GLOBEX])
        assert view is not None
        assert view.allowed_domains == ("globex.de", "globex.example")
        assert view.sso_required is True
        assert view.default_role == "viewer"
        assert {k: (g.role.value, g.organization_id) for k, g in view.mapping.items()} == {
            "ledgerline-admin": ("admin", globex[GLOBEX]),
            "ledgerline-na-payer": ("payer", globex["Globex North America LLC"]),
        }
        row = await SsoConnection.select().where(SsoConnection.id == view.id).first()
        assert "s3cret" not in row["client_secret_enc"]
        assert crypto.box().decrypt(row["client_secret_enc"]) == "s3cret-value-for-the-test"
        event = (
            await AuditEvent.select()
            .where(AuditEvent.action == "sso.configured")
            .order_by(AuditEvent.id, ascending=False)
            .first()
        )
        assert event["actor_type"] == "customer"
        data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
        assert data["secret_changed"] is True
        assert "s3cret" not in json.dumps(data)

        # An update with the secret left empty keeps the stored secret.
        again = await client.post(
            "/admin/sso", data=form(_csrf_token=csrf, client_secret="", sso_required=None)
        )
        assert again.status_code == 303
        row = await SsoConnection.select().where(SsoConnection.id == view.id).first()
        assert crypto.box().decrypt(row["client_secret_enc"]) == "s3cret-value-for-the-test"
        assert row["sso_required"] is False

        # Without the CSRF token nothing happens.
        no_csrf = await client.post("/admin/sso", data=form(client_id="changed"))
        assert no_csrf.status_code == 403
        assert (await get_connection(globex[GLOBEX])).client_id == "ledgerline"


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("https://login.example.com", True),
        ("https://login.example.com/tenant/v2.0", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:9000/realms/x", True),
        ("http://login.example.com", False),
        ("ftp://login.example.com", False),
        ("https://login.example.com?x=1", False),
        ("https://user:pw@login.example.com", False),
        ("https://", False),
        ("https://login.example.com:99999", False),
        ("", False),
        ("https://" + "a" * 600 + ".example", False),
    ],
)
def test_issuer_rules(issuer: str, ok: bool) -> None:
    assert (issuer_problem(issuer) is None) is ok


def test_loopback_http_can_be_refused_in_production() -> None:
    assert issuer_problem("http://127.0.0.1:8080", allow_local_http=False) is not None


def test_domain_rules() -> None:
    assert parse_domains("Example.COM, @example.de;example.com\nsub.example.org") == (
        ["example.com", "example.de", "sub.example.org"],
        None,
    )
    for bad in ("", "localhost", "exa mple.com", "-bad.example", "x" * 300 + ".com", "a@b.com"):
        _domains, problem = parse_domains(bad)
        assert problem, bad


async def test_service_refuses_a_domain_of_another_group_and_changes_nothing(
    globex, initech_claims_its_domain
) -> None:
    initech_root = initech_claims_its_domain
    with pytest.raises(ValidationFailed) as refused:
        await configure_connection(
            globex[GLOBEX],
            SsoInput(
                issuer="https://login.globex.example",
                client_id="ledgerline",
                client_secret="x" * 20,
                allowed_domains="globex.example, initech.example",
                mapping=(MappingRow("g", "viewer", initech_root),),
                default_role="superuser",
            ),
            TEST_ACTOR,
        )
    assert set(refused.value.errors) == {"allowed_domains", "map-0-org", "default_role"}
    assert "another organization" in refused.value.errors["allowed_domains"]
    assert await get_connection(globex[GLOBEX]) is None


@pytest.fixture
async def initech_claims_its_domain(globex: dict[str, int]) -> AsyncIterator[int]:
    """Initech with a connection claiming initech.example (removed afterwards)."""
    root = (await group_nodes(INITECH))[INITECH]
    await configure_connection(
        root,
        SsoInput(
            issuer="https://login.initech.example",
            client_id="ledgerline",
            client_secret="y" * 20,
            allowed_domains="initech.example",
        ),
        TEST_ACTOR,
    )
    yield root
    await SsoConnection.delete().where(SsoConnection.organization == root)


def test_roles_from_claims_rules() -> None:
    from core.identity.sso import RoleGrant, roles_from_claims

    mapping = {
        "a": RoleGrant(CustomerRole.ADMIN, 1),
        "v": RoleGrant(CustomerRole.VIEWER, 1),
        "p": RoleGrant(CustomerRole.PAYER, 2),
    }
    assert roles_from_claims(["v", "a"], mapping, "", 1) == {1: CustomerRole.ADMIN}
    assert roles_from_claims(["p", "x"], mapping, "viewer", 1) == {2: CustomerRole.PAYER}
    assert roles_from_claims(["x"], mapping, "viewer", 1) == {1: CustomerRole.VIEWER}
    assert roles_from_claims(["x"], mapping, "", 1) == {}
    assert roles_from_claims([], {}, "", 1) == {}
