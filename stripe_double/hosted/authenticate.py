"""The 3-D Secure test page that ``next_action.redirect_to_url.url`` points to."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stripe_double import charging
from stripe_double.asgi import Request, Response, html_response, redirect
from stripe_double.hosted.layout import amount, notice, page
from stripe_double.state import State

KINDS = ("payment_intent", "setup_intent")


async def show(state: State, req: Request, id: str) -> Response:
    async with state.lock:
        intent = _intent(state, id)
        if intent is None:
            return html_response(404, notice("Not found", "There is no such payment to confirm."))
        if intent["status"] != "requires_action":
            return html_response(
                409,
                notice(
                    "Nothing to authenticate",
                    f"This {intent['object'].replace('_', ' ')} has a status of "
                    f"{intent['status']}.",
                ),
            )
        card = state.find(intent["payment_method"] or "")
        return html_response(200, render(intent, card))


async def submit(state: State, req: Request, id: str) -> Response:
    form = dict(parse_qsl(req.body.decode("utf-8", errors="replace")))
    result = form.get("result")
    async with state.lock:
        intent = _intent(state, id)
        if intent is None:
            return html_response(404, notice("Not found", "There is no such payment to confirm."))
        if result not in ("complete", "fail"):
            card = state.find(intent["payment_method"] or "")
            return html_response(422, render(intent, card))
        ctx = state.ctx(req.base_url)
        status = charging.authenticate(ctx, intent, result == "complete")
        return_url = state.meta[intent["id"]].get("return_url")
    redirect_status = "succeeded" if status in ("succeeded", "processing") else "failed"
    if return_url:
        return redirect(_with_query(return_url, intent, redirect_status))
    title = "Authentication complete" if redirect_status == "succeeded" else "Authentication failed"
    return html_response(
        200, notice(title, f"The status is now {status}. You can close this page.")
    )


def _intent(state: State, intent_id: str) -> dict[str, Any] | None:
    intent = state.find(intent_id)
    if intent is None or intent["object"] not in KINDS:
        return None
    return intent


def _with_query(url: str, intent: dict[str, Any], redirect_status: str) -> str:
    kind = intent["object"]
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [
        (kind, intent["id"]),
        (f"{kind}_client_secret", intent["client_secret"]),
        ("redirect_status", redirect_status),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def render(intent: dict[str, Any], pm: dict[str, Any] | None) -> str:
    last4 = pm["card"]["last4"] if pm else "????"
    if intent["object"] == "payment_intent":
        what = f"a payment of {amount(intent['amount'], intent['currency'])}"
    else:
        what = "saving your card for future payments"
    body = (
        '<p class="badge">Test mode: Stripe test double</p>\n'
        "<h1>3-D Secure authentication</h1>\n"
        f"<p>Your bank asks you to confirm {escape(what)} with the card ending in "
        f"{escape(last4)}.</p>\n"
        f'<form method="post" action="/_hosted/authenticate/{escape(intent["id"])}">'
        "<p>This is a test page: choose the outcome.</p>"
        '<button type="submit" name="result" value="complete">Complete authentication</button> '
        '<button type="submit" name="result" value="fail" class="secondary">'
        "Fail authentication</button></form>"
    )
    return page("3-D Secure authentication: Stripe test double", body)
