"""Stripe's error format: ``{"error": {"type", "code", "decline_code", "message", "param", …}}``.

``saved`` says whether an idempotent request that ended in this error keeps its response
for replay: Stripe saves results once an endpoint has begun executing (card errors,
state errors), not for failed parameter validation or for conflicts.
"""

from __future__ import annotations

from typing import Any

ERROR_DOCS = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        saved: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.saved = saved
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = ERROR_DOCS + self.code.replace("_", "-")
        if self.decline_code:
            error["decline_code"] = self.decline_code
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(
    message: str, *, param: str | None = None, code: str | None = None, saved: bool = False
) -> StripeError:
    """400 invalid_request_error; by default a validation error (not saved for replay)."""
    return StripeError(400, "invalid_request_error", message, code=code, param=param, saved=saved)


def state_error(message: str, *, code: str | None = None, param: str | None = None) -> StripeError:
    """400 for a request that began executing but the object's state forbids it (saved)."""
    return StripeError(400, "invalid_request_error", message, code=code, param=param, saved=True)


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
        saved=False,
    )


def unknown_param(name: str) -> StripeError:
    return invalid(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def missing_param(name: str) -> StripeError:
    return invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")


def unauthenticated(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message, saved=False)
