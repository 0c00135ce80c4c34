"""Helpers for the account, sign-in and session tests (imported explicitly).

Users are created in the demo database through the real services, with unique emails,
so the shared demo data stays as it was; everything else goes through HTTP against the
live server.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pyotp
import pytest
from redis.asyncio import Redis

from core.identity.mfa import STEP_SECONDS, code_for_step, time_step
from core.identity.roles import CustomerRole, StaffRole
from core.identity.services import (
    create_organization,
    create_staff_user,
    create_user,
    grant_role,
)
from tests.conftest import TEST_REDIS_URL
from tests.helpers import csrf_from
from tests.integration.factories import SYSTEM

PASSWORD = "correct horse battery staple"
COOKIE = "ledgerline_session"
_SECRET = re.compile(r'data-testid="totp-secret">([A-Z2-7 ]+)<')
_CODES = re.compile(r"<li><code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code></li>")


def unique_email(prefix: str = "user", domain: str = "auth-tests.example") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@{domain}"


async def new_customer(password: str = PASSWORD, email: str | None = None) -> str:
    """A customer user (viewer of a fresh organization) in the bound database."""
    email = email or unique_email()
    org = await create_organization(name=f"Auth test org {uuid.uuid4().hex[:6]}")
    user_id = await create_user(
        email=email, name="Test User", organization_id=org, password=password
    )
    await grant_role(user_id, org, CustomerRole.VIEWER, SYSTEM)
    return email


async def new_staff(password: str = PASSWORD, role: StaffRole = StaffRole.BILLING_OPS) -> str:
    email = unique_email("staff", "staff-tests.example")
    await create_staff_user(email=email, name="Test Staff", role=role, password=password)
    return email


class Authenticator:
    """An authenticator app: never hands out a code of a step already used (the server
    would rightly refuse it); waits for the next step only when it must."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.replace(" ", "")
        self.last_step = 0

    def now(self) -> str:
        """The code the app shows right now (may repeat: for replay tests)."""
        return pyotp.TOTP(self.secret).now()

    async def code(self) -> str:
        while True:
            current = time_step(time.time())
            step = max(self.last_step + 1, current - 1)
            if step <= current + 1:
                self.last_step = step
                return code_for_step(self.secret, step)
            await asyncio.sleep(STEP_SECONDS - time.time() % STEP_SECONDS + 0.2)


async def post_form(client: httpx.AsyncClient, page_url: str, action: str, **fields: str):
    page = await client.get(page_url)
    return await client.post(action, data={**fields, "_csrf_token": csrf_from(page.text)})


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    # Signed in already, /login redirects: any page carries the CSRF token.
    page = "/login" if (await client.get("/login")).status_code == 200 else "/password/forgot"
    return await post_form(client, page, "/login", email=email, password=password)


async def enroll(client: httpx.AsyncClient) -> tuple[Authenticator, list[str]]:
    """Set up TOTP through /account/mfa (the client's session must be fresh)."""
    page = await client.get("/account/mfa")
    assert page.status_code == 200, page.text[:300]
    match = _SECRET.search(page.text)
    assert match, "no secret on the enrollment page"
    app = Authenticator(match.group(1))
    done = await client.post(
        "/account/mfa/confirm",
        data={"code": await app.code(), "_csrf_token": csrf_from(page.text)},
    )
    assert done.status_code == 200, done.text[:500]
    codes = _CODES.findall(done.text)
    assert len(codes) == 10
    return app, codes


async def complete_mfa(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await post_form(client, "/login/mfa", "/login/mfa", code=code)


def text_of(response: httpx.Response) -> str:
    return unescape(response.text)


def random_ip() -> str:
    return "10." + ".".join(str(secrets.randbelow(254) + 1) for _ in range(3))


def browser(base_url: str, ip: str | None = None) -> httpx.AsyncClient:
    """An HTTP client that the server sees at its own address: uvicorn trusts
    ``X-Forwarded-For`` from 127.0.0.1, so failures counted per address by these tests
    never pile up on 127.0.0.1, which every test (and every other test run on this
    machine, through the shared Redis) signs in from."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=20, headers={"X-Forwarded-For": ip or random_ip()}
    )


@pytest.fixture
async def client(live_server) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(live_server.url) as c:
        yield c


@pytest.fixture
async def other_client(live_server) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(live_server.url) as c:
        yield c


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    r = Redis.from_url(TEST_REDIS_URL)
    yield r
    await r.aclose()
