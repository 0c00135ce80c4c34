"""The signed-in user's own account: password, email address, two-step verification,
sessions; and password reset by email for those who cannot sign in."""

from __future__ import annotations

from litestar import Router

from portal.account.email_change import EmailConfirmController
from portal.account.pages import AccountController
from portal.account.password_reset import PasswordResetController

account_router = Router(
    path="/", route_handlers=[AccountController, EmailConfirmController, PasswordResetController]
)

__all__ = ["account_router"]
