"""Tax registrations, rates, provider settings and calculation records. tables."""

from __future__ import annotations

from decimal import Decimal

from piccolo.columns import Date, ForeignKey, Integer, Numeric, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import CustomerOrganization


class TaxRate(Table, tablename="tax_rate"):
    """Overrides of the built-in rates: per country, optional region, and tax code."""

    country = Varchar(length=2)
    region = Varchar(length=8, default="")
    tax_code = Varchar(length=32, default="STD")
    rate = Numeric(digits=(9, 6), default=Decimal(0))
    description = Varchar(length=200, default="")
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class TaxProviderSettings(Table, tablename="tax_provider_settings"):
    """One row: which provider computes tax (rules | http) and how to reach the HTTP one."""

    provider = Varchar(length=16, default="rules")
    base_url = Varchar(length=300, default="")
    timeout_ms = Integer(default=2000)
    company_code = Varchar(length=64, default="")
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class TaxExemption(Table, tablename="tax_exemption"):
    """A customer organization exempt from tax, with its certificate reference."""

    organization = ForeignKey(
        CustomerOrganization, index=True, null=False, on_delete=OnDelete.restrict
    )
    certificate_ref = Varchar(length=100)
    country = Varchar(length=2, default="")
    valid_until = Date(null=True, default=None)
    note = Text(default="")
    created_by = Varchar(length=64, default="")
    created_at = Timestamptz()
