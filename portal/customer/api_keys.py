"""API keys of a customer group (``/admin/api-keys``): list, create, rotate, revoke.

Keys belong to the whole group (its root organization), so only an admin of the whole
group manages them; for anyone else these URLs are a 404, like the other admin pages.
A new key is shown once, on the page that created it; only its SHA-256 is stored.
Refused in assisted sessions: an agent never sees or makes credentials.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from core.errors import ValidationFailed
from core.identity.scope import Scope
from core.usage import keys
from core.usage.keys import CreatedKey
from portal.auth import actor_for, provide_scope
from portal.customer.admin import ACTION_GUARDS, _area, _page, requires_customer_admin

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

NOTICES = {"revoked": "Key revoked: requests with it are refused from now on."}


async def requires_group_admin(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    await requires_customer_admin(connection, handler)
    if not connection.state.admin_area.whole_group:
        raise NotFoundException()


class ApiKeysController(Controller):
    path = "/admin/api-keys"
    guards = [requires_group_admin]
    dependencies = {"access": Provide(provide_scope)}

    async def _keys_page(
        self,
        request: Request[Any, Any, Any],
        access: Scope,
        *,
        status: int = 200,
        created: CreatedKey | None = None,
        errors: dict[str, str] | None = None,
        name: str = "",
    ) -> Template:
        rows = await keys.list_keys(_area(request).root_id)
        notice = NOTICES.get(request.query_params.get("notice") or "")
        return await _page(
            request,
            access,
            "admin/api_keys.html",
            status=status,
            sub="api_keys",
            api_keys=rows,
            created=created,
            errors=errors or {},
            name=name,
            key_notice=notice,
        )

    @get("/", name="admin_api_keys", media_type=MediaType.HTML)
    async def index(self, request: Request[Any, Any, Any], access: NamedDependency[Scope]) -> Any:
        return await self._keys_page(request, access)

    @post("/", guards=ACTION_GUARDS, media_type=MediaType.HTML)
    async def create(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope], data: Form
    ) -> Template:
        name = data.get("name", "") if isinstance(data.get("name"), str) else ""
        # The form names the group the key is for; any other group is not found.
        if data.get("organization") != str(_area(request).root_id):
            raise NotFoundException()
        try:
            created = await keys.create_key(_area(request).root_id, name, actor_for(request))
        except ValidationFailed as exc:
            return await self._keys_page(
                request, access, status=422, errors=exc.errors, name=name[:200]
            )
        return await self._keys_page(request, access, status=201, created=created)

    @post("/{key_id:int}/rotate", guards=ACTION_GUARDS, media_type=MediaType.HTML)
    async def rotate(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope], key_id: FromPath[int]
    ) -> Template:
        created = await keys.rotate_key(key_id, _area(request).root_id, actor_for(request))
        return await self._keys_page(request, access, status=201, created=created)

    @post("/{key_id:int}/revoke", guards=ACTION_GUARDS, media_type=MediaType.HTML, status_code=303)
    async def revoke(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope], key_id: FromPath[int]
    ) -> Redirect:
        await keys.revoke_key(key_id, _area(request).root_id, actor_for(request), "revoked")
        return Redirect("/admin/api-keys?notice=revoked", status_code=303)
