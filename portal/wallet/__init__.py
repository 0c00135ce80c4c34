"""Saved payment methods, autopay enrollment, receipts and the payment history."""

from typing import Any

from portal.wallet.pages import WalletController

ROUTES: list[Any] = [WalletController]  # mounted by portal.app
