"""Helpers for tests that talk HTTP to the app: sign in through the real login form."""

from __future__ import annotations

import re

import httpx

from core.demo_data import DEMO_PASSWORD

_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def login(client: httpx.AsyncClient, email: str, password: str = DEMO_PASSWORD) -> None:
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text[:500]
