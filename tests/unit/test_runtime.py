"""The start-up heap freeze: frozen objects are out of the cyclic collector's reach until
thawed, and thawing hands cycles that died meanwhile back to it."""

from __future__ import annotations

import gc
import weakref

from core.runtime import freeze_startup_heap, thaw_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_freeze_keeps_the_startup_heap_out_of_collections_until_thawed() -> None:
    node = Node()
    alive = weakref.ref(node)
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: the collector does not look at it
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None
