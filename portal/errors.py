"""Exception handlers: HTML pages for people, RFC 9457 problem+json for the API.

No input produces a 500 with a stack trace; unexpected errors are logged with the
request id and shown as a plain error page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.security import NotPermitted
from portal.auth import SignInIncomplete

log = structlog.get_logger("ledgerline.errors")

TITLES = {
    400: "That request could not be understood",
    401: "Please sign in",
    403: "You don't have access to this",
    404: "Page not found",
    405: "Method not allowed",
    409: "That conflicts with the current state",
    422: "Please check your input",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Service unavailable",
}


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/health"


def problem(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    return Response(body, status_code=status, media_type="application/problem+json")


def _page(request: Request[Any, Any, Any], status: int, detail: str) -> Response[Any]:
    return Template(
        template_name="error.html",
        context={"status": status, "title": TITLES.get(status, "Error"), "detail": detail},
        status_code=status,
        media_type=MediaType.HTML,
    )


def _respond(request: Request[Any, Any, Any], status: int, detail: str, **extra: Any) -> Response:
    incomplete = extra.pop("incomplete", False)
    if _wants_json(request):
        return problem(status, detail, **extra)
    if status == 401 and incomplete:
        return Redirect("/login/continue")
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(target)}")
    return _page(request, status, detail)


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail if status < 500 else "Please try again in a moment."
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        detail = "Some parameters are invalid."
        extra["errors"] = exc.extra
    if isinstance(exc, NotFoundException):
        detail = "We could not find that page."
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        detail = "Your form expired or was sent from elsewhere. Reload the page and try again."
    if isinstance(exc, NotAuthorizedException):
        detail = "Please sign in."
        if isinstance(exc, SignInIncomplete):
            detail = "Finish signing in."
            extra["incomplete"] = True
    return _respond(request, status, detail, **extra)


def handle_domain(request: Request[Any, Any, Any], exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return _respond(request, 404, "We could not find that.")
    if isinstance(exc, ValidationFailed):
        return _respond(request, 422, str(exc), errors=exc.errors)
    if isinstance(exc, Conflict):
        return _respond(request, 409, str(exc))
    if isinstance(exc, NotPermitted):
        return _respond(request, 403, str(exc) or "Your role does not allow this.")
    return handle_unexpected(request, exc)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path)
    return _respond(request, HTTP_500_INTERNAL_SERVER_ERROR, "Please try again in a moment.")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: handle_http,
    NotFound: handle_domain,
    ValidationFailed: handle_domain,
    Conflict: handle_domain,
    NotPermitted: handle_domain,
    Exception: handle_unexpected,
}
