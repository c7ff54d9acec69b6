"""What every list shares (docs/api.md, "Lists"): its page, its cursor, and the types of
its filters, each as narrow as the field it filters (a malformed value is a 422).

A cursor is the position the page before ended at, as a decimal: the next page is one
index range scan from there, whatever its depth (`projections.paging`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from eventsourcing.postgres import PostgresDatastore
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, create_model

from api import routing
from api.routing import LedgerDep, PrincipalDep, ReadsDep
from api.schemas import Day, HistoryEntry
from ledger.domain.values import ID_PATTERN, SLUG_PATTERN, YEARS
from ledger.usecases.ledger import Ledger
from projections.paging import Page

CURSOR_PATTERN = r"^[0-9]{1,18}$"


async def _after(
    after: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="The `next` cursor of the page before: this page starts after it",
        ),
    ] = None,
) -> int:
    return int(after) if after else 0


#: the position a page starts after
After = Annotated[int, Depends(_after)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]

FundYearFilter = Annotated[
    int | None, Query(ge=YEARS.first, le=YEARS.last, description="Only those of this fund year")
]
ProgrammeFilter = Annotated[
    str | None, Query(pattern=SLUG_PATTERN, description="Only those of this programme")
]
TalentFilter = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this talent's")]
GrantFilter = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this grant's")]
DateFrom = Annotated[Day | None, Query(description="On or after this date")]
DateTo = Annotated[Day | None, Query(description="On or before this date")]

NEXT = Field(description="The cursor of the next page (`after=`); null on the last page")


def page_model(item: type[BaseModel], name: str) -> type[BaseModel]:
    """The page of a list of `item`s: `{"items": [...], "next": cursor or null}`."""
    return create_model(name, items=(list[item], ...), next=(str | None, NEXT))  # type: ignore[valid-type]


HistoryPage = page_model(HistoryEntry, "HistoryPage")


def as_page(items: list[Any], cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next": cursor}


def list_route(
    router: APIRouter,
    path: str,
    item: type[BaseModel],
    filters: Callable[..., Any],
    read: Callable[[PostgresDatastore, dict[str, Any], int, int], Page],
    views: Sequence[str],
    present: Callable[[Ledger, dict[str, Any]], Any] | None = None,
    *,
    name: str,
    what: str,
) -> None:
    """`GET path`: the list of `item`s that `read` gives, a page at a time, filtered by
    what the dependency `filters` gives (its query parameters are the list's filters);
    each item `present`ed first if it must be (a talent's name is unsealed). `name` is
    the operation's, `what` the items' in words ("grants")."""

    def endpoint(
        ledger: LedgerDep,
        datastore: ReadsDep,
        _: PrincipalDep,
        after: After,
        limit: Limit = 100,
        chosen: dict[str, Any] = Depends(filters),  # noqa: B008 - each list's own filters
    ) -> Any:
        items, cursor = read(datastore, chosen, after, limit)
        return as_page([present(ledger, i) for i in items] if present else items, cursor)

    endpoint.__name__ = name
    endpoint.__doc__ = (
        f"The {what}, oldest first (by the position each was created at), a page at a "
        "time: follow `next` as `after` until it is null. Filters combine with AND; "
        "dates are inclusive. An item is what the single read answers."
    )
    page = page_model(item, f"{item.__name__.removesuffix('Out')}Page")
    routing.read(router, path, page, summary=f"List {what}", views=views)(endpoint)
