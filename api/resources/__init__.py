"""One module per resource of the API: its response models, its write operations
(`api.operations.Operation`) and its reads, on a router of its own. A module here is
all a new resource takes: `RESOURCES` finds it."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

from ledger.usecases.registry import modules_of

if TYPE_CHECKING:
    from api.operations import Operation

#: the resource modules, by name
RESOURCES: list[ModuleType] = modules_of(sys.modules[__name__])
#: every write operation, by its name (the `op` of `/v1/batch`)
OPERATIONS: dict[str, Operation] = {
    op.name: op for resource in RESOURCES for op in resource.OPERATIONS
}
