"""Browser fixtures: one Debian Chromium per session (never a Playwright-downloaded
browser) and a fresh, guarded context per test. See support.py for the checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORTS,
    PageGuard,
    assert_accessible,
    guarded_page,
)


@dataclass
class Session:
    """A browser context with its one page and the guard watching it."""

    context: BrowserContext
    page: Page
    guard: PageGuard


OpenSession = Callable[..., Awaitable[Session]]
ScanAs = Callable[[Session, str], Awaitable[None]]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-deps` (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield b
        await b.close()


@pytest.fixture
async def open_session(browser: Browser, live_server: Any) -> AsyncIterator[OpenSession]:
    """``await open_session("desktop" | "mobile", js=True)``: a guarded page in a fresh
    context on the live server; every context is closed when the test ends."""
    contexts: list[BrowserContext] = []

    async def factory(viewport: str = "desktop", *, js: bool = True) -> Session:
        context = await browser.new_context(
            base_url=live_server.url, java_script_enabled=js, **VIEWPORTS[viewport]
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        guard = PageGuard()
        return Session(context, await guarded_page(context, guard, js=js), guard)

    yield factory
    for context in contexts:
        await context.close()


@pytest.fixture
def scan_as(browser: Browser, live_server: Any) -> ScanAs:
    """``await scan_as(session, label)``: axe-scan the URL ``session.page`` is on, loaded
    in a JavaScript-enabled desktop context with the same cookies. For no-JS sessions,
    where axe cannot run (its timers never fire)."""

    async def scan(session: Session, label: str) -> None:
        context = await browser.new_context(base_url=live_server.url, **VIEWPORTS["desktop"])
        try:
            context.set_default_timeout(10_000)
            await context.add_cookies(await session.context.cookies())
            guard = PageGuard(expected_statuses=set(session.guard.expected_statuses))
            page = await guarded_page(context, guard)
            await page.goto(session.page.url)
            await assert_accessible(page, f"{label} (scanned with JS)", guard)
        finally:
            await context.close()

    return scan
