"""Roles and what they allow. Customer roles are ordered: each includes the ones below."""

from __future__ import annotations

from enum import StrEnum


class CustomerRole(StrEnum):
    VIEWER = "viewer"
    PAYER = "payer"
    APPROVER = "approver"
    ADMIN = "admin"


class StaffRole(StrEnum):
    SUPPORT_AGENT = "support_agent"
    BILLING_OPS = "billing_ops"
    COLLECTIONS = "collections"
    FINANCE_ADMIN = "finance_admin"
    AUDITOR = "auditor"


_CUSTOMER_RANK = {
    CustomerRole.VIEWER: 1,
    CustomerRole.PAYER: 2,
    CustomerRole.APPROVER: 3,
    CustomerRole.ADMIN: 4,
}

CUSTOMER_ROLE_LABELS = {
    CustomerRole.VIEWER: "Viewer",
    CustomerRole.PAYER: "Payer",
    CustomerRole.APPROVER: "Approver",
    CustomerRole.ADMIN: "Administrator",
}


def rank(role: CustomerRole | str) -> int:
    return _CUSTOMER_RANK[CustomerRole(role)]


def strongest(roles: list[CustomerRole]) -> CustomerRole | None:
    return max(roles, key=rank) if roles else None


def at_least(role: CustomerRole | str | None, required: CustomerRole) -> bool:
    return role is not None and rank(role) >= rank(required)
