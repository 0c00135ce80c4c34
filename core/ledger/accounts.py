"""The chart of accounts every issuing entity posts to."""

from __future__ import annotations

AR = "1100"
CASH = "1000"
UNAPPLIED_CASH = "2100"
TAX_PAYABLE = "2200"
DEFERRED_REVENUE = "2300"
REVENUE = "4000"
WRITE_OFF = "6100"
FX_GAIN_LOSS = "7100"

CHART: dict[str, tuple[str, str]] = {
    CASH: ("Cash", "asset"),
    AR: ("Accounts receivable", "asset"),
    UNAPPLIED_CASH: ("Unapplied cash", "liability"),
    TAX_PAYABLE: ("Tax payable", "liability"),
    DEFERRED_REVENUE: ("Deferred revenue", "liability"),
    REVENUE: ("Revenue", "revenue"),
    WRITE_OFF: ("Bad debt write-off", "expense"),
    FX_GAIN_LOSS: ("Realized FX gain/loss", "expense"),
}
