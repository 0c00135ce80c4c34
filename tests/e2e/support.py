"""Browser-test support: the Chromium launch settings, a guard that records console
errors, page errors, CSP violations and 5xx responses, and the axe-core check.

axe-core is injected with ``page.evaluate(source)``: DevTools evaluation is not subject
to the page's CSP (``script-src 'self'``), so no ``bypass_csp`` context is needed (the
guard test proves axe runs and that a CSP violation would be caught). With JavaScript
disabled the source still evaluates, but ``axe.run`` never settles (page timers do not
run), so no-JS pages are scanned in a JavaScript-enabled context with the same cookies
(the ``scan_as`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Error, Page, Response

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
BLOCKING_IMPACTS = ("serious", "critical")

# Added to every document through DevTools (so CSP does not apply), before page scripts.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__llReportCsp(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"}` +
    ` (${e.sourceFile || document.location.href}:${e.lineNumber})`
  );
});
"""
# Chromium words these "Refused to ..." (older) or "... violates the following Content
# Security Policy directive ..." (newer).
_CSP_TEXT = re.compile(r"Content Security Policy|^Refused to", re.IGNORECASE)
_HTTP_ERROR = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class PageGuard:
    """Collects everything that must not happen while a page runs."""

    problems: list[str] = field(default_factory=list)
    # (status, URL substring) pairs the test asks for on purpose, e.g. a 404 page.
    expected_statuses: set[tuple[int, str]] = field(default_factory=set)
    csp_reported: asyncio.Event = field(default_factory=asyncio.Event)

    def expect_status(self, status: int, url_part: str) -> None:
        self.expected_statuses.add((status, url_part))

    def _expected(self, status: int, url: str) -> bool:
        return any(s == status and part in url for s, part in self.expected_statuses)

    def on_console(self, msg: ConsoleMessage) -> None:
        text = msg.text
        if _CSP_TEXT.search(text):
            self.problems.append(f"CSP (console {msg.type}): {text}")
            return
        if msg.type != "error":
            return
        failed = _HTTP_ERROR.match(text)
        if failed and self._expected(int(failed.group(1)), msg.location.get("url", "")):
            return
        self.problems.append(f"console error: {text} ({msg.location.get('url', '')})")

    def on_page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught page error: {error}")

    def on_response(self, response: Response) -> None:
        if response.status >= 500:
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {response.url}"
            )

    def on_csp(self, _source: Any, report: str) -> None:
        self.problems.append(f"CSP securitypolicyviolation: {report}")
        self.csp_reported.set()

    def check(self, label: str) -> None:
        if self.problems:
            lines = "\n  ".join(self.problems)
            self.problems.clear()
            pytest.fail(f"{label}: console/CSP/server problems:\n  {lines}", pytrace=False)


async def guarded_page(context: BrowserContext, guard: PageGuard, *, js: bool = True) -> Page:
    """The context's page, with ``guard`` listening (CSP events need JavaScript)."""
    if js:
        await context.expose_binding("__llReportCsp", guard.on_csp)
        await context.add_init_script(CSP_LISTENER)
    page = await context.new_page()
    page.on("console", guard.on_console)
    page.on("pageerror", guard.on_page_error)
    page.on("response", guard.on_response)
    return page


@functools.cache
def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `npm ci` in {ROOT}", pytrace=False)
    return AXE_JS.read_text(encoding="utf-8")


async def run_axe(page: Page) -> list[dict[str, Any]]:
    """Inject axe-core (again, if a navigation dropped it) and return all violations."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(axe_source())
        loaded = await page.evaluate("() => typeof window.axe?.run === 'function'")
        assert loaded, "axe-core did not load into the page"
    return await page.evaluate(
        """async () => {
          const result = await window.axe.run(document, { resultTypes: ["violations"] });
          return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
            targets: v.nodes.map((n) => n.target.join(" ")),
            summary: (v.nodes[0] && v.nodes[0].failureSummary) || "",
          }));
        }"""
    )


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = ", ".join(v["targets"][:8]) + (" …" if len(v["targets"]) > 8 else "")
        summary = " ".join(v["summary"].split())[:300]
        lines.append(
            f"- {v['id']} [{v['impact']}] {v['help']}\n    on: {targets}"
            f"\n    first: {summary}\n    {v['helpUrl']}"
        )
    return "\n".join(lines)


async def assert_accessible(page: Page, label: str, guard: PageGuard | None = None) -> None:
    """axe-core scan of the page as it is now: fails listing every serious or critical
    violation; with ``guard``, also fails on any console/CSP/5xx problem so far."""
    violations = await run_axe(page)
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    if blocking:
        pytest.fail(
            f"axe: {len(blocking)} serious/critical violation(s) on {label} ({page.url}):\n"
            + format_violations(blocking),
            pytrace=False,
        )
    if guard is not None:
        guard.check(label)
