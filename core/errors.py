"""Typed failures that services raise and the portal turns into messages.

``ValidationFailed`` carries per-field messages suitable to show a user; ``NotFound``
is also what an object outside the caller's scope looks like; ``Conflict`` is a
state clash (e.g. paying a void invoice).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class for failures a user can be told about."""


class ValidationFailed(DomainError):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class NotFound(DomainError):
    def __init__(self, what: str = "object") -> None:
        self.what = what
        super().__init__(f"{what} not found")


class Conflict(DomainError):
    pass
