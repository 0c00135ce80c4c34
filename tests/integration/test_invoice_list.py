"""The invoice list's edge cases over HTTP: out-of-range pages, ignored filters, the
htmx fragment keeping the sort control and the live region in step."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers import login

HTMX = {"HX-Request": "true", "HX-Target": "invoice-results"}


@pytest.fixture
async def bob(live_server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        await login(client, "bob@globex.example")
        yield client


def shown_count(html: str) -> tuple[int, int, int]:
    match = re.search(r"Showing (\d+)–(\d+) of (\d+) invoice", html)
    assert match, "no count line"
    first, last, total = (int(g) for g in match.groups())
    return first, last, total


async def test_a_page_past_the_end_shows_the_last_page(bob) -> None:
    first_page = shown_count((await bob.get("/invoices")).text)
    total = first_page[2]
    last_page = -(-total // 25)
    response = await bob.get("/invoices", params={"page": 500})
    assert response.status_code == 200
    assert shown_count(response.text) == ((last_page - 1) * 25 + 1, total, total)
    assert 'aria-current="page">' + str(last_page) + "<" in response.text


async def test_filters_reported_as_ignored_are_ignored(bob) -> None:
    everything = shown_count((await bob.get("/invoices")).text)[2]
    response = await bob.get(
        "/invoices", params={"from": "2026-06-01", "to": "2026-01-01", "q": "x" * 41}
    )
    assert response.status_code == 200
    assert "The end date must not be before the start date." in response.text
    assert "Search for at most 40 characters." in response.text
    from_only = shown_count((await bob.get("/invoices", params={"from": "2026-06-01"})).text)[2]
    assert shown_count(response.text)[2] == from_only <= everything


async def test_fragment_updates_sort_control_and_live_region_out_of_band(bob) -> None:
    response = await bob.get("/invoices", params={"sort": "amount"}, headers=HTMX)
    html = response.text
    assert "<h1>" not in html  # a fragment, not the page
    select = re.search(
        r'<select id="sort" name="sort" hx-swap-oob="true">(.*?)</select>', html, re.S
    )
    assert select
    assert re.search(r'value="amount"\s+selected', select.group(1))
    status = re.search(r'<p id="results-status"[^>]*hx-swap-oob="true">(.*?)</p>', html, re.S)
    assert status
    assert status.group(1).startswith("Showing 1–25 of ")
    full = (await bob.get("/invoices", params={"sort": "amount"})).text
    assert "hx-swap-oob" not in full  # the full page has one of each, in place
    assert full.count('id="sort"') == 1
