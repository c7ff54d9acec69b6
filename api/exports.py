"""`GET /v1/exports/{name}.csv` and `.xlsx` (docs/api.md, "Exports"): files people open
in a spreadsheet, in Chinese or English.

Each file is written whole to a temporary file inside one short read-only snapshot,
and only then sent: no database transaction or pooled connection waits on a slow
reader, and what a 200 sends is always the whole file. At most `EXPORTS_AT_ONCE` are
built at a time in a process, so that exports never take the connections writers need.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import IO, Annotated, Any, Literal, TypeVar

from eventsourcing.postgres import PostgresDatastore
from fastapi import Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.lists import FundYearFilter, TalentFilter
from api.problems import ProblemError
from api.resources.grants import grant_filters
from api.resources.payments import payment_filters
from api.routing import PrincipalDep, ReadsDep, ledger_router, read, settings_of
from api.schemas import Day
from ledger.adapters.spreadsheets import XLSX_MAX_ROWS, write_csv, write_xlsx
from ledger.domain.values import YEARS
from ledger.domain.vocabulary import LANGS, Lang
from projections import exports
from projections.exports import EXPORTS, At, Extract

router = ledger_router("exports")
T = TypeVar("T")

EXPORTS_AT_ONCE = 2  # per process: each holds a pooled connection while it is built
SLOT_WAIT_SECONDS = 10.0
CHUNK_BYTES = 64 * 1024
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_slots = threading.BoundedSemaphore(EXPORTS_AT_ONCE)

FundYearRequired = Annotated[
    int, Query(ge=YEARS.first, le=YEARS.last, description="The fund year reported on")
]


async def audit_trail_filters(
    fund_year: FundYearFilter = None, talent_id: TalentFilter = None
) -> dict[str, Any]:
    """The filters of the histories: one fund year's, one talent's, or every event."""
    return {"fund_year": fund_year, "talent_id": talent_id}


async def execution_filters(
    request: Request,
    fund_year: FundYearRequired,
    on: Annotated[Day | None, Query(description="The business date to report at; today")] = None,
) -> dict[str, Any]:
    return {"fund_year": fund_year, "on": on or settings_of(request).today()}


async def year_end_filters(fund_year: FundYearRequired) -> dict[str, Any]:
    return {"fund_year": fund_year}


FILTERS: dict[str, Callable[..., Any]] = {
    "audit-trail": audit_trail_filters,
    "grants": grant_filters,
    "payments": payment_filters,
    "execution": execution_filters,
    "year-end": year_end_filters,
}
#: what each export holds, in words: the items, and the rows
WHAT = {
    "audit-trail": ("the audit trail", "a row per event (of one fund year, or one talent)"),
    "grants": ("grants", "a row per grant of the grants' list, with its filters"),
    "payments": ("payments", "a row per payment of the payments' list, with its filters"),
    "execution": (
        "a fund year's budget execution",
        "a row per line at a business date, its twelve months' amounts as columns",
    ),
    "year-end": ("a fund year's year-end statement", "a row per line"),
}


def negotiate(lang: Lang | None, accept_language: str | None) -> Lang:
    """`lang` if given; else the first of zh and en that `Accept-Language` prefers (by
    q-value, then order); else zh."""
    if lang is not None:
        return lang
    ranked: list[tuple[float, int, Lang]] = []
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and quality > 0:
            ranked.append((-quality, n, primary))
    return min(ranked)[2] if ranked else "zh"


def _manifest(
    name: str, filters: dict[str, Any], lang: Lang, at: At
) -> Callable[[int], list[tuple[str, Any]]]:
    def rows(count: int) -> list[tuple[str, Any]]:
        chosen = [(f"filter {k}", str(v)) for k, v in filters.items() if v is not None]
        return [
            ("export", name),
            *chosen,
            ("rows", count),
            ("position", at.position),
            ("chain_hash", at.chain_hash),
            ("language", lang),
            ("generated_at", datetime.now(UTC).isoformat(timespec="seconds")),
        ]

    return rows


def build(
    datastore: PostgresDatastore,
    name: str,
    fmt: str,
    filters: dict[str, Any],
    lang: Lang,
    bom: bool,
) -> tuple[IO[bytes], At]:
    """The whole file, written to a temporary file, and where in the history it was read."""

    def write(out: IO[bytes], extract: Extract, at: At) -> At:
        if fmt == "csv":
            write_csv(extract.columns, extract.rows, lang, out, bom=bom)
        elif extract.count > XLSX_MAX_ROWS:
            raise ProblemError(
                "validation_error",
                f"{extract.count} rows are more than a sheet holds ({XLSX_MAX_ROWS}): "
                "narrow the filters, or export CSV",
                errors=[{"loc": ["path", "format"], "msg": "too many rows", "type": "rule"}],
            )
        else:
            write_xlsx(extract.columns, extract.rows, lang, out, _manifest(name, filters, lang, at))
        return at

    return built(lambda out: exports.export(datastore, name, filters, partial(write, out)))


def built(fill: Callable[[IO[bytes]], T]) -> tuple[IO[bytes], T]:
    """A file `fill` writes whole into an anonymous temporary file (gone once closed,
    whatever happens to the request), before anything is sent: a slow reader holds no
    transaction. At most `EXPORTS_AT_ONCE` are built at once in a process, each holding a
    pooled connection; past that a `503` with `Retry-After`, so writers are never starved."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    if not _slots.acquire(timeout=SLOT_WAIT_SECONDS):
        out.close()
        raise ProblemError(
            "unavailable", "too many files are being built; retry", headers={"Retry-After": "5"}
        )
    try:
        result = fill(out)
    except BaseException:
        out.close()
        raise
    finally:
        _slots.release()
    out.seek(0)
    return out, result


def _chunks(out: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := out.read(CHUNK_BYTES):
            yield chunk
    finally:
        out.close()


def streamed(out: IO[bytes], media_type: str, headers: dict[str, str]) -> StreamingResponse:
    """A file `built` sent in chunks, with its length."""
    size = out.seek(0, 2)
    out.seek(0)
    return StreamingResponse(
        _chunks(out), media_type=media_type, headers={"Content-Length": str(size), **headers}
    )


def _response(name: str, fmt: str, lang: Lang, out: IO[bytes], at: At) -> StreamingResponse:
    return streamed(
        out,
        MEDIA_TYPES[fmt],
        {
            "Content-Disposition": f'attachment; filename="{name}-{at.position}.{fmt}"',
            "Content-Language": lang,
            "Ledger-Position": str(at.position),
            "Ledger-Chain-Hash": at.chain_hash,
        },
    )


HEADERS = {
    "Ledger-Position": {
        "description": "The file holds exactly what was recorded up to this position",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Ledger-Chain-Hash": {
        "description": "The hash chain's head at that position (hex)",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}
LangQuery = Annotated[
    Literal["zh", "en"] | None,
    Query(description="Headers and code labels in Chinese or English; else Accept-Language"),
]
AcceptLanguage = Annotated[str | None, Header(max_length=500)]


async def _bom(
    bom: Annotated[
        bool, Query(description="Start with a byte-order mark (for Excel on Chinese Windows)")
    ] = False,
) -> bool:
    return bom


async def _no_bom() -> bool:
    return False


def _add(name: str, fmt: str) -> None:
    filters = FILTERS[name]
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": f"The {fmt.upper()} file",
            "content": {
                MEDIA_TYPES[fmt].split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
            },
            "headers": HEADERS,
        },
    }

    def endpoint(
        datastore: ReadsDep,
        _: PrincipalDep,
        lang: LangQuery = None,
        accept_language: AcceptLanguage = None,
        chosen: dict[str, Any] = Depends(filters),  # noqa: B008 - each export's own filters
        bom: bool = Depends(_bom if fmt == "csv" else _no_bom),
    ) -> StreamingResponse:
        language = negotiate(lang, accept_language)
        out, at = build(datastore, name, fmt, chosen, language, bom)
        return _response(name, fmt, language, out, at)

    what, rows = WHAT[name]
    endpoint.__name__ = f"export_{name.replace('-', '_')}_{fmt}"
    endpoint.__doc__ = (
        f"{what[0].upper()}{what[1:]} as {fmt.upper()}: {rows}; headers and code labels "
        "in Chinese or English. The file holds exactly what was recorded up to its "
        "`Ledger-Position`, and is built whole before it is sent."
        + (" `bom=true` starts it with a byte-order mark." if fmt == "csv" else "")
        + (" A second sheet, `manifest`, says what it holds." if fmt == "xlsx" else "")
    )
    read(
        router,
        f"/exports/{name}.{fmt}",
        summary=f"Export {what} as {fmt.upper()}",
        views=EXPORTS[name].views,
        response_class=StreamingResponse,
        responses=responses,
    )(endpoint)


for _name in EXPORTS:
    for _fmt in ("csv", "xlsx"):
        _add(_name, _fmt)
