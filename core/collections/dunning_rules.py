"""Pure dunning rules: schedules as day offsets from the due date, and which step (if any)
an invoice is due for on a given day. Plain values in, plain values out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

DEFAULT_OFFSETS: tuple[int, ...] = (-3, 0, 7, 14, 30)
MIN_OFFSET, MAX_OFFSET = -60, 365
MAX_STEPS = 12


class ScheduleError(ValueError):
    """A schedule text that is not a list of whole day offsets."""


def parse_offsets(text: str) -> tuple[int, ...]:
    """``"-3, 0, +7, 14"`` → ``(-3, 0, 7, 14)`` (sorted, distinct); refuses anything else."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ScheduleError("Give at least one day offset, e.g. -3, 0, 7, 14, 30.")
    offsets: set[int] = set()
    for part in parts:
        body = part[1:] if part[:1] in "+-" else part
        if not body.isdigit() or len(body) > 4:
            raise ScheduleError(f"{part!r} is not a whole number of days.")
        value = int(part)
        if not MIN_OFFSET <= value <= MAX_OFFSET:
            raise ScheduleError(
                f"Offsets must lie between {MIN_OFFSET} and +{MAX_OFFSET} days; got {value}."
            )
        offsets.add(value)
    if len(offsets) > MAX_STEPS:
        raise ScheduleError(f"At most {MAX_STEPS} steps.")
    return tuple(sorted(offsets))


def format_offsets(offsets: Iterable[int]) -> str:
    return ", ".join(f"{o:+d}" if o else "0" for o in sorted(offsets))


def step_label(offset: int) -> str:
    if offset < 0:
        return f"{-offset} day{'s' if offset != -1 else ''} before due"
    if offset == 0:
        return "on the due date"
    return f"{offset} day{'s' if offset != 1 else ''} overdue"


def step_date(due: date, offset: int) -> date:
    return due + timedelta(days=offset)


def current_step(offsets: Sequence[int], due: date, today: date) -> int | None:
    """The latest step whose day has come (``due + offset <= today``), or None. Earlier
    steps missed (e.g. while paused) are not sent late: only the current one counts."""
    reached = [o for o in offsets if step_date(due, o) <= today]
    return max(reached) if reached else None


def next_step(offsets: Sequence[int], due: date, today: date) -> int | None:
    upcoming = [o for o in offsets if step_date(due, o) > today]
    return min(upcoming) if upcoming else None


@dataclass(frozen=True, slots=True)
class Pause:
    """A pause window: active from creation until ``until`` (inclusive) unless lifted."""

    until: date | None = None
    lifted: bool = False

    def active(self, today: date) -> bool:
        return not self.lifted and (self.until is None or today <= self.until)


@dataclass(frozen=True, slots=True)
class InvoiceDunning:
    """What the rules need to know about one invoice on one day."""

    status: str  # open, paid, void, uncollectible, draft
    balance_minor: int
    due_date: date | None
    disputed: bool = False  # open chargeback or customer dispute
    pauses: tuple[Pause, ...] = ()  # on the invoice and on its billing account
    promised_until: tuple[date, ...] = ()  # open promises to pay (inclusive dates)


def blocked_reason(invoice: InvoiceDunning, today: date) -> str | None:
    """Why no reminder may go out for this invoice today, or None when one may."""
    if invoice.status != "open":
        return f"invoice {invoice.status}"
    if invoice.balance_minor <= 0:
        return "nothing due"
    if invoice.due_date is None:
        return "no due date"
    if invoice.disputed:
        return "disputed"
    if any(p.active(today) for p in invoice.pauses):
        return "paused"
    if any(today <= d for d in invoice.promised_until):
        return "promise to pay"
    return None


def step_to_send(
    invoice: InvoiceDunning, offsets: Sequence[int], today: date, done: Collection[int]
) -> int | None:
    """The step to remind about today, or None: never for a blocked invoice, never a step
    already in ``done`` (reminders recorded for this invoice, whatever their status)."""
    if blocked_reason(invoice, today) is not None:
        return None
    assert invoice.due_date is not None
    step = current_step(offsets, invoice.due_date, today)
    if step is None or step in done:
        return None
    return step
