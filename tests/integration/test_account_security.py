"""/account over HTTP: password change (current password, fresh re-authentication),
re-authentication by password or TOTP code, MFA management, the active-sessions list
with per-session and "other sessions" sign-out, and password reset through the real
SMTP mailbox."""

# ruff: noqa: F811 - fixtures imported from tests.integration.conftest_auth
from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.audit.tables import AuditEvent
from core.identity.tables import PasswordResetToken, User
from portal.account.pages import session_handle
from portal.app import redis_namespace
from portal.sessions import SessionStore
from tests.helpers import csrf_from
from tests.integration.conftest_auth import (
    COOKIE,
    PASSWORD,
    Authenticator,
    browser,
    client,  # noqa: F401 - a fixture
    complete_mfa,
    enroll,
    new_customer,
    other_client,  # noqa: F401 - a fixture
    post_form,
    redis,  # noqa: F401 - a fixture
    sign_in,
    text_of,
)

NEW_PASSWORD = "a brand new passphrase"
_SECRET = re.compile(r'data-testid="totp-secret">([A-Z2-7 ]+)<')
_HANDLE = re.compile(r'name="session" value="([0-9a-f]{24})"')
_LINK = re.compile(r"(https?://\S+)?(/password/reset/[A-Za-z0-9_\-]+)")


async def _make_stale(redis, client: httpx.AsyncClient) -> None:
    """Age the session's last proof of identity past the five minutes."""
    from tests.conftest import live_database_url

    store = SessionStore(
        redis,
        idle_seconds=1800,
        absolute_seconds=43200,
        namespace=redis_namespace(live_database_url()),
    )
    session = await store.load(client.cookies[COOKIE])
    assert session is not None
    await store.update(session, reauth_at=time.time() - 600)


async def test_change_password_needs_the_current_one_and_signs_out_other_sessions(
    demo_db, client, other_client
) -> None:
    email = await new_customer()
    await sign_in(client, email)
    await sign_in(other_client, email)
    before = client.cookies[COOKIE]

    wrong = await post_form(
        client,
        "/account",
        "/account/password",
        current_password="not my password at all",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert wrong.status_code == 400
    assert 'id="current_password-error"' in wrong.text
    assert "That is not your current password." in text_of(wrong)

    short = await post_form(
        client,
        "/account",
        "/account/password",
        current_password=PASSWORD,
        new_password="too short",
        confirm_password="too short",
    )
    assert short.status_code == 400
    assert "Use at least 12 characters." in short.text
    mismatch = await post_form(
        client,
        "/account",
        "/account/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD + "!",
    )
    assert mismatch.status_code == 400
    assert 'id="confirm_password-error"' in mismatch.text

    changed = await post_form(
        client,
        "/account",
        "/account/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/account?notice=password-changed"
    assert client.cookies[COOKIE] != before  # rotated
    assert (await client.get("/account")).status_code == 200
    assert (await other_client.get("/")).headers["location"].startswith("/login")

    other_client.cookies.clear()
    assert (await sign_in(other_client, email, PASSWORD)).status_code == 400
    assert (await sign_in(other_client, email, NEW_PASSWORD)).status_code == 303
    user = await User.select(User.id).where(User.email == email).first()
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "password.changed") & (AuditEvent.object_id == str(user["id"]))
    )


async def test_stale_sessions_must_reauthenticate_first(
    demo_db, client, other_client, redis
) -> None:
    email = await new_customer()
    await sign_in(client, email)
    await _make_stale(redis, client)

    page = await client.get("/account")
    assert "Confirm it&#39;s you" in page.text or "Confirm it's you" in page.text
    assert 'name="new_password"' not in page.text
    attempt = await client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
            "_csrf_token": csrf_from(page.text),
        },
    )
    assert attempt.status_code == 303
    assert attempt.headers["location"] == "/account/reauth?next=/account%23password"
    assert (await client.get("/account/mfa")).headers["location"].startswith("/account/reauth")

    bad = await post_form(
        client, "/account/reauth", "/account/reauth", password="wrong password!!", next="/account"
    )
    assert bad.status_code == 400
    assert 'id="password-error"' in bad.text
    good = await post_form(
        client, "/account/reauth", "/account/reauth", password=PASSWORD, next="/account#password"
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/account#password"
    assert 'name="new_password"' in (await client.get("/account")).text
    # Nothing changed on the way.
    assert (await sign_in(other_client, email, PASSWORD)).status_code == 303


async def test_reauth_with_a_totp_code_and_mfa_management(demo_db, client, redis) -> None:
    email = await new_customer()
    await sign_in(client, email)
    app, _ = await enroll(client)
    await _make_stale(redis, client)

    page = await client.get("/account/mfa")
    assert "Two-step verification is on" in page.text
    regenerate = await client.post(
        "/account/mfa/recovery-codes", data={"_csrf_token": csrf_from(page.text)}
    )
    assert regenerate.headers["location"] == "/account/reauth?next=/account/mfa"

    reauth = await post_form(
        client, "/account/reauth", "/account/reauth", code=await app.code(), next="/account/mfa"
    )
    assert reauth.status_code == 303
    assert reauth.headers["location"] == "/account/mfa"
    page = await client.get("/account/mfa")
    fresh_codes = await client.post(
        "/account/mfa/recovery-codes", data={"_csrf_token": csrf_from(page.text)}
    )
    assert fresh_codes.status_code == 200
    assert fresh_codes.headers["cache-control"] == "no-store"
    assert len(re.findall(r"<li><code>", fresh_codes.text)) == 10

    off = await client.post("/account/mfa/disable", data={"_csrf_token": csrf_from(page.text)})
    assert off.status_code == 303
    assert off.headers["location"] == "/account?notice=mfa-off"
    assert "Off." in (await client.get("/account")).text
    client.cookies.clear()
    assert (await sign_in(client, email)).headers["location"] == "/"  # no code needed now
    user = await User.select(User.id).where(User.email == email).first()
    actions = {
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action).where(
            AuditEvent.object_id == str(user["id"])
        )
    }
    assert {
        "mfa.enrolled",
        "reauth.succeeded",
        "mfa.recovery_codes_regenerated",
        "mfa.disabled",
    } <= actions


async def test_enrollment_refuses_a_wrong_code_with_a_field_error(demo_db, client) -> None:
    email = await new_customer()
    await sign_in(client, email)
    page = await client.get("/account/mfa")
    again = await client.get("/account/mfa")
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page.text).group(1)
    assert secret in again.text  # reloading keeps the same pending secret
    for code, message in (("", "Enter the 6-digit code"), ("12ab", "Enter the 6-digit code")):
        bad = await client.post(
            "/account/mfa/confirm", data={"code": code, "_csrf_token": csrf_from(page.text)}
        )
        assert bad.status_code == 400
        assert message in bad.text
        assert 'aria-invalid="true"' in bad.text
    assert "Off." in (await client.get("/account")).text


async def test_sessions_list_and_sign_out(demo_db, client, other_client, live_server) -> None:
    email = await new_customer()
    someone_else = await new_customer()
    await sign_in(client, email)
    await sign_in(other_client, email)
    async with browser(live_server.url) as third:
        await sign_in(third, email)
        async with browser(live_server.url) as stranger:
            await sign_in(stranger, someone_else)
            stranger_handle = session_handle(stranger.cookies[COOKIE])
            mine = session_handle(client.cookies[COOKIE])
            ours = {session_handle(c.cookies[COOKIE]) for c in (client, other_client, third)}

            page = await client.get("/account")
            assert page.text.count('data-testid="this-session"') == 1
            assert re.search(r'data-testid="this-session".*?value="' + mine, page.text, re.S)
            handles = _HANDLE.findall(page.text)
            # (<=, not ==: the shared test Redis may still hold sessions of an earlier
            # run's user with the same id; see the note on SessionStore namespacing.)
            assert ours <= set(handles)
            assert stranger_handle not in handles
            assert client.cookies[COOKIE] not in page.text  # ids never shown

            # Another user's session cannot be ended from here.
            foreign = await client.post(
                "/account/sessions/end",
                data={"session": stranger_handle, "_csrf_token": csrf_from(page.text)},
            )
            assert foreign.headers["location"] == "/account?notice=session-gone"
            assert (await stranger.get("/")).status_code == 200

            # End one session (the third client's), then all the others.
            ended = await client.post(
                "/account/sessions/end",
                data={
                    "session": session_handle(third.cookies[COOKIE]),
                    "_csrf_token": csrf_from(page.text),
                },
            )
            assert ended.headers["location"] == "/account?notice=session-ended"
            alive = [(await c.get("/")).status_code == 200 for c in (client, other_client, third)]
            assert alive == [True, True, False]

            page = await client.get("/account")
            others = await client.post(
                "/account/sessions/end-others", data={"_csrf_token": csrf_from(page.text)}
            )
            assert others.headers["location"] == "/account?notice=others-ended"
            assert (await client.get("/")).status_code == 200
            for c in (other_client, third):
                assert (await c.get("/")).headers["location"].startswith("/login")
            page = await client.get("/account")
            assert len(_HANDLE.findall(page.text)) == 1
            assert "Sign out other sessions" not in page.text

            # Ending this very session signs out.
            bye = await client.post(
                "/account/sessions/end",
                data={
                    "session": _HANDLE.findall(page.text)[0],
                    "_csrf_token": csrf_from(page.text),
                },
            )
            assert bye.headers["location"] == "/login"
            assert COOKIE not in client.cookies
    user = await User.select(User.id).where(User.email == email).first()
    assert (
        await AuditEvent.count().where(
            AuditEvent.action.is_in(["session.signed_out", "sessions.signed_out_others"])
            & (AuditEvent.object_id == str(user["id"]))
        )
        == 3
    )


async def _reset_link(mailbox, email: str) -> str:
    for _ in range(100):
        messages = mailbox.to(email)
        if messages:
            break
        await asyncio.sleep(0.1)
    assert len(messages) == 1, f"expected one reset email to {email}"
    message = messages[0]
    assert message["Subject"] == "Reset your Ledgerline password"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    match = _LINK.search(text)
    assert match
    assert match.group(2) in html
    return match.group(2)


async def test_password_reset_end_to_end(demo_db, client, other_client, mailbox) -> None:
    email = await new_customer()
    await sign_in(other_client, email)  # a session that the reset must end
    assert (await other_client.get("/")).status_code == 200

    unknown = "nobody-here@auth-tests.example"
    answers = []
    for address in (email, unknown):
        response = await post_form(client, "/password/forgot", "/password/forgot", email=address)
        assert response.status_code == 200
        answers.append(response.text.replace(address, "ADDRESS"))
    assert _strip_tokens(answers[0]) == _strip_tokens(answers[1])  # same answer either way

    path = await _reset_link(mailbox, email)
    await asyncio.sleep(0.5)
    assert mailbox.to(unknown) == []

    form = await client.get(path)
    assert form.status_code == 200
    assert 'name="new_password"' in form.text
    token = csrf_from(form.text)
    short = await client.post(
        path,
        data={"new_password": "short", "confirm_password": "short", "_csrf_token": token},
    )
    assert short.status_code == 400
    assert 'id="new_password-error"' in short.text
    mismatch = await client.post(
        path,
        data={
            "new_password": NEW_PASSWORD,
            "confirm_password": "something else entirely",
            "_csrf_token": token,
        },
    )
    assert mismatch.status_code == 400
    assert 'id="confirm_password-error"' in mismatch.text
    done = await client.post(
        path,
        data={"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "_csrf_token": token},
    )
    assert done.status_code == 200
    assert 'data-testid="reset-done"' in done.text

    assert (await other_client.get("/")).headers["location"].startswith("/login")  # signed out
    again = await client.get(path)
    assert again.status_code == 400
    assert "no longer works" in again.text
    reuse = await client.post(
        path,
        data={
            "new_password": "yet another passphrase",
            "confirm_password": "yet another passphrase",
            "_csrf_token": token,
        },
    )
    assert reuse.status_code == 400
    assert (await sign_in(client, email, PASSWORD)).status_code == 400
    assert (await sign_in(client, email, NEW_PASSWORD)).status_code == 303

    user = await User.select(User.id).where(User.email == email).first()
    actions = [
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action)
        .where(AuditEvent.object_id == str(user["id"]))
        .order_by(AuditEvent.id)
    ]
    assert "password.reset_requested" in actions
    assert "password.reset" in actions
    assert "sessions.signed_out_all" in actions


def _strip_tokens(html: str) -> str:
    return re.sub(r'value="[^"]*"|"x-csrftoken": "[^"]*"', "", html)


async def test_expired_and_garbage_reset_links(demo_db, client, mailbox) -> None:
    email = await new_customer()
    await post_form(client, "/password/forgot", "/password/forgot", email=email)
    path = await _reset_link(mailbox, email)
    user = await User.select(User.id).where(User.email == email).first()
    await PasswordResetToken.update(
        {PasswordResetToken.expires_at: datetime.now(UTC) - timedelta(minutes=1)}
    ).where(
        (PasswordResetToken.principal_kind == "customer")
        & (PasswordResetToken.principal_id == user["id"])
    )
    assert (await client.get(path)).status_code == 400
    for junk in ("x", "a" * 300, "%00%01", "../../etc/passwd"):
        response = await client.get(f"/password/reset/{junk}")
        assert response.status_code in (400, 404), junk


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b"])
async def test_forgot_password_bad_input(client, email: str) -> None:
    response = await post_form(client, "/password/forgot", "/password/forgot", email=email)
    assert response.status_code == 400
    assert 'id="email-error"' in response.text


async def test_move_to_a_new_device(demo_db, client, other_client) -> None:
    email = await new_customer()
    await sign_in(client, email)
    old_app, _ = await enroll(client)

    page = await client.get("/account/mfa?replace=true")
    assert page.status_code == 200
    assert 'name="replace" value="true"' in page.text
    new_secret = _SECRET.search(page.text).group(1)
    assert new_secret.replace(" ", "") != old_app.secret
    reload = await client.get("/account/mfa?replace=true")
    assert new_secret in reload.text  # the same new key until confirmed
    new_app = Authenticator(new_secret)

    # Until confirmed, the old device still signs in.
    await sign_in(other_client, email)
    assert (await complete_mfa(other_client, await old_app.code())).status_code == 303
    other_client.cookies.clear()

    confirmed = await client.post(
        "/account/mfa/confirm",
        data={"code": await new_app.code(), "replace": "true", "_csrf_token": csrf_from(page.text)},
    )
    assert confirmed.status_code == 200
    assert len(re.findall(r"<li><code>", confirmed.text)) == 10

    await sign_in(other_client, email)
    assert (await complete_mfa(other_client, await old_app.code())).status_code == 400
    assert (await complete_mfa(other_client, await new_app.code())).status_code == 303
