"""The Litestar application factory.

Everything is built here from ``Settings`` (never at import time), so tests and the
launcher can configure the app. Run with: ``uvicorn --factory portal.app:create_app``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from redis.asyncio import Redis

from core import crypto
from core.db import bind_engine, close_pool, make_engine, open_pool
from core.notifications import mailer as mail
from core.payments import gateway as stripe_gateway
from core.runtime import freeze_startup_heap, thaw_heap
from core.settings import Settings, load_settings
from portal import (
    billing_runs,
    cash,
    collections,
    finance,
    payments,
    remittance,
    subscriptions,
    wallet,
)
from portal.account import account_router
from portal.api.invoices import InvoiceApiController
from portal.api.usage import UsageApiController
from portal.assisted_sessions import assisted_sessions, view_only_guard
from portal.auth import session_cookie_name
from portal.auth_routes import AuthController
from portal.customer.admin import CustomerAdminController, EntityController, InvitationController
from portal.customer.api_keys import ApiKeysController
from portal.customer.assisted import CustomerAssistedController, leave_assisted
from portal.customer.invoices import CustomerController
from portal.customer.sso_admin import SsoAdminController
from portal.embedded import start_embedded_redis
from portal.errors import EXCEPTION_HANDLERS
from portal.health import health
from portal.logging_setup import configure_logging
from portal.middleware import request_context_middleware
from portal.sessions import SessionStore
from portal.sso import SsoController
from portal.staff.assisted import StaffAssistedController
from portal.staff.console import StaffController
from portal.templating import STATIC_DIR, TEMPLATE_DIR, configure


def redis_namespace(database_url: str) -> str:
    """Redis keys are namespaced by the database they belong to, so two deployments (or
    two test runs) sharing one Redis never see each other's sessions."""
    return "ll:" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_json)
    bind_engine(make_engine(settings.database_url))
    crypto.configure(settings.encryption_keys)
    mail.configure(settings.smtp_url, settings.mail_from)
    stripe_gateway.configure(settings)
    embedded: Any = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded, redis_url = start_embedded_redis(settings.var_dir)
    redis = Redis.from_url(redis_url)
    secure = settings.production

    async def startup(app: Litestar) -> None:
        await open_pool()
        freeze_startup_heap()

    async def shutdown(app: Litestar) -> None:
        thaw_heap()
        await close_pool()
        await redis.aclose()
        if embedded is not None:
            embedded.shutdown()

    return Litestar(
        route_handlers=[
            AuthController,
            account_router,
            CustomerController,
            StaffController,
            StaffAssistedController,
            CustomerAssistedController,
            leave_assisted,
            InvoiceApiController,
            UsageApiController,
            CustomerAdminController,
            ApiKeysController,
            InvitationController,
            EntityController,
            SsoController,
            SsoAdminController,
            health,
            *payments.ROUTES,
            *wallet.ROUTES,
            *remittance.ROUTES,
            *cash.ROUTES,
            *collections.ROUTES,
            *subscriptions.ROUTES,
            *billing_runs.ROUTES,
            *finance.ROUTES,
            create_static_files_router(path="/static", directories=[STATIC_DIR], name="static"),
        ],
        state=State(
            {
                "settings": settings,
                "redis": redis,
                "embedded_redis": embedded,
                "namespace": redis_namespace(settings.database_url),
                "sessions": SessionStore(
                    redis,
                    idle_seconds=settings.session_idle_minutes * 60,
                    absolute_seconds=settings.session_absolute_hours * 3600,
                    namespace=redis_namespace(settings.database_url),
                ),
                "session_cookie": session_cookie_name(secure),
                "cookie_secure": secure,
            }
        ),
        template_config=TemplateConfig(
            directory=TEMPLATE_DIR, engine=JinjaTemplateEngine, engine_callback=configure
        ),
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="csrftoken",
            header_name="x-csrftoken",
            cookie_secure=secure,
            cookie_httponly=True,
            cookie_samesite="strict",
            exclude=["/health", "/api/", "/webhooks/"],
        ),
        plugins=[HTMXPlugin()],
        openapi_config=OpenAPIConfig(
            title="Ledgerline API",
            version="1.0.0",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        middleware=[request_context_middleware(settings.production), assisted_sessions],
        guards=[view_only_guard],  # portal.assisted_sessions: view-only means read-only
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[startup],
        on_shutdown=[shutdown],
        debug=False,
    )
