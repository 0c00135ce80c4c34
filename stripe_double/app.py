"""The ASGI application: authentication, parameters, idempotency, expansion, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from stripe_double import ids
from stripe_double.asgi import Request, Response, Router, json_response, read_request, send_response
from stripe_double.errors import StripeError, invalid, unauthenticated
from stripe_double.expand import expand
from stripe_double.forms import FormError, parse_form
from stripe_double.idempotency import SavedResponse
from stripe_double.params import Params
from stripe_double.resources import charges, checkout_sessions
from stripe_double.routes import API_ROUTES, PAGE_ROUTES
from stripe_double.state import Config, State
from stripe_double.webhooks import Dispatcher

log = logging.getLogger("stripe_double")

NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StripeDouble:
    """``StripeDouble(webhooks=[(url, "whsec_…")])`` is an ASGI app."""

    def __init__(
        self, webhooks: Iterable[tuple[str, str | None]] = (), config: Config | None = None
    ) -> None:
        self.state = State(config)
        self.dispatcher = Dispatcher(self.state)
        for url, secret in webhooks:
            self.dispatcher.add_endpoint(url, secret, configured=True)
        self.api = Router(API_ROUTES)
        self.pages = Router(PAGE_ROUTES)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self.dispatcher.start()
        try:
            req = await read_request(scope, receive)
        except ValueError:
            await send_response(send, json_response(413, {"error": {"message": "Too large"}}))
            return
        await send_response(send, await self.handle(req))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.dispatcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.dispatcher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, req: Request) -> Response:
        if req.path.startswith("/v1/"):
            return await self.handle_api(req)
        route, path_params, _ = self.pages.match(req.method, req.path)
        if route is not None:
            try:
                response: Response = await route.handler(self.state, req, **path_params)
            except StripeError as exc:
                return json_response(exc.status, exc.body())
            return response
        if req.path in ("/", "/health"):
            return json_response(200, {"object": "stripe_double", "ok": True})
        return json_response(404, _unrecognized(req).body())

    # ---- the API pipeline --------------------------------------------------------------
    async def handle_api(self, req: Request) -> Response:
        state = self.state
        request_id = ids.new_id("req", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": req.header("stripe-version") or state.config.api_version,
        }
        key = req.header("idempotency-key") if req.method == "POST" else None
        if key:
            headers["Idempotency-Key"] = key
        try:
            api_key = self._authenticate(req)
            route, path_params, _ = self.api.match(req.method, req.path)
            if route is None:
                raise _unrecognized(req)
            try:
                params = parse_form(req.body if req.method == "POST" else req.query)
            except FormError as exc:
                raise invalid(str(exc), param=exc.name) from None
            if key:
                async with state.lock:
                    record = state.idempotency.begin(
                        api_key, key, req.method, req.path, params, state.now(), request_id
                    )
                if record.response is not None:
                    saved = record.response
                    headers.update(
                        {"Idempotent-Replayed": "true", "Original-Request": saved.request_id}
                    )
                    return Response(saved.status, saved.body, headers=headers)
        except StripeError as exc:
            return json_response(exc.status, exc.body(), headers)
        try:
            return await self._execute(
                req, route.handler, params, path_params, api_key, key, headers
            )
        except asyncio.CancelledError:
            if key:  # the client went away before the endpoint ran: release the key
                state.idempotency.finish(api_key, key, None)
            raise

    async def _execute(
        self,
        req: Request,
        handler: Callable[..., dict[str, Any]],
        params: dict[str, Any],
        path_params: dict[str, str],
        api_key: str,
        key: str | None,
        headers: dict[str, str],
    ) -> Response:
        state = self.state
        request_id = headers["Request-Id"]
        if req.method == "POST" and state.config.latency > 0:
            await asyncio.sleep(state.config.latency)  # the "network": the key stays in flight
        async with state.lock:
            ctx = state.ctx(req.base_url, request_id, key)
            save = True
            try:
                obj = handler(ctx, Params(params), **path_params)
                paths = Params(params).list("expand")
                includable = {
                    ("checkout.session", "line_items"): lambda o: checkout_sessions.line_items_of(
                        ctx, o
                    ),
                    ("charge", "refunds"): lambda o: charges.refunds_of(ctx, o),
                }
                body = expand(obj, paths, state.find, includable) if paths else obj
                status = 200
            except StripeError as exc:
                status, body, save = exc.status, exc.body(), exc.saved
            except Exception:
                log.exception("stripe double: %s %s failed", req.method, req.path)
                status, save = 500, False
                body = {"error": {"type": "api_error", "message": "The Stripe double failed."}}
            payload = json.dumps(body, indent=2).encode()
            if key:
                saved_response = SavedResponse(status, payload, request_id) if save else None
                state.idempotency.finish(api_key, key, saved_response)
        return Response(status, payload, headers=headers)

    def _authenticate(self, req: Request) -> str:
        header = (req.header("authorization") or "").strip()
        if not header:
            raise unauthenticated(NO_KEY)
        scheme, _, value = header.partition(" ")
        key = value.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode().split(":", 1)[0]
            except ValueError:
                key = ""
        elif scheme.lower() != "bearer":
            raise unauthenticated(NO_KEY)
        wanted = self.state.config.api_key
        if not key.startswith(("sk_test_", "rk_test_")) or (wanted and key != wanted):
            raise unauthenticated(f"Invalid API Key provided: {_redact(key)}")
        return key


def _redact(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _unrecognized(req: Request) -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({req.method}: {req.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        saved=False,
    )
