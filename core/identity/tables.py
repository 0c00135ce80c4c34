"""Identity tables: issuing entities, the customer organization tree, billing accounts,
users with their memberships, and staff users."""

from __future__ import annotations

from piccolo.columns import (
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
