"""``/admin/sso``: a customer group's administrator configures the group's OpenID provider.

Only a customer user holding the admin role at their group's root sees this page; for
anyone else (other roles, admins of a subsidiary only, assisted sessions) it does not
exist (404). The form re-renders with each field's error and changes nothing when any
field is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body
from litestar.response import Redirect, Template

from core.errors import ValidationFailed
from core.identity.roles import CUSTOMER_ROLE_LABELS, CustomerRole, at_least
from core.identity.scope import load_scope
from core.identity.sso import (
    MAX_MAPPING_ROWS,
    ConnectionView,
    MappingRow,
    SsoInput,
    configure_connection,
    get_connection,
    group_nodes,
)
from core.identity.tables import User
from portal.auth import actor_for, current_session, requires_customer

BLANK_ROWS = 3


async def admin_root(request: Request[Any, Any, Any]) -> int:
    """The root of the caller's group, if they administer it; else 404."""
    session = await current_session(request)
    if session is None or session.kind != "customer" or session.assisted:
        raise NotFoundException()
    user = (
        await User.select(User.organization, User.is_active)
        .where(User.id == session.user_id)
        .first()
    )
    if user is None or not user["is_active"]:
        raise NotFoundException()
    root = int(user["organization"])
    scope = await load_scope(session.user_id)
    if not at_least(scope.role_by_organization.get(root), CustomerRole.ADMIN):
        raise NotFoundException()
    return root


def _form_from(view: ConnectionView | None) -> dict[str, Any]:
    if view is None:
        return {
            "issuer": "",
            "client_id": "",
            "allowed_domains": "",
            "role_claim": "groups",
            "default_role": "",
            "sso_required": False,
            "enabled": True,
            "rows": [],
            "has_secret": False,
        }
    return {
        "issuer": view.issuer,
        "client_id": view.client_id,
        "allowed_domains": ", ".join(view.allowed_domains),
        "role_claim": view.role_claim,
        "default_role": view.default_role,
        "sso_required": view.sso_required,
        "enabled": view.enabled,
        "rows": [
            {"claim": value, "role": g.role.value, "org": str(g.organization_id)}
            for value, g in sorted(view.mapping.items())
        ],
        "has_secret": view.has_secret,
    }


def _rows_from(data: dict[str, str]) -> list[dict[str, str]]:
    rows = []
    for i in range(MAX_MAPPING_ROWS + BLANK_ROWS):
        row = {
            "claim": (data.get(f"map-{i}-claim") or "")[:300],
            "role": (data.get(f"map-{i}-role") or "")[:40],
            "org": (data.get(f"map-{i}-org") or "")[:20],
        }
        rows.append(row)
    while rows and not any(rows[-1].values()):
        rows.pop()
    return rows


class SsoAdminController(Controller):
    path = "/admin/sso"
    guards = [requires_customer]

    async def _page(
        self,
        request: Request[Any, Any, Any],
        root: int,
        form: dict[str, Any],
        errors: dict[str, str],
        *,
        saved: bool = False,
        status_code: int = 200,
    ) -> Template:
        rows = list(form["rows"]) + [{"claim": "", "role": "", "org": ""}] * BLANK_ROWS
        nodes = await group_nodes(root)
        return Template(
            "sso/admin.html",
            context={
                "user": await current_session(request),
                "nav": "admin_sso",
                "form": form,
                "rows": rows[: MAX_MAPPING_ROWS + BLANK_ROWS],
                "errors": errors,
                "saved": saved,
                "nodes": nodes,
                "roles": [(r.value, CUSTOMER_ROLE_LABELS[r]) for r in CustomerRole],
                "redirect_uri": request.app.state.settings.base_url + "/sso/callback",
            },
            status_code=status_code,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )

    @get("/", name="admin_sso")
    async def show(self, request: Request[Any, Any, Any]) -> Template:
        root = await admin_root(request)
        view = await get_connection(root)
        saved = request.query_params.get("saved") == "1"
        return await self._page(request, root, _form_from(view), {}, saved=saved)

    @post("/", status_code=303)
    async def save(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Any:
        root = await admin_root(request)
        rows = _rows_from(data)
        submitted = SsoInput(
            issuer=(data.get("issuer") or "")[:1000],
            client_id=(data.get("client_id") or "")[:1000],
            client_secret=(data.get("client_secret") or "")[:2000],
            allowed_domains=(data.get("allowed_domains") or "")[:5000],
            role_claim=(data.get("role_claim") or "")[:200],
            mapping=tuple(MappingRow(r["claim"], r["role"], r["org"]) for r in rows),
            default_role=(data.get("default_role") or "")[:40],
            sso_required=data.get("sso_required") == "on",
            enabled=data.get("enabled") == "on",
        )
        try:
            await configure_connection(
                root,
                submitted,
                actor_for(request),
                allow_local_http=not request.app.state.settings.production,
            )
        except ValidationFailed as exc:
            current = await get_connection(root)
            form = {
                "issuer": submitted.issuer,
                "client_id": submitted.client_id,
                "allowed_domains": submitted.allowed_domains,
                "role_claim": submitted.role_claim,
                "default_role": submitted.default_role,
                "sso_required": submitted.sso_required,
                "enabled": submitted.enabled,
                "rows": rows,
                "has_secret": bool(current and current.has_secret),
            }
            return await self._page(request, root, form, exc.errors, status_code=422)
        return Redirect("/admin/sso?saved=1", status_code=303)
