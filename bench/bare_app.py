"""Baseline for ``bench/portal_pages.py``: a bare Litestar app with one short text route.

``portal_pages.py`` serves it with the same uvicorn settings as the portal
(``python -m uvicorn --factory bench.bare_app:create_app ...``), so the gap between the
two is the portal's own cost per request (middleware, session, SQL, templates).

``make bench`` runs every ``bench/*.py``: run directly, this module does nothing.
"""

from __future__ import annotations

from litestar import Litestar, MediaType, get


@get("/bare", media_type=MediaType.TEXT)
async def bare() -> str:
    return "ok"


def create_app() -> Litestar:
    return Litestar(route_handlers=[bare], debug=False)


if __name__ == "__main__":
    print("bench/bare_app.py: baseline app used by bench/portal_pages.py; nothing to run.")
