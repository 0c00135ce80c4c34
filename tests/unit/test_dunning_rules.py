"""Dunning schedule rules: which step an invoice is due for, and never for the wrong one."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.collections.dunning_rules import (
    DEFAULT_OFFSETS,
    InvoiceDunning,
    Pause,
    ScheduleError,
    blocked_reason,
    current_step,
    format_offsets,
    next_step,
    parse_offsets,
    step_label,
    step_to_send,
)

DUE = date(2026, 3, 15)
offsets_st = st.lists(st.integers(-60, 365), min_size=1, max_size=12, unique=True).map(
    lambda xs: tuple(sorted(xs))
)
days_st = st.integers(-90, 400).map(lambda n: DUE + timedelta(days=n))


def open_invoice(**changes: object) -> InvoiceDunning:
    base = {"status": "open", "balance_minor": 1000, "due_date": DUE}
    return InvoiceDunning(**{**base, **changes})  # type: ignore[arg-type]


def test_default_schedule_steps() -> None:
    inv = open_invoice()
    assert DEFAULT_OFFSETS == (-3, 0, 7, 14, 30)
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE - timedelta(days=4), ()) is None
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE - timedelta(days=3), ()) == -3
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE - timedelta(days=1), {-3}) is None
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE, {-3}) == 0
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE + timedelta(days=9), {-3, 0}) == 7
    # Missed steps are not sent late: only the current one.
    assert step_to_send(inv, DEFAULT_OFFSETS, DUE + timedelta(days=40), ()) == 30
    assert next_step(DEFAULT_OFFSETS, DUE, DUE + timedelta(days=8)) == 14
    assert next_step(DEFAULT_OFFSETS, DUE, DUE + timedelta(days=30)) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "paid", "balance_minor": 0}, "invoice paid"),
        ({"status": "void"}, "invoice void"),
        ({"balance_minor": 0}, "nothing due"),
        ({"disputed": True}, "disputed"),
        ({"pauses": (Pause(),)}, "paused"),
        ({"pauses": (Pause(until=DUE + timedelta(days=20)),)}, "paused"),
        ({"promised_until": (DUE + timedelta(days=20),)}, "promise to pay"),
    ],
)
def test_blocked_invoices_get_nothing(changes: dict[str, object], reason: str) -> None:
    inv = open_invoice(**changes)
    today = DUE + timedelta(days=10)
    assert blocked_reason(inv, today) == reason
    assert step_to_send(inv, DEFAULT_OFFSETS, today, ()) is None


def test_pause_and_promise_end_after_their_day() -> None:
    until = DUE + timedelta(days=10)
    paused = open_invoice(pauses=(Pause(until=until),), promised_until=(until,))
    assert step_to_send(paused, DEFAULT_OFFSETS, until, ()) is None
    assert step_to_send(paused, DEFAULT_OFFSETS, until + timedelta(days=1), ()) == 7
    lifted = open_invoice(pauses=(Pause(lifted=True),))
    assert step_to_send(lifted, DEFAULT_OFFSETS, DUE, ()) == 0


def test_parse_offsets() -> None:
    assert parse_offsets(" -3, 0, +7,14 ,30,7") == (-3, 0, 7, 14, 30)
    assert format_offsets((-3, 0, 7)) == "-3, 0, +7"
    for bad in ("", "a", "1.5", "7 days", "-61", "366", ",".join(str(i) for i in range(13))):
        with pytest.raises(ScheduleError):
            parse_offsets(bad)
    assert step_label(-1) == "1 day before due"
    assert step_label(0) == "on the due date"
    assert step_label(14) == "14 days overdue"


@given(offsets_st)
def test_format_then_parse_round_trips(offsets: tuple[int, ...]) -> None:
    assert parse_offsets(format_offsets(offsets)) == offsets


@given(
    offsets_st,
    days_st,
    st.sampled_from(["paid", "void", "uncollectible", "draft"]),
    st.booleans(),
    st.frozensets(st.integers(-60, 365)),
)
def test_never_a_step_for_a_closed_disputed_or_paused_invoice(
    offsets: tuple[int, ...],
    today: date,
    closed_status: str,
    lifted: bool,
    done: frozenset[int],
) -> None:
    for inv in (
        open_invoice(status=closed_status),
        open_invoice(balance_minor=0),
        open_invoice(disputed=True),
        open_invoice(pauses=(Pause(lifted=lifted), Pause())),
        open_invoice(pauses=(Pause(until=today),)),
        open_invoice(promised_until=(today + timedelta(days=1), today - timedelta(days=5))),
    ):
        assert step_to_send(inv, offsets, today, done) is None


@given(offsets_st, st.lists(days_st, max_size=40))
def test_at_most_one_reminder_per_step_whatever_the_run_order(
    offsets: tuple[int, ...], run_days: list[date]
) -> None:
    """Runs on any days, repeated, in any order: every step goes out at most once, and
    only once its day has come."""
    inv = open_invoice()
    sent: list[int] = []
    for day in run_days:
        step = step_to_send(inv, offsets, day, set(sent))
        if step is not None:
            assert DUE + timedelta(days=step) <= day
            assert step in offsets
            sent.append(step)
    assert len(sent) == len(set(sent))


@given(offsets_st)
def test_daily_runs_send_every_step_once(offsets: tuple[int, ...]) -> None:
    inv = open_invoice()
    sent: list[int] = []
    day = DUE + timedelta(days=offsets[0] - 1)
    while day <= DUE + timedelta(days=offsets[-1] + 2):
        for _ in range(2):  # twice a day
            step = step_to_send(inv, offsets, day, set(sent))
            if step is not None:
                sent.append(step)
        day += timedelta(days=1)
    assert sent == list(offsets)


@given(offsets_st, days_st, days_st)
def test_current_step_moves_forward_with_time(offsets: tuple[int, ...], a: date, b: date) -> None:
    early, late = sorted((a, b))
    first, second = current_step(offsets, DUE, early), current_step(offsets, DUE, late)
    if first is not None:
        assert second is not None
        assert second >= first
