"""Changing one's email address: the pending change in Redis, the two emails, and the
confirmation link ``/account/email/confirm/{token}``.

``/account/email`` (in ``portal.account.pages``) checks the request (fresh
re-authentication, current password, a free address) and keeps the pending change here:
``<namespace>:email-change:<sha256 of token>`` holds who, the old and the new address
for an hour, and only the mailed link carries the token. A newer request replaces an
older one. Opening the link shows a confirmation page (GET changes nothing); the POST
takes the pending change out of Redis (GETDEL: single use) and makes it, then signs out
the account's other sessions and gives this browser's session a new id if it is the
account's own.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from typing import Any

import structlog
from litestar import Controller, MediaType, Request, get, post
from litestar.params import FromPath
from litestar.response import Template
from litestar.template import TemplateEngineProtocol
from redis.asyncio import Redis

from core import crypto
from core.identity.mfa import object_type
from core.identity.security import (
    EMAIL_CHANGE_TTL,
    EmailAddressTaken,
    EmailChangeInvalid,
    EmailChangeRequest,
    audit_event,
    change_email,
)
from core.notifications.mailer import mailer
from portal.auth import (
    actor_for,
    current_session,
    requires_own_session,
    sessions,
    set_session_cookie,
)

log = structlog.get_logger("ledgerline.email_change")

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
REQUESTS_PER_HOUR = 10  # per account: each one mails an address the user typed


class PendingEmailChanges:
    """Pending changes in Redis, keyed by the SHA-256 of their token."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self.ttl = int(EMAIL_CHANGE_TTL.total_seconds())

    def _key(self, digest: str) -> str:
        return f"{self.namespace}:email-change:{digest}"

    def _latest(self, kind: str, principal_id: int) -> str:
        return f"{self.namespace}:email-change-latest:{kind}:{principal_id}"

    async def allow(self, kind: str, principal_id: int) -> bool:
        """At most ``REQUESTS_PER_HOUR`` requests per account and clock hour."""
        key = (
            f"{self.namespace}:email-change-count:{kind}:{principal_id}:{int(time.time() // 3600)}"
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 3700)
            count, _ = await pipe.execute()
        return int(count) <= REQUESTS_PER_HOUR

    async def put(self, change: EmailChangeRequest) -> str:
        """Keep the change for an hour; returns the token (only ever mailed). An earlier
        pending change of the account stops working."""
        token = crypto.new_token()
        digest = crypto.token_hash(token)
        latest = self._latest(change.kind, change.principal_id)
        previous = await self.redis.get(latest)
        async with self.redis.pipeline(transaction=True) as pipe:
            if previous:
                pipe.delete(self._key(previous.decode()))
            pipe.set(self._key(digest), json.dumps(asdict(change)), ex=self.ttl)
            pipe.set(latest, digest, ex=self.ttl)
            await pipe.execute()
        return token

    @staticmethod
    def _decode(raw: bytes | str | None) -> EmailChangeRequest | None:
        if raw is None:
            return None
        try:
            return EmailChangeRequest(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    async def peek(self, token: str) -> EmailChangeRequest | None:
        if not _TOKEN.match(token):
            return None
        return self._decode(await self.redis.get(self._key(crypto.token_hash(token))))

    async def take(self, token: str) -> EmailChangeRequest | None:
        """Single use: the change is removed as it is read."""
        if not _TOKEN.match(token):
            return None
        digest = crypto.token_hash(token)
        change = self._decode(await self.redis.getdel(self._key(digest)))
        if change is not None:
            latest = self._latest(change.kind, change.principal_id)
            current = await self.redis.get(latest)
            if current is not None and current.decode() == digest:
                await self.redis.delete(latest)
        return change

    async def pending_for(self, kind: str, principal_id: int) -> str | None:
        """The new address of the account's pending change, if there is one."""
        digest = await self.redis.get(self._latest(kind, principal_id))
        if digest is None:
            return None
        change = self._decode(await self.redis.get(self._key(digest.decode())))
        return change.new_email if change else None


def pending_changes(request: Request[Any, Any, Any]) -> PendingEmailChanges:
    from portal.app import redis_namespace  # (portal.app imports this package)

    namespace = redis_namespace(request.app.state.settings.database_url)
    return PendingEmailChanges(request.app.state.redis, namespace)


async def send_email_change_mails(
    engine: TemplateEngineProtocol[Any, Any], base_url: str, change: EmailChangeRequest, token: str
) -> None:
    """The link to the new address; a notice to the old one (where the owner of the
    account reads it, should someone else have asked)."""
    context = {
        "name": change.name,
        "old_email": change.old_email,
        "new_email": change.new_email,
        "link": f"{base_url}/account/email/confirm/{token}",
        "reset_link": f"{base_url}/password/forgot",
        "minutes": int(EMAIL_CHANGE_TTL.total_seconds() // 60),
    }
    mails = (
        (change.new_email, "Confirm your new Ledgerline email address", "email_change_confirm"),
        (change.old_email, "Your Ledgerline email address is being changed", "email_change_notice"),
    )
    for to, subject, template in mails:
        try:
            text = engine.get_template(f"emails/{template}.txt").render(**context)
            html = engine.get_template(f"emails/{template}.html").render(**context)
            await mailer().send(to, subject, text, html)
        except Exception:  # the user already has their answer; log for the operators
            log.exception("email change mail failed", template=template)


class EmailConfirmController(Controller):
    """The link mailed to the new address. Works signed in or not: holding the link
    proves the new address; the request itself needed the password."""

    path = "/account/email/confirm"
    guards = [requires_own_session]  # never in an assisted session

    async def _page(
        self, request: Request[Any, Any, Any], state: str, status: int = 200, **context: Any
    ) -> Template:
        session = await current_session(request)
        return Template(
            "account/email_confirm.html",
            context={
                "user": session if session is not None and session.full else None,
                "nav": "account",
                "state": state,
                **context,
            },
            status_code=status,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )

    @get("/{token:str}", name="account_email_confirm")
    async def confirm_form(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        if not _TOKEN.match(token):
            return await self._page(request, "invalid", status=400)
        change = await pending_changes(request).peek(token)
        if change is None:
            return await self._page(request, "invalid", status=410)
        return await self._page(request, "form", token=token, new_email=change.new_email)

    @post("/{token:str}", status_code=200)
    async def confirm(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        if not _TOKEN.match(token):
            return await self._page(request, "invalid", status=400)
        change = await pending_changes(request).take(token)
        if change is None:
            return await self._page(request, "invalid", status=410)
        actor = actor_for(request)
        try:
            done = await change_email(change, actor)
        except EmailAddressTaken:
            return await self._page(request, "taken", status=409, new_email=change.new_email)
        except EmailChangeInvalid:
            return await self._page(request, "invalid", status=410)

        # The account's other sessions end; this browser's, if it is the account's own,
        # continues under a new id.
        session = await current_session(request)
        mine = session is not None and (session.kind, session.user_id) == (
            done.kind,
            done.principal_id,
        )
        own = session if mine else None
        store = sessions(request)
        ended = await store.delete_all_for(
            done.kind, done.principal_id, keep=own.sid if own else None
        )
        await audit_event(
            actor,
            "sessions.signed_out_others" if own else "sessions.signed_out_all",
            object_type(done.kind),
            done.principal_id,
            count=ended,
            reason="email_changed",
        )
        response = await self._page(
            request, "done", new_email=done.new_email, signed_in=bool(own and own.full)
        )
        if own is not None:
            rotated = await store.rotate(own)
            request.state.session = rotated
            set_session_cookie(request, response, rotated.sid)
        return response
