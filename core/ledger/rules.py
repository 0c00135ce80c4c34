"""Pure double-entry rules: a journal entry is a set of lines whose debits equal its
credits, in one currency, with no negative or empty lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class UnbalancedEntryError(ValueError):
    """Debits and credits differ, or a line is malformed; nothing is posted."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    account: str  # ledger account code
    debit_minor: int = 0
    credit_minor: int = 0
    billing_account_id: int | None = None
    tax_code: str = ""


def debit(account: str, amount_minor: int, **extra: object) -> LineSpec:
    return LineSpec(account=account, debit_minor=amount_minor, **extra)  # type: ignore[arg-type]


def credit(account: str, amount_minor: int, **extra: object) -> LineSpec:
    return LineSpec(account=account, credit_minor=amount_minor, **extra)  # type: ignore[arg-type]


def check_balanced(lines: Sequence[LineSpec]) -> int:
    """Return the entry's total; raise ``UnbalancedEntryError`` unless it balances."""
    if not lines:
        raise UnbalancedEntryError("a journal entry needs at least one line")
    for line in lines:
        if line.debit_minor < 0 or line.credit_minor < 0:
            raise UnbalancedEntryError(f"negative amount on account {line.account}")
        if (line.debit_minor == 0) == (line.credit_minor == 0):
            raise UnbalancedEntryError(
                f"line on account {line.account} must be either a debit or a credit"
            )
    debits = sum(line.debit_minor for line in lines)
    credits = sum(line.credit_minor for line in lines)
    if debits != credits:
        raise UnbalancedEntryError(f"debits {debits} != credits {credits}")
    return debits


def without_zero_lines(lines: Sequence[LineSpec]) -> list[LineSpec]:
    """Drop zero-amount lines (e.g. no tax on an invoice) before checking."""
    return [line for line in lines if line.debit_minor or line.credit_minor]
