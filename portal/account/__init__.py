"""The signed-in user's own account: password, two-step verification, sessions; and
password reset by email for those who cannot sign in."""

from __future__ import annotations

from litestar import Router

from portal.account.pages import AccountController
from portal.account.password_reset import PasswordResetController

account_router = Router(path="/", route_handlers=[AccountController, PasswordResetController])

__all__ = ["account_router"]
