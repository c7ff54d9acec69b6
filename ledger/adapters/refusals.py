"""Refused attempts kept as evidence (CONTRACT §13): every write refused with `403`, or
with a business `409` other than `idempotency_conflict`, as a row of an append-only
table. Not among the ledger's events: a refusal records nothing in the ledger.

A row names who tried, what, and the ids involved; never a body's amounts, texts or
personal data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import REFUSALS_TABLE, statements
from ledger.domain.values import ID_PATTERN

#: besides every field ending in `_id`, the fields of a body that name something
ID_FIELDS = frozenset({"fund_year", "year", "bank_reference"})


def ids_of(path_params: dict[str, Any], body: Any) -> dict[str, str | int]:
    """The ids a refused request named, in its path and at the top of its JSON body, as
    far as they are ids (an identifier's form, or an integer): nothing else of the body,
    and nothing a client put where an id goes that an id could not be."""
    found: dict[str, str | int] = {}
    fields = body.items() if isinstance(body, dict) else ()
    for name, value in [*path_params.items(), *fields]:
        if not (name.endswith("_id") or name in ID_FIELDS):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            found[name] = value
        elif isinstance(value, str) and re.fullmatch(ID_PATTERN, value):
            found[name] = int(value) if name in ("year", "fund_year") else value
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
