"""The read models, one view per module of this package. A module defining a `View`
subclass is all a new read model takes: `VIEWS` finds it here, its tables are
created when a worker or an API process starts, and it alone is backfilled."""

from __future__ import annotations

import sys

from ledger.usecases.registry import modules_of
from projections.view import View

#: every view a module of this package defines, by name
VIEWS: tuple[type[View], ...] = tuple(
    sorted(
        (
            member
            for module in modules_of(sys.modules[__name__])
            for member in vars(module).values()
            if isinstance(member, type)
            and issubclass(member, View)
            and member is not View
            and member.__module__ == module.__name__
        ),
        key=lambda view: view.NAME,
    )
)
