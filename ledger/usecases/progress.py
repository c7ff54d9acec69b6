"""How a long task (a rebuild, a chain walk, an export) says how far it has come."""

from __future__ import annotations

from collections.abc import Callable

#: told (done, total) now and then: positions walked of the last, rows of all
Progress = Callable[[int, int], None]
#: items (events, rows) between two reports: a call per item would cost more than the bar
PROGRESS_EVERY = 1000
