"""Shared by the assisted-session tests (HTTP and browser): a small two-group world on
the integration database, built through the real services; a portal process of their
own over it; staff sign-in through the real password + TOTP pages.

Staff must use MFA: each test agent gets a confirmed TOTP factor through the MFA service
(``pending_enrollment`` + ``confirm_enrollment``), and signs in by typing codes, never by
writing a session into Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from core import crypto
from core.audit.log import Actor
from core.identity import mfa
from core.identity.roles import CustomerRole, StaffRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_staff_user,
    create_user,
    grant_role,
)
from core.invoicing.rules import LineInput
from core.invoicing.services import create_draft, finalize
from core.settings import load_settings
from tests.conftest import TEST_REDIS_URL, free_port, server_env
from tests.helpers import csrf_from
from tests.serving import serve

PASSWORD = "correct horse battery staple"
SEED = Actor.system("assisted-tests")
REDIS_DB = "/7"  # sessions and throttling counters apart from the other test servers


@contextmanager
def assisted_server(it_url: str, smtp_url: str, var_dir: Path, log_dir: Path) -> Iterator[str]:
    """The portal over the integration database, mailing to the test SMTP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(
        it_url,
        var_dir,
        SMTP_URL=smtp_url,
        BASE_URL=url,
        REDIS_URL=urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path=REDIS_DB)),
    )
    with serve(env, log_dir / "server.log", port) as served:
        yield served


def use_server_keys(tmp: Path) -> None:
    """Encrypt MFA secrets with the keys the server derives from the test SECRET_KEY."""
    crypto.configure(load_settings(server_env("postgresql://unused/none", tmp)).encryption_keys)


class Authenticator:
    """A TOTP app that never hands out a time step twice (the server refuses replays)."""

    def __init__(self, secret: str, last_step: int) -> None:
        self.secret = secret
        self.last_step = last_step

    def code(self) -> str:
        current = mfa.time_step(time.time())
        step = max(self.last_step + 1, current - 1)
        if step > current + 1:
            time.sleep(mfa.STEP_SECONDS - time.time() % mfa.STEP_SECONDS + 0.2)
            return self.code()
        self.last_step = step
        return mfa.code_for_step(self.secret, step)


@dataclass
class Person:
    id: int
    email: str
    name: str


@dataclass
class Staff(Person):
    role: str = "support_agent"
    app: Authenticator | None = None


@dataclass
class World:
    globex: int
    na: int
    eu: int
    initech: int
    paul: Person  # payer at Globex NA and viewer at Globex EU: the assisted user
    alice: Person  # admin of the whole Globex group
    sam: Person  # admin at Globex EU only (does not cover paul's NA role)
    xena: Person  # admin of the Initech group
    agent: Staff  # support agent
    other_agent: Staff  # another support agent
    auditor: Staff
    na_invoices: list[str] = field(default_factory=list)
    eu_invoices: list[str] = field(default_factory=list)


def unique(prefix: str, domain: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@{domain}"


async def _person(
    name: str, domain: str, root: int, roles: list[tuple[int, CustomerRole]]
) -> Person:
    email = unique(name.split()[0].lower(), domain)
    user_id = await create_user(email=email, name=name, organization_id=root, password=PASSWORD)
    for node, role in roles:
        await grant_role(user_id, node, role, SEED)
    return Person(user_id, email, name)


async def _staff(name: str, role: StaffRole) -> Staff:
    email = unique(name.split()[0].lower(), "ledgerline-staff.test")
    staff_id = await create_staff_user(email=email, name=name, role=role, password=PASSWORD)
    enrollment = await mfa.pending_enrollment("staff", staff_id)
    step = mfa.time_step(time.time()) - 1  # leaves the current and next steps for sign-in
    await mfa.confirm_enrollment(
        "staff", staff_id, mfa.code_for_step(enrollment.secret, step), SEED
    )
    return Staff(staff_id, email, name, role.value, Authenticator(enrollment.secret, step))


async def _invoices(account: int, count: int) -> list[str]:
    numbers = []
    for i in range(count):
        lines = [LineInput(f"Service {i}", Decimal(1), Decimal("100.00") + i, Decimal("0.1"))]
        numbers.append(await finalize(await create_draft(account, lines, SEED), SEED))
    return numbers


async def build_world(tmp: Path) -> World:
    use_server_keys(tmp)
    us = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    globex = await create_organization(name="Globex Holdings")
    na = await create_organization(name="Globex North America LLC", parent_id=globex)
    eu = await create_organization(name="Globex Europe GmbH", parent_id=globex)
    initech = await create_organization(name="Initech Group")
    na_account = await create_billing_account(
        code="G-NA", name="Globex US", organization_id=na, issuing_entity_id=us, currency_code="USD"
    )
    eu_account = await create_billing_account(
        code="G-EU", name="Globex EU", organization_id=eu, issuing_entity_id=us, currency_code="USD"
    )
    await create_billing_account(
        code="I-1",
        name="Initech",
        organization_id=initech,
        issuing_entity_id=us,
        currency_code="USD",
    )
    return World(
        globex=globex,
        na=na,
        eu=eu,
        initech=initech,
        paul=await _person(
            "Paul Payer",
            "globex.test",
            globex,
            [(na, CustomerRole.PAYER), (eu, CustomerRole.VIEWER)],
        ),
        alice=await _person("Alice Admin", "globex.test", globex, [(globex, CustomerRole.ADMIN)]),
        sam=await _person("Sam Subadmin", "globex.test", globex, [(eu, CustomerRole.ADMIN)]),
        xena=await _person("Xena Admin", "initech.test", initech, [(initech, CustomerRole.ADMIN)]),
        agent=await _staff("Sue Support", StaffRole.SUPPORT_AGENT),
        other_agent=await _staff("Oscar Other", StaffRole.SUPPORT_AGENT),
        auditor=await _staff("Audrey Auditor", StaffRole.AUDITOR),
        na_invoices=await _invoices(na_account, 2),
        eu_invoices=await _invoices(eu_account, 1),
    )


# ---------------------------------------------------------------------------- HTTP helpers


async def post_form(
    client: httpx.AsyncClient, action: str, data: dict[str, str] | None = None, page: str = "/"
) -> httpx.Response:
    """POST a form with the CSRF token of ``page`` (any page showing a form)."""
    token = csrf_from((await client.get(page)).text)
    return await client.post(action, data={**(data or {}), "_csrf_token": token})


async def sign_in_customer(client: httpx.AsyncClient, person: Person) -> None:
    response = await post_form(
        client, "/login", {"email": person.email, "password": PASSWORD}, page="/login"
    )
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == "/"


async def sign_in_staff(client: httpx.AsyncClient, staff: Staff) -> None:
    """Password, then a TOTP code on the real second-factor page."""
    assert staff.app is not None
    response = await post_form(
        client, "/login", {"email": staff.email, "password": PASSWORD}, page="/login"
    )
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"].startswith("/login/mfa")
    response = await post_form(client, "/login/mfa", {"code": staff.app.code()}, page="/login/mfa")
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == "/staff"
