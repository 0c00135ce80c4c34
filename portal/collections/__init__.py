"""Staff: chargebacks with their evidence checklist, dunning and promises to pay."""

from typing import Any

from portal.collections.pages import CollectionsController

ROUTES: list[Any] = [CollectionsController]  # mounted by portal.app
