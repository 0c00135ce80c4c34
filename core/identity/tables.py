"""Identity tables: issuing entities, the customer organization tree, billing accounts,
users with their memberships, and staff users."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class IssuingEntity(Table, tablename="issuing_entity"):
    """One of the seller's own legal entities; invoices are issued by one."""

    code = Varchar(length=16, unique=True)  # short code used in document numbers: "US", "DE"
    name = Varchar(length=200)
    legal_name = Varchar(length=200)
    country = Varchar(length=2)
    functional_currency = Varchar(length=3)
    tax_registration = Varchar(length=64, default="")
    address = Text(default="")


class CustomerOrganization(Table, tablename="customer_organization"):
    """A node of a customer's group tree (parent group, subsidiaries, ...).

    ``path`` is the materialized path of ids from the root, e.g. ``/3/7/``; the subtree
    of a node is every row whose path starts with the node's path.
    """

    name = Varchar(length=200)
    parent = ForeignKey("self", null=True, default=None, on_delete=OnDelete.restrict)
    root_id = BigInt(null=True, default=None, index=True)
    path = Varchar(length=512, default="", index=True, index_method=IndexMethod.btree)
    depth = Integer(default=0)
    tax_id = Varchar(length=64, default="")
    address = Text(default="")
    country = Varchar(length=2, default="")
    region = Varchar(length=8, default="")  # state/province for regional tax, e.g. "CA"
    approval_threshold_minor = BigInt(null=True, default=None)


class BillingAccount(Table, tablename="billing_account"):
    """Belongs to one organization node; carries currency, timezone and terms."""

    code = Varchar(length=32, unique=True)
    name = Varchar(length=200)
    organization = ForeignKey(
        CustomerOrganization, index=True, null=False, on_delete=OnDelete.restrict
    )
    issuing_entity = ForeignKey(IssuingEntity, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    timezone = Varchar(length=64, default="UTC")
    payment_terms_days = Integer(default=30)
    bill_to_email = Varchar(length=254, default="")


class User(Table, tablename="customer_user"):
    """A person of a customer organization."""

    email = Varchar(length=254, unique=True)
    name = Varchar(length=200)
    organization = ForeignKey(
        CustomerOrganization, null=False, on_delete=OnDelete.restrict
    )  # the root of their group
    password_hash = Varchar(length=255, default="")
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    last_login_at = Timestamptz(null=True, default=None)


class Membership(Table, tablename="membership"):
    """A role held at one node; applies to the node's whole subtree."""

    user = ForeignKey(User, index=True, null=False, on_delete=OnDelete.restrict)
    organization = ForeignKey(CustomerOrganization, null=False, on_delete=OnDelete.restrict)
    role = Varchar(length=32)
    created_at = Timestamptz()


class StaffUser(Table, tablename="staff_user"):
    """The seller's own people."""

    email = Varchar(length=254, unique=True)
    name = Varchar(length=200)
    role = Varchar(length=32)
    password_hash = Varchar(length=255, default="")
    is_active = Boolean(default=True)
    created_at = Timestamptz()


class MfaFactor(Table, tablename="mfa_factor"):
    """A TOTP authenticator of a customer or staff user (secret encrypted at rest).

    ``last_step`` is the last accepted RFC 6238 time step: a code of that step or an
    earlier one is refused (replay prevention, RFC 6238 section 5.2).
    """

    principal_kind = Varchar(length=16)  # "customer" or "staff"
    principal_id = BigInt()
    secret_enc = Text()
    confirmed_at = Timestamptz(null=True, default=None)
    last_step = BigInt(default=0)
    created_at = Timestamptz()


class RecoveryCode(Table, tablename="recovery_code"):
    principal_kind = Varchar(length=16)
    principal_id = BigInt(index=True)
    code_hash = Varchar(length=255)
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class PasswordResetToken(Table, tablename="password_reset_token"):
    principal_kind = Varchar(length=16)
    principal_id = BigInt()
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class Invitation(Table, tablename="invitation"):
    """A single-use, expiring link that lets a person join at a node with a role."""

    email = Varchar(length=254)
    organization = ForeignKey(CustomerOrganization, null=False, on_delete=OnDelete.restrict)
    role = Varchar(length=32)
    token_hash = Varchar(length=64, unique=True)
    invited_by = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    expires_at = Timestamptz()
    accepted_at = Timestamptz(null=True, default=None)
    accepted_user = BigInt(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class SsoConnection(Table, tablename="sso_connection"):
    """A customer group's OpenID Connect provider (one per root organization)."""

    organization = ForeignKey(
        CustomerOrganization, null=False, unique=True, on_delete=OnDelete.restrict
    )
    issuer = Varchar(length=500)
    client_id = Varchar(length=200)
    client_secret_enc = Text()
    allowed_domains = Text(default="")  # comma-separated, lower case
    role_claim = Varchar(length=64, default="groups")
    claim_role_map = JSON(default="{}")  # claim value -> {"role": ..., "organization_id": ...}
    default_role = Varchar(length=32, default="")  # empty: no just-in-time provisioning
    sso_required = Boolean(default=False)
    enabled = Boolean(default=True)
    updated_at = Timestamptz()


class ExternalIdentity(Table, tablename="external_identity"):
    """Links a user to an identity at a provider, keyed by (issuer, subject)."""

    issuer = Varchar(length=500)
    subject = Varchar(length=255)
    user = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    email_at_login = Varchar(length=254, default="")
    last_login_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class AssistedSession(Table, tablename="assisted_session"):
    """A support agent's consented, bounded session acting as a customer user."""

    agent = ForeignKey(StaffUser, null=False, on_delete=OnDelete.restrict)
    user = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    reason = Text()
    ticket_ref = Varchar(length=64)
    status = Varchar(length=16, default="requested")  # requested granted denied ended expired
    access = Varchar(length=8, default="view")  # view | act
    minutes = Integer(default=30)
    requested_at = Timestamptz()
    decided_at = Timestamptz(null=True, default=None)
    decided_by = BigInt(null=True, default=None)
    expires_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)
    ended_by = Varchar(length=64, default="")


class SecurityFlag(Table, tablename="security_flag"):
    """Raised when failures repeat from one address or against one account."""

    kind = Varchar(length=32)  # login_failures_ip, login_failures_account, lockout, mfa_failures
    subject = Varchar(length=254)
    count = Integer(default=0)
    first_seen = Timestamptz()
    last_seen = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)
    resolved_by = BigInt(null=True, default=None)
