"""Single sign-on (OpenID Connect) per customer group.

This module starts with the lookup the sign-in page needs: which connection, if any,
serves an email address's domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.identity.tables import SsoConnection


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
