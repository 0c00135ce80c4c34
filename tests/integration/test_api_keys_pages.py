"""Customer admins manage their group's API keys: a key is shown once, works on the
usage API, rotates and revokes; nobody else reaches the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

from tests.helpers import csrf_from, login

KEY_RE = re.compile(r'data-testid="new-key-value">(ll_live_[^<]+)<')


def usage_event(event_id: str) -> dict:
    return {
        "events": [
            {
                "id": event_id,
                "billing_account": "GLOBEX-EU-01",
                "metric": "api.calls",
                "quantity": "1",
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ]
    }


async def post_usage(base: str, key: str, event_id: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=15) as api:
        response = await api.post(
            "/api/v1/usage", json=usage_event(event_id), headers={"Authorization": f"Bearer {key}"}
        )
    return response.status_code


async def test_group_admin_creates_rotates_and_revokes_a_key(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=15) as client:
        await login(client, "alice@globex.example")
        page = await client.get("/admin/api-keys")
        assert page.status_code == 200
        csrf = csrf_from(page.text)

        group = re.search(r'name="organization" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
        foreign = await client.post(
            "/admin/api-keys",
            data={"_csrf_token": csrf, "name": "x", "organization": str(int(group) + 1)},
        )
        assert foreign.status_code == 404  # another group (or none): not found
        refused = await client.post(
            "/admin/api-keys", data={"_csrf_token": csrf, "name": " ", "organization": group}
        )
        assert refused.status_code == 422
        assert "Give the key a name" in refused.text

        created = await client.post(
            "/admin/api-keys",
            data={"_csrf_token": csrf, "name": "Metering pipeline", "organization": group},
        )
        assert created.status_code == 201
        key = KEY_RE.search(created.text).group(1)  # type: ignore[union-attr]
        again = await client.get("/admin/api-keys")
        assert key not in again.text  # shown once, never again
        assert key[:8] in again.text
        assert "Metering pipeline" in again.text
        assert await post_usage(live_server.url, key, f"k-{key[-6:]}-1") == 200

        key_id = re.findall(r"/admin/api-keys/(\d+)/rotate", again.text)[-1]
        rotated = await client.post(f"/admin/api-keys/{key_id}/rotate", data={"_csrf_token": csrf})
        assert rotated.status_code == 201
        new_key = KEY_RE.search(rotated.text).group(1)  # type: ignore[union-attr]
        assert new_key != key
        assert await post_usage(live_server.url, key, f"k-{key[-6:]}-2") == 401
        assert await post_usage(live_server.url, new_key, f"k-{key[-6:]}-3") == 200

        new_id = re.findall(r"/admin/api-keys/(\d+)/revoke", rotated.text)[-1]
        revoked = await client.post(
            f"/admin/api-keys/{new_id}/revoke", data={"_csrf_token": csrf}, follow_redirects=True
        )
        assert revoked.status_code == 200
        assert "Key revoked" in revoked.text
        assert await post_usage(live_server.url, new_key, f"k-{key[-6:]}-4") == 401
        for bad in ("999999", str(2**31), str(10**20)):
            gone = await client.post(f"/admin/api-keys/{bad}/revoke", data={"_csrf_token": csrf})
            assert gone.status_code == 404


async def test_only_admins_of_the_whole_group_see_api_keys(live_server) -> None:
    for email in ("bob@globex.example", "vera@globex.example", "dan@initech.example"):
        async with httpx.AsyncClient(base_url=live_server.url, timeout=15) as client:
            await login(client, email)
            assert (await client.get("/admin/api-keys")).status_code == 404
