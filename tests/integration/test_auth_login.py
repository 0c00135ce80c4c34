"""Sign-in over HTTP against the live server: password then TOTP, session rotation at
each step, forced enrollment for staff, SSO routing, lockout after repeated failures
(audit event + security flag, resolved from the staff console), and CSRF."""

# ruff: noqa: F811 - fixtures imported from tests.integration.conftest_auth
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx

from core.audit.tables import AuditEvent
from core.identity.security import POLICY
from core.identity.services import create_organization
from core.identity.tables import SecurityFlag, SsoConnection, User
from tests.helpers import csrf_from
from tests.integration.conftest_auth import (
    COOKIE,
    PASSWORD,
    browser,
    client,  # noqa: F401 - a fixture
    complete_mfa,
    enroll,
    new_customer,
    new_staff,
    other_client,  # noqa: F401 - a fixture
    post_form,
    random_ip,
    redis,  # noqa: F401 - a fixture
    sign_in,
    text_of,
)

NO_MATCH = "That email and password do not match an active account."


async def _with_cookie(live_url: str, sid: str, path: str) -> httpx.Response:
    async with browser(live_url) as c:
        c.cookies.set(COOKIE, sid, domain="127.0.0.1")
        return await c.get(path)


async def test_password_only_customer_signs_in_and_the_old_session_id_dies(
    demo_db, client, live_server
) -> None:
    email = await new_customer()
    # A session id planted before sign-in (fixation) is never adopted.
    client.cookies.set(COOKIE, "planted-by-an-attacker", domain="127.0.0.1")
    response = await sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    first = client.cookies[COOKIE]
    assert first != "planted-by-an-attacker"
    assert (await client.get("/")).status_code == 200

    # Signing in again issues a new id; the one from before no longer works.
    response = await sign_in(client, email)
    assert response.status_code == 303
    second = client.cookies[COOKIE]
    assert second != first
    stale = await _with_cookie(live_server.url, first, "/")
    assert stale.status_code == 302
    assert stale.headers["location"].startswith("/login")
    assert (await _with_cookie(live_server.url, second, "/")).status_code == 200


async def test_totp_sign_in_rotates_the_session_at_the_second_factor(
    demo_db, client, other_client, live_server
) -> None:
    email = await new_customer()
    assert (await sign_in(client, email)).status_code == 303
    app, _ = await enroll(client)

    response = await sign_in(other_client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/login/mfa"
    partial = other_client.cookies[COOKIE]
    # Half signed in: every page sends you back to finish.
    blocked = await other_client.get("/invoices")
    assert blocked.headers["location"] == "/login/continue"
    assert (await other_client.get("/login/continue")).headers["location"] == "/login/mfa"
    assert (await other_client.get("/account")).headers["location"] == "/login/continue"

    wrong = await complete_mfa(other_client, "000000" if app.now() != "000000" else "111111")
    assert wrong.status_code == 400
    assert 'aria-invalid="true"' in wrong.text
    assert "field-error" in wrong.text

    done = await complete_mfa(other_client, await app.code())
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    full = other_client.cookies[COOKIE]
    assert full != partial
    assert (await other_client.get("/invoices")).status_code == 200
    gone = await _with_cookie(live_server.url, partial, "/login/mfa")
    assert gone.headers["location"] == "/login"  # the pre-MFA id is dead

    user = await User.select(User.id).where(User.email == email).first()
    actions = [
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action)
        .where((AuditEvent.object_type == "user") & (AuditEvent.object_id == str(user["id"])))
        .order_by(AuditEvent.id)
    ]
    assert actions[-3:] == ["login.password_accepted", "login.mfa_failed", "login.succeeded"]


async def test_a_used_code_is_refused_at_sign_in(demo_db, client, other_client) -> None:
    email = await new_customer()
    await sign_in(client, email)
    app, _ = await enroll(client)
    code = await app.code()

    await sign_in(other_client, email)
    assert (await complete_mfa(other_client, code)).status_code == 303
    other_client.cookies.clear()
    await sign_in(other_client, email)
    replay = await complete_mfa(other_client, code)
    assert replay.status_code == 400
    assert "already used" in text_of(replay)


async def test_a_recovery_code_works_once(demo_db, client, other_client) -> None:
    email = await new_customer()
    await sign_in(client, email)
    _, codes = await enroll(client)

    await sign_in(other_client, email)
    used = await complete_mfa(other_client, codes[0].upper().replace("-", " "))
    assert used.status_code == 303
    assert used.headers["location"] == "/account?notice=recovery-code-used"
    page = await other_client.get("/account")
    assert "9 unused recovery codes" in page.text

    other_client.cookies.clear()
    await sign_in(other_client, email)
    assert (await complete_mfa(other_client, codes[0])).status_code == 400
    assert (await complete_mfa(other_client, codes[1])).status_code == 303


async def test_staff_must_enroll_before_anything_else(demo_db, client) -> None:
    email = await new_staff()
    response = await sign_in(client, email)
    assert response.headers["location"] == "/account/mfa"
    enrolling = client.cookies[COOKIE]
    for path in ("/staff", "/account", "/"):
        assert (await client.get(path)).headers["location"] == "/login/continue", path
    assert (await client.get("/login/continue")).headers["location"] == "/account/mfa"
    page = await client.get("/account/mfa")
    assert "Staff accounts must use two-step verification" in page.text
    assert 'src="data:image/svg+xml' in page.text

    app, _codes = await enroll(client)
    assert client.cookies[COOKIE] != enrolling  # rotated at the privilege change
    assert (await client.get("/staff")).status_code == 200

    client.cookies.clear()
    response = await sign_in(client, email)
    assert response.headers["location"] == "/login/mfa"
    assert (await complete_mfa(client, await app.code())).headers["location"] == "/staff"


async def test_sso_domains_go_to_the_provider(demo_db, client) -> None:
    domain = f"sso-{uuid.uuid4().hex[:8]}.example"
    required_domain = f"sso-req-{uuid.uuid4().hex[:8]}.example"
    for name, d, required in (("Optional SSO", domain, False), ("SSO only", required_domain, True)):
        org = await create_organization(name=f"{name} {uuid.uuid4().hex[:6]}")
        await SsoConnection.insert(
            SsoConnection(
                organization=org,
                issuer=f"https://idp.{d}",
                client_id="ledgerline",
                client_secret_enc="not-used-here",
                allowed_domains=d,
                sso_required=required,
                updated_at=datetime.now(UTC),
            )
        )
    optional_user = await new_customer(email=f"pat@{domain}")

    empty = await post_form(client, "/login", "/login", email=optional_user, password="")
    assert empty.status_code == 303
    assert empty.headers["location"] == f"/sso/start?email=pat%40{domain}"
    with_password = await sign_in(client, optional_user)
    assert with_password.headers["location"] == "/"  # password login still allowed

    client.cookies.clear()
    required = await post_form(
        client, "/login", "/login", email=f"kim@{required_domain}", password="anything at all"
    )
    assert required.status_code == 303
    assert required.headers["location"] == f"/sso/start?email=kim%40{required_domain}"
    # The password was never checked: no sign-in attempt was audited for that address.
    failed = await AuditEvent.select(AuditEvent.data).where(AuditEvent.action == "login.failed")
    assert not [e for e in failed if f"kim@{required_domain}" in str(e["data"])]


async def test_empty_fields_get_field_errors(client) -> None:
    response = await post_form(client, "/login", "/login", email="", password="")
    assert response.status_code == 400
    assert 'id="email-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    response = await post_form(
        client, "/login", "/login", email="nobody@auth-tests.example", password=""
    )
    assert response.status_code == 400
    assert 'id="password-error"' in response.text


async def test_lockout_after_five_failures_is_audited_flagged_and_resolvable(
    demo_db, client, other_client
) -> None:
    email = await new_customer()
    for _ in range(4):
        response = await sign_in(client, email, "wrong password, try again")
        assert response.status_code == 400
        assert NO_MATCH in text_of(response)
        assert "try again later" not in text_of(response)
    fifth = await sign_in(client, email, "wrong password, try again")
    assert fifth.status_code == 429
    assert NO_MATCH in text_of(fifth)
    assert "try again later" in text_of(fifth)
    # Locked: even the right password is refused, with the same message.
    right = await sign_in(client, email, PASSWORD)
    assert right.status_code == 429
    assert NO_MATCH in text_of(right)
    assert "try again later" in text_of(right)
    assert COOKIE not in client.cookies

    locked = await AuditEvent.select().where(
        (AuditEvent.action == "login.locked") & (AuditEvent.object_id == email)
    )
    assert len(locked) == 1
    assert locked[0]["ip"] == client.headers["x-forwarded-for"]
    refused = await AuditEvent.select(AuditEvent.data).where(AuditEvent.action == "login.failed")
    assert any(email in str(e["data"]) and "locked" in str(e["data"]) for e in refused)
    flag = (
        await SecurityFlag.select()
        .where((SecurityFlag.kind == "lockout") & (SecurityFlag.subject == email))
        .first()
    )
    assert flag is not None
    assert flag["resolved_at"] is None
    assert flag["count"] == 5

    # A staff member sees the flag on the console and resolves it (audited).
    staff = await new_staff()
    await sign_in(other_client, staff)
    await enroll(other_client)
    console = await other_client.get("/staff")
    assert console.status_code == 200
    assert email in console.text
    assert "Account locked after consecutive failures" in console.text
    resolved = await other_client.post(
        f"/staff/security-flags/{flag['id']}/resolve",
        data={"_csrf_token": csrf_from(console.text)},
    )
    assert resolved.status_code == 303
    row = await SecurityFlag.select().where(SecurityFlag.id == flag["id"]).first()
    assert row["resolved_at"] is not None
    assert row["resolved_by"] is not None
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "security.flag_resolved") & (AuditEvent.object_id == str(flag["id"]))
    )
    # Unknown flag: a 404 page, nothing changed.
    missing = await other_client.post(
        "/staff/security-flags/999999999/resolve", data={"_csrf_token": csrf_from(console.text)}
    )
    assert missing.status_code == 404


async def test_unknown_emails_lock_the_same_way(client) -> None:
    email = f"ghost-{uuid.uuid4().hex[:8]}@auth-tests.example"
    statuses = [(await sign_in(client, email, "whatever it is")).status_code for _ in range(6)]
    assert statuses == [400, 400, 400, 400, 429, 429]


async def test_wrong_codes_lock_the_account_and_end_the_half_session(
    demo_db, client, other_client
) -> None:
    email = await new_customer()
    await sign_in(client, email)
    app, _ = await enroll(client)
    await sign_in(other_client, email)
    bad = "000000" if app.now() != "000000" else "111111"
    statuses = [(await complete_mfa(other_client, bad)).status_code for _ in range(4)]
    assert statuses == [400] * 4
    last = await complete_mfa(other_client, bad)
    assert last.status_code == 429
    assert "try again later" in text_of(last)
    assert COOKIE not in other_client.cookies
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "login.locked") & (AuditEvent.object_id == email)
    )
    assert await AuditEvent.count().where(AuditEvent.action == "login.mfa_failed") >= 5
    kinds = {
        f["kind"]
        for f in await SecurityFlag.select(SecurityFlag.kind).where(SecurityFlag.subject == email)
    }
    assert kinds == {"lockout", "mfa_failures"}
    # The password is right, but the account is locked for now.
    assert (await sign_in(other_client, email)).status_code == 429


async def test_posts_without_a_csrf_token_are_refused(demo_db, client, other_client) -> None:
    email = await new_customer()
    await client.get("/login")
    refused = await client.post("/login", data={"email": email, "password": PASSWORD})
    assert refused.status_code == 403
    assert COOKIE not in client.cookies

    await sign_in(client, email)
    await sign_in(other_client, email)
    for path in ("/account/sessions/end-others", "/account/password", "/logout"):
        assert (await client.post(path, data={})).status_code == 403, path
    assert (await other_client.get("/")).status_code == 200  # nothing was signed out
    assert (await client.get("/")).status_code == 200


async def test_many_failures_from_one_address_flag_it_then_refuse_it(
    demo_db, live_server, redis
) -> None:
    ip = random_ip()
    email = await new_customer()
    async with browser(live_server.url, ip) as c:
        for _ in range(POLICY.ip_flag_at):  # distinct accounts: no lockout, one address
            ghost = f"ghost-{uuid.uuid4().hex[:8]}@auth-tests.example"
            assert (await sign_in(c, ghost, "some guess or other")).status_code == 400
        flag = (
            await SecurityFlag.select()
            .where((SecurityFlag.kind == "login_failures_ip") & (SecurityFlag.subject == ip))
            .first()
        )
        assert flag is not None
        assert flag["count"] == POLICY.ip_flag_at
        assert (await sign_in(c, email)).status_code == 303  # flagged, not refused
        c.cookies.clear()

        # Up to the refusal threshold (counted in the real Redis window), then refused
        # even with the right password; other addresses are unaffected.
        now = time.time()
        await redis.zadd(
            f"ll:auth:window:ip:{ip}",
            {f"{now}:{i}": now for i in range(POLICY.ip_block_at - POLICY.ip_flag_at)},
        )
        refused = await sign_in(c, email)
        assert refused.status_code == 429
        assert "Too many sign-in attempts from your network" in text_of(refused)
        assert COOKIE not in c.cookies
    async with browser(live_server.url) as elsewhere:
        assert (await sign_in(elsewhere, email)).status_code == 303
    row = await SecurityFlag.select().where(SecurityFlag.id == flag["id"]).first()
    assert row["count"] == POLICY.ip_flag_at  # refusals are not counted as failures


async def test_odd_input_never_breaks_the_auth_pages(demo_db, client) -> None:
    email = await new_customer()
    page = await client.get("/login")
    token = csrf_from(page.text)
    odd_forms = [
        {"email": "a" * 5000, "password": "b" * 5000},
        {"email": "\x00\x01", "password": "x\x00y"},
        {"email": email, "password": PASSWORD, "next": "//evil.example/steal"},
        {"email": "🙂@🙂.example", "password": "🙂" * 20},
    ]
    for form in odd_forms:
        response = await client.post("/login", data={**form, "_csrf_token": token})
        assert response.status_code in (303, 400, 429), (form, response.status_code)
        if response.status_code == 303:
            assert not response.headers["location"].startswith("//")
        client.cookies.delete(COOKIE)
    weird = [
        ("/login", "email=a&email=b&password=x&password=y"),
        ("/login", "%ZZ%%="),
        ("/password/forgot", "email=" + "x" * 10000),
        ("/password/reset/abc", "new_password=x"),
        ("/password/reset/" + "a" * 60, "new_password=long%20enough%20pass&confirm_password=z"),
        ("/login/mfa", "code=123456"),
    ]
    for path, body in weird:
        response = await client.post(
            path,
            content=body + f"&_csrf_token={token}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code < 500, (path, response.status_code)
    for path in (
        "/password/reset/%F0%9F%99%82",
        "/login?next=%00",
        "/login/mfa?next=//x",
        "/account/mfa?replace=maybe",
        "/staff/security-flags/1/resolve",
    ):
        assert (await client.get(path)).status_code < 500, path
    assert (await client.post("/staff/security-flags/abc/resolve")).status_code < 500
