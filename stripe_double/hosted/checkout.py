"""The hosted checkout page at a session's ``url``: a plain card form, no JavaScript."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from stripe_double import cards
from stripe_double.asgi import Request, Response, html_response, redirect
from stripe_double.errors import StripeError
from stripe_double.hosted.layout import amount, notice, page
from stripe_double.resources import checkout_sessions, payment_methods
from stripe_double.state import Ctx, State

_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*$")
FIELDS = {
    "email": ("Email", "email", "email", None),
    "card_number": (
        "Card number",
        "cc-number",
        "text",
        "Use a test card, e.g. 4242 4242 4242 4242.",
    ),
    "card_expiry": ("Expiry date (MM / YY)", "cc-exp", "text", None),
    "card_cvc": ("Security code (CVC)", "cc-csc", "text", None),
    "name": ("Name on card", "cc-name", "text", None),
}


async def show(state: State, req: Request, id: str) -> Response:
    async with state.lock:
        ctx = state.ctx(req.base_url)
        session = _session(ctx, id)
        if session is None:
            return _not_found()
        closed = _closed(session)
        if closed is not None:
            return closed
        return html_response(200, render(ctx, session, {}, {}, None))


async def submit(state: State, req: Request, id: str) -> Response:
    form = dict(parse_qsl(req.body.decode("utf-8", errors="replace"), keep_blank_values=True))
    async with state.lock:
        ctx = state.ctx(req.base_url)
        session = _session(ctx, id)
        if session is None:
            return _not_found()
        closed = _closed(session)
        if closed is not None:
            return closed
        errors, card, expiry = _validate(ctx, form)
        if errors or card is None or expiry is None:
            return html_response(422, render(ctx, session, form, errors, None))
        outcome, target = checkout_sessions.pay_with_card(
            ctx,
            session,
            card,
            exp_month=expiry[0],
            exp_year=expiry[1],
            name=form.get("name", "").strip(),
            email=form.get("email", "").strip(),
        )
        if outcome == "declined":
            return html_response(402, render(ctx, session, form, {}, target))
        return redirect(target)


async def after_authentication(state: State, req: Request, id: str) -> Response:
    async with state.lock:
        ctx = state.ctx(req.base_url)
        session = _session(ctx, id)
        if session is None:
            return _not_found()
        outcome, target = checkout_sessions.after_authentication(ctx, session)
        if outcome == "complete":
            return redirect(target)
        return html_response(402, render(ctx, session, {}, {}, target))


def _session(ctx: Ctx, session_id: str) -> dict[str, Any] | None:
    session = ctx.state.find(session_id)
    if session is None or session["object"] != "checkout.session":
        return None
    return checkout_sessions.refresh(ctx, session)


def _closed(session: dict[str, Any]) -> Response | None:
    if session["status"] == "complete":
        link = (checkout_sessions.success_location(session), "Return to the merchant")
        return html_response(
            200, notice("Payment complete", "This checkout session is already complete.", link)
        )
    if session["status"] == "expired":
        link = (session["cancel_url"], "Return to the merchant") if session["cancel_url"] else None
        return html_response(
            410, notice("Session expired", "This checkout session has expired.", link)
        )
    return None


def _not_found() -> Response:
    return html_response(404, notice("Not found", "There is no such checkout session."))


def _validate(
    ctx: Ctx, form: dict[str, str]
) -> tuple[dict[str, str], cards.CardSpec | None, tuple[int, int] | None]:
    errors: dict[str, str] = {}
    card = None
    expiry = None
    number = form.get("card_number", "").strip()
    if not number:
        errors["card_number"] = "Enter a card number."
    else:
        try:
            card = cards.from_number(number)
        except StripeError as exc:
            errors["card_number"] = exc.message
    match = _EXPIRY.match(form.get("card_expiry", ""))
    if not match:
        errors["card_expiry"] = "Enter the expiry date as MM / YY."
    else:
        month, year = int(match.group(1)), int(match.group(2))
        try:
            payment_methods.check_expiry(ctx, month, year)
            expiry = (month, year + 2000 if year < 100 else year)
        except StripeError as exc:
            errors["card_expiry"] = exc.message
    cvc = form.get("card_cvc", "").strip()
    if not (cvc.isdigit() and len(cvc) in (3, 4)):
        errors["card_cvc"] = "Enter the 3 or 4 digit security code."
    email = form.get("email", "").strip()
    if email and "@" not in email:
        errors["email"] = "Enter an email address like name@example.com."
    return errors, card, expiry


def render(
    ctx: Ctx,
    session: dict[str, Any],
    form: dict[str, str],
    errors: dict[str, str],
    failure: str | None,
) -> str:
    paying = session["mode"] == "payment"
    total = amount(session["amount_total"], session["currency"]) if paying else ""
    title = f"Pay {total}" if paying else "Save a card"
    parts = ['<p class="badge">Test mode: Stripe test double</p>', f"<h1>{escape(title)}</h1>"]
    if paying:
        parts.append(_summary(ctx, session))
    else:
        parts.append("<p>Your card will be saved for future payments. Nothing is charged now.</p>")
    if errors:
        items = "".join(
            f'<li><a href="#{name.replace("_", "-")}">{escape(message)}</a></li>'
            for name, message in errors.items()
        )
        parts.append(
            f'<div class="error" role="alert"><p>Please correct the following:</p><ul>{items}</ul>'
            "</div>"
        )
    if failure:
        parts.append(f'<div class="error" role="alert"><p>{escape(failure)}</p></div>')
    fields = []
    defaults = {"email": session["customer_email"] or ""}
    for name, (label, autocomplete, kind, hint) in FIELDS.items():
        field_id = name.replace("_", "-")
        described = []
        extra = ""
        if hint:
            described.append(f"{field_id}-hint")
        if name in errors:
            described.append(f"{field_id}-error")
            extra += ' aria-invalid="true"'
        if name != "email" and name != "name":
            extra += ' required inputmode="numeric"' if name != "card_expiry" else " required"
        if described:
            extra += f' aria-describedby="{" ".join(described)}"'
        value = form.get(name, defaults.get(name, "")) if name != "card_cvc" else ""
        fields.append(
            f'<label for="{field_id}">{escape(label)}</label>'
            f'<input id="{field_id}" name="{name}" type="{kind}" autocomplete="{autocomplete}" '
            f'value="{escape(value)}"{extra}>'
        )
        if hint:
            fields.append(f'<p class="hint" id="{field_id}-hint">{escape(hint)}</p>')
        if name in errors:
            fields.append(
                f'<p class="field-error" id="{field_id}-error">{escape(errors[name])}</p>'
            )
    button = f"Pay {total}" if paying else "Save card"
    parts.append(
        f'<form method="post" action="/_hosted/checkout/{escape(session["id"])}" novalidate>'
        + "".join(fields)
        + f'<button type="submit">{escape(button)}</button></form>'
    )
    if session["cancel_url"]:
        cancel = escape(session["cancel_url"])
        parts.append(f'<p><a href="{cancel}">Cancel and return to the merchant</a></p>')
    parts.append(_test_cards())
    return page(f"{title}: Stripe test double checkout", "\n".join(parts))


def _summary(ctx: Ctx, session: dict[str, Any]) -> str:
    rows = []
    for item in ctx.state.meta[session["id"]].get("line_items", []):
        rows.append(
            f'<tr><td>{escape(item["description"])}</td><td class="num">{item["quantity"]}</td>'
            f'<td class="num">{escape(amount(item["amount_total"], item["currency"]))}</td></tr>'
        )
    total = escape(amount(session["amount_total"], session["currency"]))
    return (
        '<h2 id="summary-title">Order summary</h2>'
        '<table aria-labelledby="summary-title"><thead><tr><th scope="col">Item</th>'
        '<th scope="col" class="num">Quantity</th><th scope="col" class="num">Amount</th>'
        "</tr></thead><tbody>"
        + "".join(rows)
        + f'</tbody><tfoot><tr><th scope="row" colspan="2">Total</th><td class="num">{total}'
        "</td></tr></tfoot></table>"
    )


def _test_cards() -> str:
    rows = [
        ("4242 4242 4242 4242", "succeeds"),
        ("4000 0000 0000 0002", "declined (generic_decline)"),
        ("4000 0000 0000 9995", "declined (insufficient_funds)"),
        ("4000 0027 6000 3184", "asks for 3-D Secure authentication"),
    ]
    items = "".join(f"<li><code>{n}</code>: {escape(d)}</li>" for n, d in rows)
    return (
        "<details><summary>Test cards</summary>"
        f"<p>Any future expiry date and any 3-digit CVC.</p><ul>{items}</ul></details>"
    )
