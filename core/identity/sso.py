"""Single sign-on (OpenID Connect) per customer group.

* Lookups for the sign-in page: which connection, if any, serves an email address's
  domain (``connection_for_email``), and whether a person must use it
  (``sso_required_for_email``: password sign-in is then refused).
* Configuration by the group's administrator (``configure_connection``): issuer,
  client id and secret (encrypted at rest), allowed email domains, the claim carrying
  the person's groups and how its values map to (role, organization node), the default
  role for just-in-time provisioning (empty: none), "SSO required" and "enabled".
* The decision at the end of a login (``complete_login``), once the portal has a
  validated ID token: who this is, keyed by (issuer, subject) and never by email alone;
  just-in-time provisioning; the roles the claims grant, re-applied at every login.
  Every refusal raises ``SsoRefused`` and is audited as ``login.failed`` with a reason.

The OpenID protocol itself (discovery, PKCE, code exchange, token validation) lives in
``core.identity.oidc``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from core import crypto
from core.audit.log import Actor, AuditRecord, record
from core.db import advisory_lock, for_update, transaction
from core.errors import NotFound, ValidationFailed
from core.identity.oidc import forget_provider, is_local_http
from core.identity.roles import CustomerRole, rank
from core.identity.services import SignedIn, normalize_email
from core.identity.tables import (
    CustomerOrganization,
    ExternalIdentity,
    Membership,
    SsoConnection,
    User,
)

# ---------------------------------------------------------------------------------------
# Lookups for the sign-in page


@dataclass(frozen=True, slots=True)
class ConnectionRef:
    id: int
    organization_id: int
    issuer: str
    sso_required: bool


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower() if "@" in email else ""


def domains_of(allowed: str) -> set[str]:
    return {d.strip().lower() for d in allowed.split(",") if d.strip()}


async def connection_for_email(email: str) -> ConnectionRef | None:
    """The enabled SSO connection whose allowed domains include the email's domain."""
    domain = email_domain(email)
    if not domain:
        return None
    rows = await SsoConnection.select(
        SsoConnection.id,
        SsoConnection.organization,
        SsoConnection.issuer,
        SsoConnection.sso_required,
        SsoConnection.allowed_domains,
    ).where(SsoConnection.enabled == True)  # noqa: E712 - Piccolo column comparison
    for row in rows:
        if domain in domains_of(row["allowed_domains"]):
            return ConnectionRef(row["id"], row["organization"], row["issuer"], row["sso_required"])
    return None


async def sso_required_for_email(email: str) -> ConnectionRef | None:
    """The connection a person must sign in through, or None when a password is allowed.

    SSO is required for an email when the enabled connection serving its domain says so,
    and for any user of a group whose enabled connection says so (whatever their email's
    domain). The sign-in form uses this to refuse the password and offer SSO instead.
    """
    email = normalize_email(email)
    by_domain = await connection_for_email(email)
    if by_domain is not None and by_domain.sso_required:
        return by_domain
    if not email or len(email) > 254 or "\x00" in email:
        return None
    user = await User.select(User.organization).where(User.email == email).first()
    if user is None:
        return None
    row = (
        await SsoConnection.select(
            SsoConnection.id,
            SsoConnection.organization,
            SsoConnection.issuer,
            SsoConnection.sso_required,
        )
        .where(
            (SsoConnection.organization == user["organization"])
            & (SsoConnection.enabled == True)  # noqa: E712
            & (SsoConnection.sso_required == True)  # noqa: E712
        )
        .first()
    )
    if row is None:
        return None
    return ConnectionRef(row["id"], row["organization"], row["issuer"], row["sso_required"])


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class RoleGrant:
    role: CustomerRole
    organization_id: int


@dataclass(frozen=True, slots=True)
class MappingRow:
    """One line of the claim mapping as entered: claim value -> role at a node."""

    claim_value: str
    role: str
    organization_id: str | int | None


@dataclass(frozen=True, slots=True)
class SsoInput:
    """What an administrator submits. ``client_secret`` empty keeps the stored one."""

    issuer: str
    client_id: str
    client_secret: str = ""
    allowed_domains: str = ""
    role_claim: str = "groups"
    mapping: tuple[MappingRow, ...] = ()
    default_role: str = ""
    sso_required: bool = False
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """A connection as the admin page shows it (never the secret)."""

    id: int
    organization_id: int
    issuer: str
    client_id: str
    has_secret: bool
    allowed_domains: tuple[str, ...]
    role_claim: str
    mapping: dict[str, RoleGrant]
    default_role: str
    sso_required: bool
    enabled: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class LoginConnection:
    """What the sign-in flow needs, with the client secret decrypted."""

    id: int
    organization_id: int
    issuer: str
    client_id: str
    client_secret: str
    role_claim: str
    enabled: bool


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CLAIM_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
MAX_MAPPING_ROWS = 50


def issuer_problem(issuer: str, *, allow_local_http: bool = True) -> str | None:
    """Why an issuer URL is unacceptable, or None. https is required, except plain http on
    127.0.0.1/localhost (development and tests; refused when ``allow_local_http`` is off)."""
    if not issuer:
        return "Enter the issuer URL of your identity provider."
    if len(issuer) > 500:
        return "The issuer URL is too long (500 characters at most)."
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "Enter a valid URL, like https://login.example.com."
    if parts.query or parts.fragment or parts.username or parts.password:
        return "The issuer URL has no query, fragment or credentials."
    if not parts.hostname:
        return "Enter a valid URL, like https://login.example.com."
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_local_http(issuer):
        return None if allow_local_http else "The issuer URL must use https."
    return "The issuer URL must use https (http only for 127.0.0.1 or localhost)."


def parse_domains(raw: str) -> tuple[list[str], str | None]:
    """Comma, space or newline separated domains, lower-cased and de-duplicated."""
    domains: list[str] = []
    for part in re.split(r"[\s,;]+", raw.strip().lower()):
        part = part.strip().lstrip("@").rstrip(".")
        if not part:
            continue
        if not _DOMAIN.match(part):
            return [], f"{part[:80]!r} is not a valid email domain (like example.com)."
        if part not in domains:
            domains.append(part)
    if not domains:
        return [], "Enter at least one email domain, like example.com."
    if len(domains) > 50:
        return [], "Enter at most 50 domains."
    return domains, None


def _load_mapping(raw: Any) -> dict[str, RoleGrant]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "{}")
        except ValueError:
            raw = {}
    result: dict[str, RoleGrant] = {}
    if isinstance(raw, dict):
        for value, grant in raw.items():
            try:
                result[str(value)] = RoleGrant(
                    CustomerRole(grant["role"]), int(grant["organization_id"])
                )
            except (KeyError, TypeError, ValueError):
                continue
    return result


def _dump_mapping(mapping: Mapping[str, RoleGrant]) -> str:
    return json.dumps(
        {
            k: {"role": g.role.value, "organization_id": g.organization_id}
            for k, g in sorted(mapping.items())
        },
        sort_keys=True,
    )


async def _root_of(organization_id: int) -> dict[str, Any]:
    row = (
        await CustomerOrganization.select(
            CustomerOrganization.id,
            CustomerOrganization.root_id,
            CustomerOrganization.path,
            CustomerOrganization.name,
        )
        .where(CustomerOrganization.id == organization_id)
        .first()
    )
    if row is None or row["root_id"] != row["id"]:
        raise NotFound("customer group")
    return row


async def group_nodes(root_id: int) -> list[dict[str, Any]]:
    """The nodes of a customer group (id, name, depth), in tree order."""
    root = await _root_of(root_id)
    return await (
        CustomerOrganization.select(
            CustomerOrganization.id, CustomerOrganization.name, CustomerOrganization.depth
        )
        .where(CustomerOrganization.path.like(root["path"] + "%"))
        .order_by(CustomerOrganization.path)
    )


def _view(row: dict[str, Any]) -> ConnectionView:
    return ConnectionView(
        id=row["id"],
        organization_id=row["organization"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        has_secret=bool(row["client_secret_enc"]),
        allowed_domains=tuple(sorted(domains_of(row["allowed_domains"]))),
        role_claim=row["role_claim"],
        mapping=_load_mapping(row["claim_role_map"]),
        default_role=row["default_role"],
        sso_required=row["sso_required"],
        enabled=row["enabled"],
        updated_at=row["updated_at"],
    )


async def get_connection(root_id: int) -> ConnectionView | None:
    """The group's connection, if it has one."""
    row = await SsoConnection.select().where(SsoConnection.organization == root_id).first()
    return None if row is None else _view(row)


async def configure_connection(
    root_id: int, data: SsoInput, actor: Actor, *, allow_local_http: bool = True
) -> ConnectionView:
    """Create or update the group's connection. Every field is checked; on any problem
    ``ValidationFailed`` names each field (mapping rows as ``map-<i>-claim|role|org``)
    and nothing changes. Audited as ``sso.configured`` (without the secret)."""
    errors: dict[str, str] = {}
    issuer = data.issuer.strip()
    if problem := issuer_problem(issuer, allow_local_http=allow_local_http):
        errors["issuer"] = problem
    client_id = data.client_id.strip()
    if not client_id:
        errors["client_id"] = "Enter the client id your identity provider gave you."
    elif len(client_id) > 200 or not client_id.isprintable():
        errors["client_id"] = "The client id is at most 200 printable characters."
    secret = data.client_secret.strip()
    if len(secret) > 1000:
        errors["client_secret"] = "The client secret is at most 1000 characters."
    domains, problem = parse_domains(data.allowed_domains)
    if problem:
        errors["allowed_domains"] = problem
    role_claim = data.role_claim.strip()
    if not _CLAIM_NAME.match(role_claim):
        errors["role_claim"] = (
            "Enter the claim name, e.g. groups (letters, digits and _ . : / - only)."
        )
    default_role = data.default_role.strip()
    if default_role and default_role not in {r.value for r in CustomerRole}:
        errors["default_role"] = "Choose one of the roles, or no just-in-time provisioning."

    async with transaction():
        root = await _root_of(root_id)
        node_ids = {
            n["id"]
            for n in await CustomerOrganization.select(CustomerOrganization.id).where(
                CustomerOrganization.path.like(root["path"] + "%")
            )
        }
        mapping: dict[str, RoleGrant] = {}
        if len(data.mapping) > MAX_MAPPING_ROWS:
            errors["mapping"] = f"At most {MAX_MAPPING_ROWS} mapping rows."
        for i, row in enumerate(data.mapping[:MAX_MAPPING_ROWS]):
            value = row.claim_value.strip()
            role = (row.role or "").strip()
            org = str(row.organization_id or "").strip()
            if not value and not role and not org:
                continue  # an empty row of the form
            if not value or len(value) > 200 or not value.isprintable():
                errors[f"map-{i}-claim"] = "Enter the claim value (at most 200 characters)."
            elif value in mapping:
                errors[f"map-{i}-claim"] = "This claim value is already mapped above."
            if role not in {r.value for r in CustomerRole}:
                errors[f"map-{i}-role"] = "Choose a role."
            if not org.isdigit() or int(org) not in node_ids:
                errors[f"map-{i}-org"] = "Choose an organization of your group."
            if not any(k.startswith(f"map-{i}-") for k in errors):
                mapping[value] = RoleGrant(CustomerRole(role), int(org))

        existing = await for_update(
            SsoConnection.select().where(SsoConnection.organization == root_id)
        )
        current = existing[0] if existing else None
        if current is None and not secret:
            errors["client_secret"] = "Enter the client secret your identity provider gave you."
        if domains and not errors.get("allowed_domains"):
            others = await SsoConnection.select(
                SsoConnection.allowed_domains, SsoConnection.organization
            ).where(SsoConnection.organization != root_id)
            taken = set().union(*(domains_of(o["allowed_domains"]) for o in others))
            clash = [d for d in domains if d in taken]
            if clash:
                errors["allowed_domains"] = (
                    f"{clash[0]} is already used by another organization's sign-in."
                )
        if errors:
            raise ValidationFailed(errors)

        values: dict[Any, Any] = {
            SsoConnection.issuer: issuer,
            SsoConnection.client_id: client_id,
            SsoConnection.allowed_domains: ",".join(domains),
            SsoConnection.role_claim: role_claim,
            SsoConnection.claim_role_map: _dump_mapping(mapping),
            SsoConnection.default_role: default_role,
            SsoConnection.sso_required: bool(data.sso_required),
            SsoConnection.enabled: bool(data.enabled),
            SsoConnection.updated_at: datetime.now(UTC),
        }
        if secret:
            values[SsoConnection.client_secret_enc] = crypto.box().encrypt(secret)
        if current is None:
            [inserted] = await SsoConnection.insert(
                SsoConnection(organization=root_id, **{c._meta.name: v for c, v in values.items()})
            )
            connection_id = int(inserted["id"])
        else:
            connection_id = int(current["id"])
            await SsoConnection.update(values).where(SsoConnection.id == connection_id)
        await record(
            AuditRecord(
                actor=actor,
                action="sso.configured",
                object_type="sso_connection",
                object_id=connection_id,
                data={
                    "organization_id": root_id,
                    "created": current is None,
                    "issuer": issuer,
                    "client_id": client_id,
                    "secret_changed": bool(secret),
                    "allowed_domains": domains,
                    "role_claim": role_claim,
                    "mapping": json.loads(_dump_mapping(mapping)),
                    "default_role": default_role,
                    "sso_required": bool(data.sso_required),
                    "enabled": bool(data.enabled),
                },
            )
        )
        row = await SsoConnection.select().where(SsoConnection.id == connection_id).first()
    if current is not None and current["issuer"] != issuer:
        forget_provider(current["issuer"])
    assert row is not None
    return _view(row)


async def login_connection(connection_id: int) -> LoginConnection | None:
    row = await SsoConnection.select().where(SsoConnection.id == connection_id).first()
    if row is None:
        return None
    try:
        secret = crypto.box().decrypt(row["client_secret_enc"])
    except crypto.DecryptionError:
        secret = ""
    return LoginConnection(
        id=row["id"],
        organization_id=row["organization"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        client_secret=secret,
        role_claim=row["role_claim"],
        enabled=row["enabled"],
    )


# ---------------------------------------------------------------------------------------
# Claims -> roles (pure)


def claim_values(claims: Mapping[str, Any], role_claim: str) -> list[str]:
    """The values of the role claim: a string, or a list of strings (others ignored)."""
    raw = claims.get(role_claim)
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [v for v in raw if isinstance(v, str)]
    return []


def roles_from_claims(
    values: Iterable[str],
    mapping: Mapping[str, RoleGrant],
    default_role: str,
    root_id: int,
) -> dict[int, CustomerRole]:
    """The memberships the claims grant: for each mapped claim value its role at its node
    (the strongest when several land on one node). When no value is mapped, the default
    role at the group's root, if there is one; else nothing (the person cannot sign in)."""
    granted: dict[int, CustomerRole] = {}
    for value in values:
        grant = mapping.get(value)
        if grant is None:
            continue
        held = granted.get(grant.organization_id)
        if held is None or rank(grant.role) > rank(held):
            granted[grant.organization_id] = grant.role
    if not granted and default_role:
        granted[root_id] = CustomerRole(default_role)
    return granted


# ---------------------------------------------------------------------------------------
# The end of a login

REFUSAL_MESSAGES: dict[str, str] = {
    "no_connection": "Sign-in with a company account is not set up for that email address.",
    "connection_disabled": "Your organization's company sign-in is switched off.",
    "discovery_failed": "Your organization's identity provider could not be reached or is "
    "misconfigured. Try again later, or ask your administrator.",
    "jwks_unavailable": "Your organization's identity provider could not be reached. "
    "Try again later.",
    "state_missing": "This sign-in response is incomplete. Start signing in again.",
    "state_unknown": "This sign-in link has expired or was already used. Start signing in again.",
    "state_other_browser": "This sign-in was started in another browser. Start signing in "
    "again here.",
    "connection_changed": "Your organization's sign-in settings changed while you were "
    "signing in. Start again.",
    "issuer_mismatch": "This sign-in response came from a different identity provider than "
    "the one we sent you to.",
    "issuer_missing": "This sign-in response does not say which identity provider sent it.",
    "provider_error": "Your identity provider did not sign you in.",
    "code_missing": "This sign-in response is incomplete. Start signing in again.",
    "token_exchange_failed": "Your identity provider did not confirm the sign-in. Start "
    "signing in again.",
    "id_token_missing": "Your identity provider did not confirm who you are.",
    "id_token_signature": "The identity token is not signed by your organization's "
    "identity provider.",
    "id_token_unknown_key": "The identity token is not signed by your organization's "
    "identity provider.",
    "id_token_iss": "The identity token was issued by a different identity provider.",
    "id_token_aud": "The identity token was issued for a different application.",
    "id_token_expired": "The identity token has expired. Start signing in again.",
    "id_token_iat": "The identity token is dated in the future. Check your clock and try again.",
    "id_token_nonce": "The identity token does not belong to this sign-in. Start signing in again.",
    "id_token_claims": "The identity token is incomplete.",
    "identity_other_group": "This identity belongs to another organization.",
    "user_inactive": "Your account has been deactivated. Ask your administrator.",
    "no_role": "Your identity provider does not grant you access to Ledgerline. Ask your "
    "administrator.",
    "jit_disabled": "You do not have a Ledgerline account yet. Ask your administrator for "
    "an invitation.",
    "email_missing": "Your identity provider did not share your email address.",
    "email_not_verified": "Your identity provider has not verified your email address.",
    "domain_not_allowed": "Your email domain is not allowed to sign in through this "
    "identity provider.",
    "email_in_use": "An account with your email address already exists but is not linked "
    "to your company sign-in. Ask your administrator.",
}

# Refusals that are decisions about the person (403) rather than a broken exchange (400).
FORBIDDEN_REASONS = frozenset(
    {
        "connection_disabled",
        "identity_other_group",
        "user_inactive",
        "no_role",
        "jit_disabled",
        "email_not_verified",
        "domain_not_allowed",
        "email_in_use",
        "provider_error",
    }
)


class SsoRefused(Exception):
    """A login through SSO was refused; ``reason`` is audited, ``message`` is shown."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.message = REFUSAL_MESSAGES.get(reason, "We could not sign you in.")
        self.status = 403 if reason in FORBIDDEN_REASONS else 400
        super().__init__(f"{reason}: {detail}" if detail else reason)


async def record_refusal(
    reason: str,
    actor: Actor,
    *,
    connection_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Audit a refused SSO login (``login.failed``, method sso, the reason code)."""
    async with transaction():
        await record(
            AuditRecord(
                actor=Actor(type="anonymous", id="", ip=actor.ip, user_agent=actor.user_agent),
                action="login.failed",
                object_type="sso_connection" if connection_id else "",
                object_id=connection_id or "",
                reason_code=reason,
                data={"method": "sso", **(data or {})},
            )
        )


def identity_lock_key(issuer: str, subject: str) -> int:
    """Advisory-lock key for one external identity, or for an email address with
    ``issuer="email"``: serializes whoever provisions or renames that identity."""
    digest = hashlib.sha256(f"sso:{issuer}\n{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class SsoLogin:
    """A successful login: who, and what changed in their memberships."""

    who: SignedIn
    provisioned: bool
    roles: dict[int, CustomerRole] = field(default_factory=dict)


async def complete_login(
    connection_id: int, issuer: str, claims: Mapping[str, Any], actor: Actor
) -> SsoLogin:
    """Sign a person in from validated ID token claims, in one transaction.

    The identity is (issuer, sub). A known identity signs in its user (who must be active
    and of this group); an unknown one is provisioned just in time when the connection has
    a default role and the email is verified, of an allowed domain and not already a
    user's; else refused. The user's memberships become exactly what the claims grant
    (``roles_from_claims``); if that is nothing, the login is refused. Raises
    ``SsoRefused`` (already audited, nothing changed) or returns the signed-in user.
    """
    subject = str(claims.get("sub") or "")
    email = normalize_email(str(claims.get("email") or ""))
    unusable = "\x00" in subject or "\x00" in email
    if unusable:  # PostgreSQL text cannot hold NUL
        subject, email = subject.replace("\x00", ""), email.replace("\x00", "")
    base = {"issuer": issuer, "subject": subject[:255]}
    try:
        if unusable:
            raise SsoRefused("id_token_claims", "NUL character in sub or email")
        return await _complete_login(connection_id, issuer, subject, email, claims, actor)
    except SsoRefused as refused:
        await record_refusal(
            refused.reason,
            actor,
            connection_id=connection_id,
            data={**base, "email": email[:254], "detail": refused.detail[:200]},
        )
        raise


async def _complete_login(
    connection_id: int,
    issuer: str,
    subject: str,
    email: str,
    claims: Mapping[str, Any],
    actor: Actor,
) -> SsoLogin:
    now = datetime.now(UTC)
    async with transaction():
        connection = await for_update(
            SsoConnection.select().where(SsoConnection.id == connection_id)
        )
        if not connection:
            raise SsoRefused("connection_changed", "connection removed")
        conn = connection[0]
        if conn["issuer"] != issuer:
            raise SsoRefused("connection_changed", "issuer changed")
        if not conn["enabled"]:
            raise SsoRefused("connection_disabled")
        if not subject:
            raise SsoRefused("id_token_claims", "no subject")
        root_id = int(conn["organization"])
        await advisory_lock(identity_lock_key(issuer, subject))
        link = (
            await ExternalIdentity.select(ExternalIdentity.id, ExternalIdentity.user)
            .where((ExternalIdentity.issuer == issuer) & (ExternalIdentity.subject == subject))
            .first()
        )
        roles = roles_from_claims(
            claim_values(claims, conn["role_claim"]),
            _load_mapping(conn["claim_role_map"]),
            conn["default_role"],
            root_id,
        )
        if roles:  # a mapped node may have left the group since it was configured
            root = await _root_of(root_id)
            in_group = {
                n["id"]
                for n in await CustomerOrganization.select(CustomerOrganization.id).where(
                    CustomerOrganization.path.like(root["path"] + "%")
                )
            }
            roles = {org: role for org, role in roles.items() if org in in_group}
        provisioned = False
        if link is not None:
            user = (
                await for_update(
                    User.select(
                        User.id, User.name, User.email, User.organization, User.is_active
                    ).where(User.id == link["user"])
                )
            )[0]
            if user["organization"] != root_id:
                raise SsoRefused("identity_other_group", f"user {user['id']}")
            if not user["is_active"]:
                raise SsoRefused("user_inactive", f"user {user['id']}")
            if not roles:
                raise SsoRefused("no_role", "the claims grant no role")
            await ExternalIdentity.update(
                {ExternalIdentity.last_login_at: now, ExternalIdentity.email_at_login: email[:254]}
            ).where(ExternalIdentity.id == link["id"])
            user_id, name = int(user["id"]), user["name"]
            user_email = user["email"]
        else:
            if not conn["default_role"]:
                raise SsoRefused("jit_disabled", "unknown identity")
            if not email or "@" not in email or len(email) > 254:
                raise SsoRefused("email_missing")
            if claims.get("email_verified") is False or claims.get("email_verified") == "false":
                raise SsoRefused("email_not_verified")
            if email_domain(email) not in domains_of(conn["allowed_domains"]):
                raise SsoRefused("domain_not_allowed", email_domain(email))
            if not roles:
                raise SsoRefused("no_role", "the claims grant no role")
            await advisory_lock(identity_lock_key("email", email))
            if await User.exists().where(User.email == email):
                raise SsoRefused("email_in_use")
            name = str(claims.get("name") or "").strip()[:200] or email.split("@")[0]
            [row] = await User.insert(
                User(
                    email=email,
                    name=name,
                    organization=root_id,
                    password_hash="",
                    created_at=now,
                )
            )
            user_id, user_email, provisioned = int(row["id"]), email, True
            await ExternalIdentity.insert(
                ExternalIdentity(
                    issuer=issuer,
                    subject=subject,
                    user=user_id,
                    email_at_login=email,
                    last_login_at=now,
                    created_at=now,
                )
            )
            await record(
                AuditRecord(
                    actor=Actor(
                        type="system",
                        id=f"sso:{connection_id}",
                        ip=actor.ip,
                        user_agent=actor.user_agent,
                    ),
                    action="user.provisioned",
                    object_type="user",
                    object_id=user_id,
                    data={"method": "sso", "issuer": issuer, "subject": subject, "email": email},
                )
            )
        await _apply_roles(user_id, roles, connection_id, actor, now)
        await User.update({User.last_login_at: now}).where(User.id == user_id)
        await record(
            AuditRecord(
                actor=Actor(
                    type="customer", id=str(user_id), ip=actor.ip, user_agent=actor.user_agent
                ),
                action="login.succeeded",
                object_type="user",
                object_id=user_id,
                data={
                    "method": "sso",
                    "connection_id": connection_id,
                    "issuer": issuer,
                    "subject": subject,
                    "provisioned": provisioned,
                },
            )
        )
    return SsoLogin(SignedIn("customer", user_id, name, user_email), provisioned, roles)


async def _apply_roles(
    user_id: int,
    roles: Mapping[int, CustomerRole],
    connection_id: int,
    actor: Actor,
    now: datetime,
) -> None:
    """Make the user's memberships exactly ``roles`` (node -> role), auditing each change."""
    sso_actor = Actor(
        type="system", id=f"sso:{connection_id}", ip=actor.ip, user_agent=actor.user_agent
    )
    current = await Membership.select(
        Membership.id, Membership.organization, Membership.role
    ).where(Membership.user == user_id)
    seen: set[int] = set()
    for m in current:
        org = int(m["organization"])
        wanted = roles.get(org)
        if wanted is None or org in seen:
            await Membership.delete().where(Membership.id == m["id"])
            await record(
                AuditRecord(
                    actor=sso_actor,
                    action="membership.revoked",
                    object_type="user",
                    object_id=user_id,
                    data={"organization_id": org, "role": m["role"], "via": "sso"},
                )
            )
            continue
        seen.add(org)
        if m["role"] != wanted.value:
            await Membership.update({Membership.role: wanted.value}).where(Membership.id == m["id"])
            await record(
                AuditRecord(
                    actor=sso_actor,
                    action="membership.granted",
                    object_type="user",
                    object_id=user_id,
                    data={
                        "organization_id": org,
                        "role": wanted.value,
                        "previous_role": m["role"],
                        "via": "sso",
                    },
                )
            )
    for org, role in sorted(roles.items()):
        if org in seen:
            continue
        await Membership.insert(
            Membership(user=user_id, organization=org, role=role.value, created_at=now)
        )
        await record(
            AuditRecord(
                actor=sso_actor,
                action="membership.granted",
                object_type="user",
                object_id=user_id,
                data={"organization_id": org, "role": role.value, "via": "sso"},
            )
        )
