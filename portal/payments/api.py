"""``POST /api/v1/payments``: pay open invoices with a saved payment method, off-session.

``Authorization: Bearer ll_live_…`` (the group's API key, as for usage), an
``Idempotency-Key`` header (required), and a JSON body::

    {"invoices": [{"invoice_id": 12, "amount": "150.00"}, ...],
     "payment_method": "pm_…"}   # a saved payment method of the group

Answers (JSON): 201 with the attempt (status ``succeeded``, ``processing``,
``pending_approval`` above the group's approval threshold, or ``unknown`` when Stripe's
answer is still being confirmed), 402 problem+json when the charge is declined. Same key +
same body → the stored answer byte for byte (``Idempotent-Replayed: true``); same key +
another body → 422; same key while the first is running → 409. Bad input (400/404/422)
is not stored, so a corrected retry with the same key runs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post

from core.audit.log import Actor
from core.errors import NotFound, ValidationFailed
from core.idempotency import store as idem
from core.invoicing.tables import Invoice
from core.money import AmountParseError, parse_amount
from core.payments import attempts as pay
from core.usage.keys import authenticate
from core.wallet.methods import saved_methods
from portal.errors import TITLES

_decode = msgspec.json.Decoder(float_hook=Decimal).decode
_encode = msgspec.json.Encoder().encode
ENDPOINT = "api:payments"
MAX_INVOICES = 100


def _problem_bytes(status: int, detail: str, **extra: Any) -> bytes:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    return _encode(body | {"detail": detail} | extra)


def _answer(status: int, body: bytes, media_type: str, replayed: bool = False) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def _problem(status: int, detail: str, **extra: Any) -> Response[bytes]:
    return _answer(status, _problem_bytes(status, detail, **extra), "application/problem+json")


async def _items(payload: Any) -> list[pay.PayItem]:
    if not isinstance(payload, dict):
        raise ValidationFailed({"body": "The body must be a JSON object."})
    rows = payload.get("invoices")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_INVOICES:
        raise ValidationFailed(
            {"invoices": f"Send 1 to {MAX_INVOICES} invoices: [{{invoice_id, amount}}]."}
        )
    ids: list[int] = []
    for row in rows:
        invoice_id = row.get("invoice_id") if isinstance(row, dict) else None
        if not isinstance(invoice_id, int) or isinstance(invoice_id, bool):
            raise ValidationFailed({"invoices": "Each entry needs an integer invoice_id."})
        if not 0 < invoice_id <= 2**31 - 1:
            raise NotFound("invoice")
        ids.append(invoice_id)
    currencies = {
        r["id"]: r["currency"]
        for r in await Invoice.select(Invoice.id, Invoice.currency).where(Invoice.id.is_in(ids))
    }
    items = []
    for row, invoice_id in zip(rows, ids, strict=True):
        if invoice_id not in currencies:
            raise NotFound("invoice")
        amount = row.get("amount")
        text = str(amount) if isinstance(amount, (str, int, Decimal)) else ""
        if isinstance(amount, bool):
            text = ""
        try:
            money = parse_amount(text, currencies[invoice_id])
        except AmountParseError as exc:
            raise ValidationFailed({f"invoices[{invoice_id}].amount": str(exc)}) from exc
        items.append(pay.PayItem(invoice_id, money.to_minor()))
    return items


def _attempt_json(attempt: pay.Attempt, items: list[pay.PayItem]) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "status": attempt.status,
        "amount_minor": attempt.amount_minor,
        "currency": attempt.currency,
        "approval_required": attempt.approval_required,
        "payment_intent": attempt.stripe_payment_intent or None,
        "invoices": [{"invoice_id": i.invoice_id, "amount_minor": i.amount_minor} for i in items],
    }


class PaymentsApiController(Controller):
    path = "/api/v1/payments"
    tags = ["payments"]

    @post("/", summary="Pay open invoices with a saved payment method", status_code=201)
    async def create_payment(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        organization_id = (
            await authenticate(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        )
        if organization_id is None:
            response = _problem(401, "A valid API key is required: Authorization: Bearer <key>.")
            response.headers["WWW-Authenticate"] = 'Bearer realm="ledgerline"'
            return response
        try:
            idem_key = idem.check_key(request.headers.get("idempotency-key"))
        except ValidationFailed:
            return _problem(400, "Send an Idempotency-Key header (1 to 255 printable characters).")
        try:
            payload = _decode(await request.body())
        except msgspec.DecodeError:
            return _problem(400, "The body is not valid JSON.")
        try:
            claim = await idem.claim(organization_id, idem_key, ENDPOINT, idem.fingerprint(payload))
        except idem.KeyInFlight as exc:
            return _problem(409, str(exc))
        except idem.KeyReused as exc:
            return _problem(422, str(exc.errors["idempotency_key"]), errors=exc.errors)
        if claim.replay is not None:
            stored = claim.replay
            return _answer(stored.status, stored.body, stored.media_type, replayed=True)
        try:
            status, body, media_type = await self._execute(
                organization_id, key.strip(), payload, claim, request
            )
        except (ValidationFailed, NotFound) as exc:
            await idem.release(claim.record_id)
            if isinstance(exc, NotFound):
                return _problem(404, "No such invoice in your organization.")
            return _problem(422, "Please check your input.", errors=exc.errors)
        except Exception:
            await idem.abandon(claim.record_id)
            raise
        await idem.complete(claim.record_id, status, body, media_type)
        return _answer(status, body, media_type)

    async def _execute(
        self,
        organization_id: int,
        api_key: str,
        payload: Any,
        claim: idem.Claim,
        request: Request[Any, Any, Any],
    ) -> tuple[int, bytes, str]:
        actor = Actor(
            type="api_key",
            id=api_key[:8],
            ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:300],
        )
        items = await _items(payload)
        method_id = payload.get("payment_method") if isinstance(payload, dict) else None
        method = next(
            (
                m
                for m in await saved_methods(organization_id)
                if isinstance(method_id, str) and m.stripe_payment_method == method_id
            ),
            None,
        )
        if method is None:
            raise ValidationFailed(
                {"payment_method": "Send the id of one of your group's saved payment methods."}
            )
        if claim.resource_id is not None:  # an earlier try of this key created it: resume
            attempt = await pay.get_attempt(claim.resource_id)
        else:
            try:
                attempt = await pay.create_attempt(
                    organization_root_id=organization_id,
                    items=items,
                    kind="api",
                    user_id=None,
                    actor=actor,
                    stripe_customer=method.stripe_customer,
                    payment_method=method.stripe_payment_method,
                    idempotency_record=claim.record_id,
                )
            except pay.NotPermitted as exc:  # no scope is given: cannot happen, be safe
                raise NotFound("invoice") from exc
        if attempt.status != "pending_approval":
            await pay.charge_saved_method(
                attempt.id,
                stripe_customer=method.stripe_customer,
                payment_method=method.stripe_payment_method,
                actor=actor,
                off_session=True,
            )
            attempt = await pay.get_attempt(attempt.id)
        if attempt.status == "failed":
            body = _problem_bytes(
                402,
                attempt.failure_message or "The payment was declined.",
                attempt=_attempt_json(attempt, items),
            )
            return 402, body, "application/problem+json"
        return 201, _encode(_attempt_json(attempt, items)), "application/json"
