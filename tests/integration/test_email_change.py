"""/account email address change over HTTP, through the real SMTP mailbox and Redis:
fresh re-authentication and the current password first, a confirmation link to the new
address and a notice to the old one, a single-use link whose GET changes nothing, and
the sign-in that follows the new address."""

# ruff: noqa: F811 - fixtures imported from tests.integration.conftest_auth
from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx

from core import crypto
from core.audit.tables import AuditEvent
from core.identity.tables import ExternalIdentity, User
from portal.app import redis_namespace
from tests.conftest import live_database_url
from tests.helpers import csrf_from
from tests.integration.conftest_auth import (
    COOKIE,
    PASSWORD,
    browser,
    client,  # noqa: F401 - a fixture
    new_customer,
    new_staff,
    other_client,  # noqa: F401 - a fixture
    post_form,
    redis,  # noqa: F401 - a fixture
    sign_in,
    text_of,
    unique_email,
)
from tests.integration.test_account_security import _make_stale

_LINK = re.compile(r"(https?://\S+)?(/account/email/confirm/([A-Za-z0-9_\-]+))")


async def _request_change(
    client: httpx.AsyncClient, new_email: str, password: str = PASSWORD
) -> httpx.Response:
    return await post_form(
        client, "/account", "/account/email", new_email=new_email, email_password=password
    )


async def _mail_to(mailbox, address: str, count: int = 1) -> list[EmailMessage]:
    for _ in range(100):
        messages = mailbox.to(address)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} email(s) to {address}, got {len(messages)}")


async def _confirm_path(mailbox, new_email: str, count: int = 1) -> str:
    message = (await _mail_to(mailbox, new_email, count))[-1]
    assert message["Subject"] == "Confirm your new Ledgerline email address"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    match = _LINK.search(text)
    assert match, text
    assert match.group(1), "the link is absolute (BASE_URL)"
    assert match.group(2) in html
    return match.group(2)


async def _user_id(email: str) -> int:
    row = await User.select(User.id).where(User.email == email).first()
    assert row is not None, f"no user with {email}"
    return int(row["id"])


def _redis_key(path: str) -> str:
    token = path.rsplit("/", 1)[1]
    return f"{redis_namespace(live_database_url())}:email-change:{crypto.token_hash(token)}"


async def test_change_email_end_to_end(demo_db, client, other_client, mailbox, redis) -> None:
    old = await new_customer()
    user_id = await _user_id(old)
    new = unique_email("moved")
    await sign_in(client, old)
    await sign_in(other_client, old)
    before = client.cookies[COOKIE]

    page = await client.get("/account")
    assert 'id="email-h"' in page.text
    assert 'name="new_email"' in page.text
    requested = await _request_change(client, new.upper())  # normalized
    assert requested.status_code == 303
    assert requested.headers["location"] == "/account?notice=email-sent"
    page = await client.get(requested.headers["location"])
    assert "We sent a confirmation link" in page.text
    assert f"A change to {new} is waiting" in text_of(page)

    path = await _confirm_path(mailbox, new)
    assert 3500 <= await redis.ttl(_redis_key(path)) <= 3600  # one hour
    notice = (await _mail_to(mailbox, old))[0]
    assert notice["Subject"] == "Your Ledgerline email address is being changed"
    body = notice.get_body(preferencelist=("plain",)).get_content()
    assert new in body
    assert "reset your password" in body
    assert "/password/forgot" in body
    assert "/account/email/confirm/" not in body  # the link goes to the new address only

    # GET shows the confirmation page and changes nothing, however often.
    for _ in range(2):
        form = await client.get(path)
        assert form.status_code == 200
        assert form.headers["cache-control"] == "no-store"
        assert f'data-testid="email-new">{new}<' in form.text
    assert await _user_id(old) == user_id
    assert (await other_client.get("/")).status_code == 200

    done = await client.post(path, data={"_csrf_token": csrf_from(form.text)})
    assert done.status_code == 200, done.text[:500]
    assert 'data-testid="email-changed"' in done.text
    assert client.cookies[COOKIE] != before  # this session continues under a new id
    account = await client.get("/account")
    assert account.status_code == 200
    assert f'data-testid="account-email">{new}<' in account.text
    assert "is waiting" not in account.text
    assert (await other_client.get("/")).headers["location"].startswith("/login")  # ended

    row = await User.select(User.email).where(User.id == user_id).first()
    assert row["email"] == new
    other_client.cookies.clear()
    assert (await sign_in(other_client, old)).status_code == 400
    assert (await sign_in(other_client, new)).status_code == 303

    changed = (
        await AuditEvent.select(AuditEvent.data)
        .where(
            (AuditEvent.action == "account.email_changed") & (AuditEvent.object_id == str(user_id))
        )
        .first()
    )
    assert changed is not None
    data = json.loads(changed["data"]) if isinstance(changed["data"], str) else changed["data"]
    assert (data["old_email"], data["new_email"]) == (old, new)
    actions = {
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action).where(
            AuditEvent.object_id == str(user_id)
        )
    }
    assert {"account.email_change_requested", "sessions.signed_out_others"} <= actions


async def test_stale_session_must_reauthenticate_first(demo_db, client, redis, mailbox) -> None:
    old = await new_customer()
    new = unique_email("stale")
    await sign_in(client, old)
    await _make_stale(redis, client)

    page = await client.get("/account")
    assert 'name="new_email"' not in page.text
    assert "/account/reauth?next=/account%23email" in page.text
    attempt = await client.post(
        "/account/email",
        data={"new_email": new, "email_password": PASSWORD, "_csrf_token": csrf_from(page.text)},
    )
    assert attempt.status_code == 303
    assert attempt.headers["location"] == "/account/reauth?next=/account%23email"

    good = await post_form(
        client, "/account/reauth", "/account/reauth", password=PASSWORD, next="/account#email"
    )
    assert good.headers["location"] == "/account#email"
    assert 'name="new_email"' in (await client.get("/account")).text
    await asyncio.sleep(0.3)
    assert mailbox.to(new) == []
    assert mailbox.to(old) == []
    assert await User.exists().where(User.email == old)


async def test_wrong_password_and_bad_addresses_are_field_errors(demo_db, client, mailbox) -> None:
    old = await new_customer()
    new = unique_email("wrongpw")
    await sign_in(client, old)

    wrong = await _request_change(client, new, password="not my password at all")
    assert wrong.status_code == 400
    assert 'id="email_password-error"' in wrong.text
    assert "That is not your current password." in text_of(wrong)
    assert f'value="{new}"' in wrong.text  # the address is kept for another try
    assert 'id="current_password-error"' not in wrong.text  # the password form is untouched

    for bad, message in (
        ("", "Enter your new email address."),
        ("not-an-email", "Enter a valid email address"),
        ("a@b", "Enter a valid email address"),
        (old.upper(), "This is already your email address."),
    ):
        response = await _request_change(client, bad)
        assert response.status_code == 400, bad
        assert 'id="new_email-error"' in response.text
        assert message in text_of(response)
    await asyncio.sleep(0.3)
    assert mailbox.messages == []
    user_id = await _user_id(old)
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "account.email_change_failed")
        & (AuditEvent.object_id == str(user_id))
    )


async def test_an_address_in_use_is_refused_without_mail(demo_db, client, mailbox) -> None:
    old = await new_customer()
    customer = await new_customer()
    staff = await new_staff()
    await sign_in(client, old)
    for taken in (customer, staff, staff.upper()):
        response = await _request_change(client, taken)
        assert response.status_code == 400
        assert 'id="new_email-error"' in response.text
        assert "This email address is already in use." in text_of(response)
        assert "staff" not in text_of(response).split('id="new_email-error"')[1][:120]
    await asyncio.sleep(0.3)
    assert mailbox.messages == []


async def test_the_link_works_once(demo_db, client, mailbox) -> None:
    old = await new_customer()
    new = unique_email("once")
    await sign_in(client, old)
    await _request_change(client, new)
    path = await _confirm_path(mailbox, new)
    form = await client.get(path)
    token = csrf_from(form.text)
    assert (await client.post(path, data={"_csrf_token": token})).status_code == 200

    again = await client.get(path)
    assert again.status_code == 410
    assert 'data-testid="email-link-invalid"' in again.text
    reuse = await client.post(path, data={"_csrf_token": token})
    assert reuse.status_code == 410
    assert 'data-testid="email-link-invalid"' in reuse.text
    assert await User.exists().where(User.email == new)


async def test_an_expired_or_unknown_link_changes_nothing(demo_db, client, mailbox, redis) -> None:
    old = await new_customer()
    new = unique_email("expired")
    await sign_in(client, old)
    await _request_change(client, new)
    path = await _confirm_path(mailbox, new)
    form = await client.get(path)
    assert form.status_code == 200

    assert await redis.delete(_redis_key(path)) == 1  # what the hour's TTL does
    expired = await client.get(path)
    assert expired.status_code == 410
    assert "This link no longer works" in expired.text
    post = await client.post(path, data={"_csrf_token": csrf_from(form.text)})
    assert post.status_code == 410
    assert await User.exists().where(User.email == old)
    assert not await User.exists().where(User.email == new)

    for junk in ("x", "a" * 300, "%00%01", "not a token at all"):
        response = await client.get(f"/account/email/confirm/{junk}")
        assert response.status_code in (400, 404, 410), junk
    unknown = await client.get("/account/email/confirm/" + crypto.new_token())
    assert unknown.status_code == 410


async def test_a_newer_request_or_a_password_change_cancels_the_link(
    demo_db, client, mailbox
) -> None:
    old = await new_customer()
    first, second = unique_email("first"), unique_email("second")
    await sign_in(client, old)
    await _request_change(client, first)
    first_path = await _confirm_path(mailbox, first)
    await _request_change(client, second)
    second_path = await _confirm_path(mailbox, second)
    assert (await client.get(first_path)).status_code == 410
    assert (await client.get(second_path)).status_code == 200

    # The old address was told; its owner changes the password: the link dies.
    changed = await post_form(
        client,
        "/account",
        "/account/password",
        current_password=PASSWORD,
        new_password="a brand new passphrase",
        confirm_password="a brand new passphrase",
    )
    assert changed.status_code == 303
    form = await client.get(second_path)
    refused = await client.post(second_path, data={"_csrf_token": csrf_from(form.text)})
    assert refused.status_code == 410
    assert await User.exists().where(User.email == old)


async def test_link_opened_elsewhere_and_address_taken_meanwhile(
    demo_db, client, mailbox, live_server
) -> None:
    old = await new_customer()
    new, raced = unique_email("elsewhere"), unique_email("raced")
    await sign_in(client, old)
    await _request_change(client, new)
    path = await _confirm_path(mailbox, new)

    # Opened in a browser that is not signed in: every session of the account ends.
    async with browser(live_server.url) as phone:
        form = await phone.get(path)
        done = await phone.post(path, data={"_csrf_token": csrf_from(form.text)})
        assert done.status_code == 200
        assert 'href="/login"' in done.text
        assert COOKIE not in phone.cookies
    assert (await client.get("/")).headers["location"].startswith("/login")

    # Someone takes the address between the request and the confirmation.
    client.cookies.clear()
    await sign_in(client, new)
    await _request_change(client, raced)
    path = await _confirm_path(mailbox, raced)
    form = await client.get(path)
    await new_customer(email=raced)
    taken = await client.post(path, data={"_csrf_token": csrf_from(form.text)})
    assert taken.status_code == 409
    assert 'data-testid="email-taken"' in taken.text
    assert await User.exists().where(User.email == new)
    assert (await client.get("/account")).status_code == 200  # nothing else happened


async def test_sso_managed_users_cannot_change_their_email(demo_db, client, mailbox) -> None:
    email = await new_customer()
    user_id = await _user_id(email)
    await ExternalIdentity.insert(
        ExternalIdentity(
            issuer="https://idp.example",
            subject=f"sub-{user_id}",
            user=user_id,
            email_at_login=email,
            created_at=datetime.now(UTC),
        )
    )
    await sign_in(client, email)
    page = await client.get("/account")
    assert 'data-testid="email-sso-managed"' in page.text
    assert "identity provider manages your email address" in text_of(page)
    assert 'name="new_email"' not in page.text
    refused = await post_form(
        client,
        "/account",
        "/account/email",
        new_email=unique_email("sso"),
        email_password=PASSWORD,
    )
    assert refused.status_code == 403
    await asyncio.sleep(0.3)
    assert mailbox.messages == []
    assert await User.exists().where(User.email == email)
