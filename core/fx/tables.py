"""Exchange rates (manual and ECB reference rates). tables."""

from __future__ import annotations

from piccolo.columns import Date, Numeric, Timestamptz, Varchar
from piccolo.table import Table


class ExchangeRate(Table, tablename="exchange_rate"):
    """``1 base = rate quote`` on ``rate_date``, from ``source`` (ecb, manual)."""

    base = Varchar(length=3)
    quote = Varchar(length=3)
    rate = Numeric(digits=(20, 10))
    rate_date = Date(index=True)
    source = Varchar(length=32)
    created_by = Varchar(length=64, default="")
    created_at = Timestamptz()
