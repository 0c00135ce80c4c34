"""The chart of accounts every issuing entity posts to."""

from __future__ import annotations

AR = "1100"
AR_FX_REVALUATION = "1190"  # functional-currency revaluation of AR: realized FX differences
CASH = "1000"
STRIPE_BALANCE = "1010"  # clearing: money captured by Stripe, not yet paid out to the bank
UNAPPLIED_CASH = "2100"
TAX_PAYABLE = "2200"
DEFERRED_REVENUE = "2300"
REVENUE = "4000"
SALES_DISCOUNTS = "4100"  # contra-revenue: early-payment discounts, accepted short payments
WRITE_OFF = "6100"
DISPUTE_LOSSES = "6200"  # chargebacks lost and their fees
PROCESSING_FEES = "6300"  # Stripe processing fees on captured payments
FX_GAIN_LOSS = "7100"

CHART: dict[str, tuple[str, str]] = {
    CASH: ("Cash", "asset"),
    STRIPE_BALANCE: ("Stripe balance (clearing)", "asset"),
    AR: ("Accounts receivable", "asset"),
    AR_FX_REVALUATION: ("AR FX revaluation (functional currency)", "asset"),
    UNAPPLIED_CASH: ("Unapplied cash", "liability"),
    TAX_PAYABLE: ("Tax payable", "liability"),
    DEFERRED_REVENUE: ("Deferred revenue", "liability"),
    REVENUE: ("Revenue", "revenue"),
    SALES_DISCOUNTS: ("Sales discounts and settlements", "revenue"),
    WRITE_OFF: ("Bad debt write-off", "expense"),
    DISPUTE_LOSSES: ("Chargeback losses and fees", "expense"),
    PROCESSING_FEES: ("Payment processing fees", "expense"),
    FX_GAIN_LOSS: ("Realized FX gain/loss", "expense"),
}
