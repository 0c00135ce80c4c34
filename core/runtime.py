"""Process-level tuning shared by the portal and the workers."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Move everything alive once a process has started (modules, the app, its routes
    and templates, the pools) into the garbage collector's permanent generation.

    The cyclic collector otherwise re-walks those hundreds of thousands of long-lived
    objects on every full collection, and a request that builds many containers (a
    10,000-event usage batch is ~40,000 dicts and lists) triggers collections over and
    over: measured on ``bench/usage_ingest.py``, the collector took 5.5 s of the
    server's 9.8 s of CPU. Reference counting still frees frozen objects; only cycles
    among them wait for ``thaw_heap`` (called at shutdown)."""
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Undo ``freeze_startup_heap`` (at shutdown: what became garbage can be collected)."""
    gc.unfreeze()
