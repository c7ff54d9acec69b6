"""Refused attempts kept as evidence (CONTRACT §13): every write refused with `403`, or
with a business `409` other than `idempotency_conflict`, as a row of an append-only
table. Not among the ledger's events: a refusal records nothing in the ledger.

A row names who tried, what, and the ids involved; never a body's amounts, texts or
personal data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import REFUSALS_TABLE, statements

#: besides every field ending in `_id`, the fields of a body that name something
ID_FIELDS = frozenset({"fund_year", "year", "bank_reference"})


def ids_of(path_params: dict[str, Any], body: Any) -> dict[str, str | int]:
    """The ids a refused request named, in its path and at the top of its JSON body:
    nothing else of the body."""
    found: dict[str, str | int] = {}
    fields = body.items() if isinstance(body, dict) else ()
    for name, value in [*path_params.items(), *fields]:
        named = name.endswith("_id") or name in ID_FIELDS
        if named and isinstance(value, str | int) and not isinstance(value, bool):
            found[name] = value if isinstance(value, int) else value[:64]
    return found


@dataclass(frozen=True)
class Refusal:
    actor: str
    request_id: str
    method: str
    path: str
    code: str
    ids: dict[str, str | int]


def record_refusal(datastore: PostgresDatastore, refusal: Refusal) -> None:
    with statements(datastore) as curs:
        curs.execute(
            f"INSERT INTO {REFUSALS_TABLE} (actor, request_id, method, path, code, ids) "  # noqa: S608 - a constant
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                refusal.actor,
                refusal.request_id,
                refusal.method,
                refusal.path,
                refusal.code,
                json.dumps(refusal.ids),
            ),
        )
