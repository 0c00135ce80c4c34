"""Fault injection for crash-safety tests: named points in the charge and settle paths.

Inert unless a test arms a point: ``arm("after_stripe")`` makes the next pass through
that point raise ``InjectedCrash`` (once), simulating a process dying there. Points:

* ``before_stripe``: the attempt is marked ``unknown``, Stripe not called yet;
* ``after_stripe``: Stripe answered, nothing of the answer is recorded;
* ``before_commit``: inside our recording transaction (it rolls back);
* ``after_commit``: our transaction committed, the caller never heard back.
"""

from __future__ import annotations

POINTS = ("before_stripe", "after_stripe", "before_commit", "after_commit")
_armed: set[str] = set()


class InjectedCrash(RuntimeError):
    """A simulated crash at a fault point (tests only)."""


def arm(point: str) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    _armed.add(point)


def disarm_all() -> None:
    _armed.clear()


def hit(point: str) -> None:
    """Called at each fault point; raises once when the point is armed."""
    if point in _armed:
        _armed.discard(point)
        raise InjectedCrash(point)
