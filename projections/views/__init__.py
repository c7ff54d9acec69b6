"""The read models, one view per module of this package. A module defining a `View`
subclass is all a new read model takes: `VIEWS` finds it here, its tables are
created when a worker or an API process starts, and it alone is backfilled."""

from __future__ import annotations

import importlib
import pkgutil

from projections.view import View


def _discover() -> tuple[type[View], ...]:
    """Every view defined in this package's modules, by name."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found = [v for v in View.__subclasses__() if v.__module__.startswith(f"{__name__}.")]
    return tuple(sorted(found, key=lambda view: view.NAME))


VIEWS = _discover()
