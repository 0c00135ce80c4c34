"""Assisted sessions: a support agent sees the portal as a customer user, with consent.

Lifecycle (``AssistedSession.status``)::

    requested ──grant──▶ granted ──end──▶ ended
        │                   └──time──▶ expired
        ├──deny──▶ denied
        ├──end (withdrawn)──▶ ended
        └──24 h undecided──▶ expired

* An agent (any active staff user) requests a session for a customer user, found by
  email in any organization, with a reason and a ticket reference. Auditors are
  read-only everywhere: they may only ask for view access.
* The customer user, or a customer admin whose admin area covers every one of the
  user's memberships, grants it (5 to 240 minutes, default 30; view, or view and act
  when the agent asked to act) or denies it. Whoever may grant may also end it, at once;
  so may the agent.
* Expiry is lazy: a granted session whose ``expires_at`` has passed (or a request left
  undecided for 24 hours) is treated as expired everywhere, and marked ``expired`` when
  a service sees it.
* What the agent may do is the intersection of both sides: the customer user's scope
  (the session runs as that user) and, for changes, ``act`` only when the grant says
  act *and* the agent's staff role may act (an auditor never acts).

Pure rules first (plain values, unit-tested), then the services: one transaction each,
every change audited with the acting person. No HTTP or rendering here; the portal
sends the notification email from what ``request_assistance`` returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.audit.tables import AuditEvent
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.admin import admin_area, covers
from core.identity.roles import StaffRole
from core.identity.tables import AssistedSession, Membership, StaffUser, User

DEFAULT_MINUTES = 30
MIN_MINUTES = 5
MAX_MINUTES = 240
DURATION_CHOICES = (15, 30, 60, 120, 240)
REQUEST_TTL = timedelta(hours=24)
REASON_MAX = 500
TICKET_MAX = 64  # the column's length
EMAIL_MAX = 254
MAX_ID = 2**63 - 1

VIEW = "view"
ACT = "act"
ACCESS_LEVELS = (VIEW, ACT)
ACCESS_LABELS = {VIEW: "view only", ACT: "view and act"}

REQUESTED, GRANTED, DENIED, ENDED, EXPIRED = "requested", "granted", "denied", "ended", "expired"
OPEN_STATUSES = (REQUESTED, GRANTED)
STATUS_LABELS = {
    REQUESTED: "Waiting for the customer",
    GRANTED: "Granted",
    DENIED: "Denied",
    ENDED: "Ended",
    EXPIRED: "Expired",
}
# Allowed changes of the stored status.
TRANSITIONS: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({GRANTED, DENIED, ENDED, EXPIRED}),
    GRANTED: frozenset({ENDED, EXPIRED}),
    DENIED: frozenset(),
    ENDED: frozenset(),
    EXPIRED: frozenset(),
}
# Why a request cannot be decided or started, by its (effective) status.
CLOSED_MESSAGES = {
    REQUESTED: "This request has not been granted yet.",
    GRANTED: "This request was already granted.",
    DENIED: "This request was denied.",
    ENDED: "This assisted session has ended.",
    EXPIRED: "This assisted session has expired.",
}
# Staff roles that may change things in a customer's portal when the grant allows it.
ACTING_ROLES = frozenset(
    {StaffRole.SUPPORT_AGENT, StaffRole.BILLING_OPS, StaffRole.COLLECTIONS, StaffRole.FINANCE_ADMIN}
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^[0-9]{1,4}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# ---------------------------------------------------------------------------- pure rules


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def effective_status(
    status: str, *, requested_at: datetime, expires_at: datetime | None, now: datetime
) -> str:
    """The status as everyone must treat it now: a granted session past its expiry, or
    a request undecided for ``REQUEST_TTL``, is expired whatever the row still says."""
    if status == GRANTED and (expires_at is None or expires_at <= now):
        return EXPIRED
    if status == REQUESTED and requested_at + REQUEST_TTL <= now:
        return EXPIRED
    return status


def expiry_time(status: str, *, requested_at: datetime, expires_at: datetime | None) -> datetime:
    """When an open row expired (or will): the grant's end, or the request's deadline."""
    if status == GRANTED and expires_at is not None:
        return expires_at
    return requested_at + REQUEST_TTL


def staff_may_act(role: str) -> bool:
    """Auditors are read-only everywhere; unknown roles act nowhere."""
    return role in ACTING_ROLES


def effective_access(granted: str, staff_role: str) -> str:
    """The intersection: ``act`` only if the grant says act and the agent's role may act."""
    return ACT if granted == ACT and staff_may_act(staff_role) else VIEW


def parse_access(value: Any) -> str | None:
    text = str(value if value is not None else "").strip()
    return text if text in ACCESS_LEVELS else None


def parse_minutes(value: Any) -> int | None:
    """Whole minutes from form text (missing: the default), or None when not a number."""
    text = str(value if value is not None else "").strip()
    if not text:
        return DEFAULT_MINUTES
    return int(text) if _DIGITS.match(text) else None


def parse_id(value: Any) -> int | None:
    text = str(value if value is not None else "").strip()
    if not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def clean_text(value: Any) -> str:
    """Form text with surrounding space removed and line endings normalized."""
    text = value if isinstance(value, str) else ""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def request_problems(
    *, email: str, reason: str, ticket_ref: str, access: str | None, staff_role: str
) -> dict[str, str]:
    """Pure: what is wrong with a request form (field -> message); empty when fine."""
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter the customer user's email address."
    elif len(email) > EMAIL_MAX or not _EMAIL.match(email):
        errors["email"] = "Enter a valid email address, like name@example.com."
    if not reason:
        errors["reason"] = "Say why you need the session: the customer sees this."
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"Use at most {REASON_MAX} characters."
    elif _CONTROL.search(reason):
        errors["reason"] = "Remove the control characters."
    if not ticket_ref:
        errors["ticket_ref"] = "Enter the support ticket reference."
    elif len(ticket_ref) > TICKET_MAX:
        errors["ticket_ref"] = f"Use at most {TICKET_MAX} characters."
    elif not ticket_ref.isprintable():
        errors["ticket_ref"] = "Use letters, digits and punctuation only."
    if access is None:
        errors["access"] = "Choose view only, or view and act."
    elif access == ACT and not staff_may_act(staff_role):
        errors["access"] = "Your staff role is read-only: you may only ask for view access."
    return errors


def grant_problems(*, minutes: int | None, access: str | None, requested: str) -> dict[str, str]:
    """Pure: what is wrong with a grant form. The grant never exceeds what was asked."""
    errors: dict[str, str] = {}
    if minutes is None or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        errors["minutes"] = f"Choose a duration between {MIN_MINUTES} and {MAX_MINUTES} minutes."
    if access is None:
        errors["access"] = "Choose view only, or view and act."
    elif access == ACT and requested != ACT:
        errors["access"] = "The agent asked for view-only access: grant view only."
    return errors


def may_decide(
    *,
    decider_id: int,
    user_id: int,
    user_root: int,
    user_paths: Iterable[str],
    admin_root: int | None,
    admin_prefixes: Sequence[str],
) -> bool:
    """Pure: the user themselves, or an admin of the same group whose admin area covers
    every membership of the user (the session sees all of them). An admin of the whole
    group covers everyone of the group."""
    if decider_id == user_id:
        return True
    if admin_root is None or admin_root != user_root or not admin_prefixes:
        return False
    if f"/{admin_root}/" in admin_prefixes:
        return True
    paths = list(user_paths)
    return bool(paths) and all(covers(admin_prefixes, path) for path in paths)


def audit_window(
    *,
    decided_at: datetime | None,
    ended_at: datetime | None,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime] | None:
    """Pure: the time span in which the agent could act for the user (None: never
    granted). Ends at the earliest of the end, the expiry and now."""
    if decided_at is None or expires_at is None:
        return None
    candidates = [expires_at, now] + ([ended_at] if ended_at is not None else [])
    return decided_at, min(candidates)


# ---------------------------------------------------------------------------- read models


@dataclass(frozen=True, slots=True)
class AssistedView:
    """One assisted session as a page shows it (``status`` is the effective one)."""

    id: int
    agent_id: int
    agent_name: str
    user_id: int
    user_name: str
    user_email: str
    reason: str
    ticket_ref: str
    status: str
    access: str
    minutes: int
    requested_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    ended_by: str

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def access_label(self) -> str:
        return ACCESS_LABELS.get(self.access, self.access)

    @property
    def pending(self) -> bool:
        return self.status == REQUESTED

    @property
    def active(self) -> bool:
        return self.status == GRANTED

    @property
    def ended_by_label(self) -> str:
        kind = self.ended_by.split(":", 1)[0]
        return {"customer": "the customer", "agent": "the agent", "system": "expiry"}.get(kind, "")


@dataclass(frozen=True, slots=True)
class Requested:
    id: int
    user_email: str
    user_name: str
    agent_name: str
    reason: str
    ticket_ref: str
    access: str
    expires_at: datetime  # the request's own deadline


@dataclass(frozen=True, slots=True)
class Started:
    id: int
    user_id: int
    user_name: str
    agent_id: int
    agent_name: str
    access: str  # effective
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LiveCheck:
    """The per-request verdict on an assisted session."""

    active: bool
    access: str = VIEW  # effective now
    expires_at: datetime | None = None
    status: str = ""


@dataclass(frozen=True, slots=True)
class Banner:
    """What a customer's own pages show: sessions running now, requests waiting."""

    active: tuple[AssistedView, ...] = ()
    pending: int = 0


@dataclass(frozen=True, slots=True)
class DoneItem:
    occurred_at: datetime
    action: str
    method: str
    path: str
    status: str
    detail: str
    actor: str  # "agent:<id>"
    on_behalf_of: str


@dataclass(frozen=True, slots=True)
class CustomerOverview:
    pending: list[AssistedView]
    active: list[AssistedView]
    history: list[tuple[AssistedView, list[DoneItem]]]
    own_user_id: int
    done_now: dict[int, list[DoneItem]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- services


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """In UTC (pages show times as "HH:MM UTC"); a naive value (SQLite) is UTC."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


_COLUMNS = (
    AssistedSession.id,
    AssistedSession.agent,
    AssistedSession.user,
    AssistedSession.reason,
    AssistedSession.ticket_ref,
    AssistedSession.status,
    AssistedSession.access,
    AssistedSession.minutes,
    AssistedSession.requested_at,
    AssistedSession.decided_at,
    AssistedSession.expires_at,
    AssistedSession.ended_at,
    AssistedSession.ended_by,
)


def _select(*extra: Any) -> Any:
    return AssistedSession.select(
        *_COLUMNS,
        AssistedSession.agent.name.as_alias("agent_name"),
        AssistedSession.user.name.as_alias("user_name"),
        AssistedSession.user.email.as_alias("user_email"),
        *extra,
    )


def _view(row: dict[str, Any], now: datetime) -> AssistedView:
    requested_at = _aware(row["requested_at"])
    assert requested_at is not None
    expires_at = _aware(row["expires_at"])
    return AssistedView(
        id=int(row["id"]),
        agent_id=int(row["agent"]),
        agent_name=row.get("agent_name") or "",
        user_id=int(row["user"]),
        user_name=row.get("user_name") or "",
        user_email=row.get("user_email") or "",
        reason=row["reason"],
        ticket_ref=row["ticket_ref"],
        status=effective_status(
            row["status"], requested_at=requested_at, expires_at=expires_at, now=now
        ),
        access=row["access"],
        minutes=int(row["minutes"]),
        requested_at=requested_at,
        decided_at=_aware(row["decided_at"]),
        expires_at=expires_at,
        ended_at=_aware(row["ended_at"]),
        ended_by=row["ended_by"],
    )


async def _expire_due(ids: Iterable[int]) -> None:
    """Mark rows that are expired in effect as ``expired`` (lazily, when seen), each
    audited once: the row is locked, so two requests seeing it cannot both mark it."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    now = _now()
    async with transaction():
        rows = await for_update(
            AssistedSession.select(
                AssistedSession.id,
                AssistedSession.agent,
                AssistedSession.user,
                AssistedSession.status,
                AssistedSession.requested_at,
                AssistedSession.expires_at,
            ).where(AssistedSession.id.is_in(wanted) & AssistedSession.status.is_in(OPEN_STATUSES))
        )
        for row in rows:
            requested_at = _aware(row["requested_at"])
            expires_at = _aware(row["expires_at"])
            assert requested_at is not None
            status = effective_status(
                row["status"], requested_at=requested_at, expires_at=expires_at, now=now
            )
            if status != EXPIRED or not can_transition(row["status"], EXPIRED):
                continue
            at = expiry_time(row["status"], requested_at=requested_at, expires_at=expires_at)
            await AssistedSession.update(
                {
                    AssistedSession.status: EXPIRED,
                    AssistedSession.ended_at: at,
                    AssistedSession.ended_by: "system:expiry",
                }
            ).where(AssistedSession.id == row["id"])
            await record(
                AuditRecord(
                    actor=Actor.system("assisted-expiry"),
                    action="assisted.expired",
                    object_type="assisted_session",
                    object_id=row["id"],
                    data={
                        "agent_id": row["agent"],
                        "user_id": row["user"],
                        "was": row["status"],
                        "at": at.isoformat(),
                    },
                )
            )


async def _expire_seen(views: Iterable[AssistedView], stored: dict[int, str]) -> None:
    await _expire_due(v.id for v in views if v.status == EXPIRED and stored.get(v.id) != EXPIRED)


async def request_assistance(
    *, agent_id: int, email: str, reason: str, ticket_ref: str, access: str, actor: Actor
) -> Requested:
    """An agent asks a customer user (found by email, in any organization) for an
    assisted session. Bad input is ``ValidationFailed`` with one message per field."""
    email = clean_text(email).lower()
    reason = clean_text(reason)
    ticket_ref = clean_text(ticket_ref)
    wanted = parse_access(access)
    async with transaction():
        staff = (
            await StaffUser.select(StaffUser.name, StaffUser.role, StaffUser.is_active)
            .where(StaffUser.id == agent_id)
            .first()
        )
        if staff is None or not staff["is_active"]:
            raise NotFound("staff user")
        errors = request_problems(
            email=email,
            reason=reason,
            ticket_ref=ticket_ref,
            access=wanted,
            staff_role=staff["role"],
        )
        user = None
        if "email" not in errors:
            user = (
                await User.select(User.id, User.name, User.email, User.is_active)
                .where(User.email == email)
                .first()
            )
            if user is None or not user["is_active"]:
                errors["email"] = "No active customer user has this email address."
        if errors:
            raise ValidationFailed(errors)
        assert user is not None
        assert wanted is not None
        now = _now()
        open_rows = await AssistedSession.select(
            AssistedSession.status, AssistedSession.requested_at, AssistedSession.expires_at
        ).where(
            (AssistedSession.agent == agent_id)
            & (AssistedSession.user == user["id"])
            & AssistedSession.status.is_in(OPEN_STATUSES)
        )
        if any(
            effective_status(
                r["status"],
                requested_at=_aware(r["requested_at"]),  # type: ignore[arg-type]
                expires_at=_aware(r["expires_at"]),
                now=now,
            )
            in OPEN_STATUSES
            for r in open_rows
        ):
            raise ValidationFailed(
                {"email": "You already have an open request or session for this person."}
            )
        [row] = await AssistedSession.insert(
            AssistedSession(
                agent=agent_id,
                user=user["id"],
                reason=reason,
                ticket_ref=ticket_ref,
                status=REQUESTED,
                access=wanted,
                minutes=DEFAULT_MINUTES,
                requested_at=now,
            )
        )
        assisted_id = int(row["id"])
        await record(
            AuditRecord(
                actor=actor,
                action="assisted.requested",
                object_type="assisted_session",
                object_id=assisted_id,
                reason_code=ticket_ref,
                data={"user_id": user["id"], "agent_id": agent_id, "access": wanted},
            )
        )
    return Requested(
        id=assisted_id,
        user_email=user["email"],
        user_name=user["name"],
        agent_name=staff["name"],
        reason=reason,
        ticket_ref=ticket_ref,
        access=wanted,
        expires_at=now + REQUEST_TTL,
    )


async def _paths_of(user_id: int) -> list[str]:
    rows = await Membership.select(Membership.organization.path.as_alias("path")).where(
        Membership.user == user_id
    )
    return [r["path"] for r in rows if r["path"]]


async def _may_decide(decider_id: int, user_id: int) -> bool:
    if decider_id == user_id:
        return True
    area = await admin_area(decider_id, with_nodes=False)
    if area is None:
        return False
    user = await User.select(User.organization).where(User.id == user_id).first()
    if user is None:
        return False
    return may_decide(
        decider_id=decider_id,
        user_id=user_id,
        user_root=int(user["organization"]),
        user_paths=await _paths_of(user_id),
        admin_root=area.root_id,
        admin_prefixes=area.prefixes,
    )


async def _locked_for_customer(assisted_id: int, decider_id: int) -> dict[str, Any]:
    """The row, locked, if the customer user may decide on it; else ``NotFound`` (an
    object outside the caller's reach is not found, never forbidden)."""
    if not 0 < assisted_id <= MAX_ID:
        raise NotFound("assisted session")
    row = await for_update(
        AssistedSession.select(*_COLUMNS).where(AssistedSession.id == assisted_id)
    ).first()
    if row is None or not await _may_decide(decider_id, int(row["user"])):
        raise NotFound("assisted session")
    return row


def _current(row: dict[str, Any], now: datetime) -> str:
    return effective_status(
        row["status"],
        requested_at=_aware(row["requested_at"]),  # type: ignore[arg-type]
        expires_at=_aware(row["expires_at"]),
        now=now,
    )


async def grant(
    assisted_id: int, *, decider_id: int, minutes: Any, access: Any, actor: Actor
) -> datetime:
    """The customer user (or their admin) grants a waiting request; returns when the
    session will end. A security event: audited ``assisted.granted``."""
    parsed_minutes = parse_minutes(minutes)
    parsed_access = parse_access(access)
    async with transaction():
        row = await _locked_for_customer(assisted_id, decider_id)
        now = _now()
        status = _current(row, now)
        if status != REQUESTED:
            raise Conflict(CLOSED_MESSAGES.get(status, "This request cannot be granted."))
        errors = grant_problems(
            minutes=parsed_minutes, access=parsed_access, requested=row["access"]
        )
        if errors:
            raise ValidationFailed(errors)
        assert parsed_minutes is not None
        assert parsed_access is not None
        expires_at = now + timedelta(minutes=parsed_minutes)
        await AssistedSession.update(
            {
                AssistedSession.status: GRANTED,
                AssistedSession.access: parsed_access,
                AssistedSession.minutes: parsed_minutes,
                AssistedSession.decided_at: now,
                AssistedSession.decided_by: decider_id,
                AssistedSession.expires_at: expires_at,
            }
        ).where(AssistedSession.id == assisted_id)
        await record(
            AuditRecord(
                actor=actor,
                action="assisted.granted",
                object_type="assisted_session",
                object_id=assisted_id,
                reason_code=row["ticket_ref"],
                data={
                    "security_event": True,
                    "agent_id": row["agent"],
                    "user_id": row["user"],
                    "decided_by": decider_id,
                    "access": parsed_access,
                    "minutes": parsed_minutes,
                    "expires_at": expires_at.isoformat(),
                },
            )
        )
    return expires_at


async def deny(assisted_id: int, *, decider_id: int, actor: Actor) -> None:
    async with transaction():
        row = await _locked_for_customer(assisted_id, decider_id)
        now = _now()
        status = _current(row, now)
        if status != REQUESTED:
            raise Conflict(CLOSED_MESSAGES.get(status, "This request cannot be denied."))
        await AssistedSession.update(
            {
                AssistedSession.status: DENIED,
                AssistedSession.decided_at: now,
                AssistedSession.decided_by: decider_id,
            }
        ).where(AssistedSession.id == assisted_id)
        await record(
            AuditRecord(
                actor=actor,
                action="assisted.denied",
                object_type="assisted_session",
                object_id=assisted_id,
                reason_code=row["ticket_ref"],
                data={"agent_id": row["agent"], "user_id": row["user"], "decided_by": decider_id},
            )
        )


async def _end(row: dict[str, Any], ended_by: str, actor: Actor) -> bool:
    now = _now()
    status = _current(row, now)
    if status not in OPEN_STATUSES or not can_transition(row["status"], ENDED):
        return False  # already over: ending twice changes nothing
    await AssistedSession.update(
        {
            AssistedSession.status: ENDED,
            AssistedSession.ended_at: now,
            AssistedSession.ended_by: ended_by,
        }
    ).where(AssistedSession.id == row["id"])
    await record(
        AuditRecord(
            actor=actor,
            action="assisted.ended",
            object_type="assisted_session",
            object_id=row["id"],
            reason_code=row["ticket_ref"],
            data={
                "agent_id": row["agent"],
                "user_id": row["user"],
                "by": ended_by,
                "was": status,
            },
        )
    )
    return True


async def end_by_customer(assisted_id: int, *, user_id: int, actor: Actor) -> bool:
    """The customer user (or their admin) ends a session, or withdraws consent for a
    request, at once. False when it was already over."""
    async with transaction():
        row = await _locked_for_customer(assisted_id, user_id)
        return await _end(row, f"customer:{user_id}", actor)


async def end_by_agent(assisted_id: int, *, agent_id: int, actor: Actor) -> bool:
    """The agent ends their session (or withdraws their request). False when over."""
    if not 0 < assisted_id <= MAX_ID:
        raise NotFound("assisted session")
    async with transaction():
        row = await for_update(
            AssistedSession.select(*_COLUMNS).where(AssistedSession.id == assisted_id)
        ).first()
        if row is None or int(row["agent"]) != agent_id:
            raise NotFound("assisted session")
        return await _end(row, f"agent:{agent_id}", actor)


async def start(assisted_id: int, *, agent_id: int, actor: Actor) -> Started:
    """The agent starts (or resumes) a granted, unexpired session of their own."""
    if not 0 < assisted_id <= MAX_ID:
        raise NotFound("assisted session")
    expired = False
    async with transaction():
        row = (
            await _select(
                AssistedSession.agent.role.as_alias("agent_role"),
                AssistedSession.agent.is_active.as_alias("agent_active"),
                AssistedSession.user.is_active.as_alias("user_active"),
            )
            .where(AssistedSession.id == assisted_id)
            .first()
        )
        if row is None or int(row["agent"]) != agent_id or not row["agent_active"]:
            raise NotFound("assisted session")
        now = _now()
        view = _view(row, now)
        if view.status == EXPIRED and row["status"] != EXPIRED:
            expired = True
        elif view.status != GRANTED:
            raise Conflict(CLOSED_MESSAGES.get(view.status, "This session cannot start."))
        elif not row["user_active"]:
            raise Conflict("The customer user's account is deactivated.")
        else:
            access = effective_access(view.access, row["agent_role"])
            await record(
                AuditRecord(
                    actor=actor,
                    action="assisted.started",
                    object_type="assisted_session",
                    object_id=assisted_id,
                    reason_code=view.ticket_ref,
                    data={"user_id": view.user_id, "access": access},
                )
            )
    if expired:
        await _expire_due([assisted_id])
        raise Conflict(CLOSED_MESSAGES[EXPIRED])
    assert view.expires_at is not None
    return Started(
        id=assisted_id,
        user_id=view.user_id,
        user_name=view.user_name,
        agent_id=agent_id,
        agent_name=view.agent_name,
        access=access,
        expires_at=view.expires_at,
    )


async def check_live(assisted_id: int, *, agent_id: int, user_id: int) -> LiveCheck:
    """Is this assisted session still good for one more request? One indexed select
    (by primary key, with the agent's role and both accounts' state). A row seen
    expired is marked so, lazily."""
    row = (
        await AssistedSession.select(
            AssistedSession.agent,
            AssistedSession.user,
            AssistedSession.status,
            AssistedSession.access,
            AssistedSession.requested_at,
            AssistedSession.expires_at,
            AssistedSession.agent.role.as_alias("agent_role"),
            AssistedSession.agent.is_active.as_alias("agent_active"),
            AssistedSession.user.is_active.as_alias("user_active"),
        )
        .where(AssistedSession.id == assisted_id)
        .first()
    )
    if row is None or int(row["agent"]) != agent_id or int(row["user"]) != user_id:
        return LiveCheck(False, status="missing")
    status = _current(row, _now())
    if status == EXPIRED and row["status"] != EXPIRED:
        await _expire_due([assisted_id])
    if status != GRANTED:
        return LiveCheck(False, status=status)
    if not row["agent_active"] or not row["user_active"]:
        return LiveCheck(False, status="deactivated")
    return LiveCheck(
        True,
        access=effective_access(row["access"], row["agent_role"]),
        expires_at=_aware(row["expires_at"]),
        status=GRANTED,
    )


async def banner_for(user_id: int) -> Banner:
    """For every page of the customer's own sessions: one indexed select on
    (user, status)."""
    rows = await _select().where(
        (AssistedSession.user == user_id) & AssistedSession.status.is_in(OPEN_STATUSES)
    )
    now = _now()
    views = [_view(r, now) for r in rows]
    active = sorted((v for v in views if v.active), key=lambda v: v.expires_at or now)
    return Banner(tuple(active), sum(1 for v in views if v.pending))


async def agent_sessions(agent_id: int, limit: int = 50) -> list[AssistedView]:
    """The agent's own requests and sessions, newest first."""
    rows = (
        await _select()
        .where(AssistedSession.agent == agent_id)
        .order_by(AssistedSession.id, ascending=False)
        .limit(limit)
    )
    now = _now()
    views = [_view(r, now) for r in rows]
    await _expire_seen(views, {int(r["id"]): r["status"] for r in rows})
    return views


async def _users_in_reach(user_id: int) -> list[int]:
    """The signed-in user and every user their admin area covers completely."""
    area = await admin_area(user_id, with_nodes=False)
    if area is None:
        return [user_id]
    if area.whole_group:
        rows = await User.select(User.id).where(User.organization == area.root_id)
        return sorted({user_id, *(int(r["id"]) for r in rows)})
    condition = None
    for prefix in area.prefixes:
        clause = Membership.organization.path.like(prefix + "%")
        condition = clause if condition is None else condition | clause
    candidates = {
        int(r["user"])
        for r in await Membership.select(Membership.user).where(condition)
        if r["user"] != user_id
    }
    if not candidates:
        return [user_id]
    memberships = await Membership.select(
        Membership.user,
        Membership.organization.path.as_alias("path"),
        Membership.user.organization.as_alias("root"),
    ).where(Membership.user.is_in(sorted(candidates)))
    paths: dict[int, list[str]] = {}
    roots: dict[int, int] = {}
    for m in memberships:
        paths.setdefault(int(m["user"]), []).append(m["path"])
        roots[int(m["user"])] = int(m["root"])
    reach = [
        uid
        for uid in sorted(candidates)
        if may_decide(
            decider_id=user_id,
            user_id=uid,
            user_root=roots.get(uid, -1),
            user_paths=paths.get(uid, []),
            admin_root=area.root_id,
            admin_prefixes=area.prefixes,
        )
    ]
    return [user_id, *reach]


def _done_item(row: dict[str, Any]) -> DoneItem:
    data = row["data"]
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            data = {}
    data = data if isinstance(data, dict) else {}
    detail = ""
    if row["action"] == "invoices.exported":
        detail = f"{data.get('rows', 0)} invoices"
    return DoneItem(
        occurred_at=_aware(row["occurred_at"]),  # type: ignore[arg-type]
        action=row["action"],
        method=str(data.get("method", "")),
        path=str(data.get("path", "")),
        status=str(data.get("status", "")),
        detail=detail,
        actor=f"{row['actor_type']}:{row['actor_id']}",
        on_behalf_of=row["on_behalf_of"],
    )


async def what_was_done(view: AssistedView, limit: int = 200) -> list[DoneItem]:
    """Every audit event the agent wrote on behalf of the user while the session could
    be used: each request of the session, and whatever those requests recorded."""
    window = audit_window(
        decided_at=view.decided_at, ended_at=view.ended_at, expires_at=view.expires_at, now=_now()
    )
    if window is None:
        return []
    rows = (
        await AuditEvent.select(
            AuditEvent.occurred_at,
            AuditEvent.actor_type,
            AuditEvent.actor_id,
            AuditEvent.on_behalf_of,
            AuditEvent.action,
            AuditEvent.data,
        )
        .where(
            (AuditEvent.actor_type == "agent")
            & (AuditEvent.actor_id == str(view.agent_id))
            & (AuditEvent.on_behalf_of == f"customer:{view.user_id}")
            & (AuditEvent.occurred_at >= window[0])
            & (AuditEvent.occurred_at <= window[1])
        )
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    return [_done_item(r) for r in rows]


async def customer_overview(user_id: int, history_limit: int = 20) -> CustomerOverview:
    """The ``/assisted`` page: requests waiting, sessions running and past sessions with
    what was done, for the user and for everyone their admin area fully covers."""
    reach = await _users_in_reach(user_id)
    rows = (
        await _select()
        .where(AssistedSession.user.is_in(reach))
        .order_by(AssistedSession.id, ascending=False)
        .limit(200)
    )
    now = _now()
    views = [_view(r, now) for r in rows]
    await _expire_seen(views, {int(r["id"]): r["status"] for r in rows})
    pending = [v for v in views if v.pending]
    active = [v for v in views if v.active]
    past = [v for v in views if not v.pending and not v.active][:history_limit]
    return CustomerOverview(
        pending=pending,
        active=active,
        history=[(v, await what_was_done(v)) for v in past],
        own_user_id=user_id,
        done_now={v.id: await what_was_done(v) for v in active},
    )
