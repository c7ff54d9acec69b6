"""Treasury and audit work: bank statements and the exceptions report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.lists import DateFrom, DateTo, FundYearFilter, list_route
from api.problems import ProblemError, problem_responses
from api.routing import (
    ANY_ROLE,
    LedgerDep,
    LedgerRoute,
    PathId,
    PrincipalDep,
    Today,
    consistent,
    ledger_of,
    read,
    roles,
    settings_of,
)
from api.schemas import Day, ExceptionsReport, ReconciliationReport, ReconciliationSummary
from api.writes import ALWAYS, linked, read_link, written
from ledger.adapters.postgres import datastore_of
from ledger.adapters.statement_csv import parse_cn_bank, parse_statement
from ledger.domain.audit_exceptions import find_exceptions
from ledger.domain.errors import StatementRejected
from ledger.domain.reconciliation import Reconciliation, Statement, unpack_json
from ledger.engine.outcome import Outcome
from ledger.usecases.ledger import Ledger
from projections import lists, reads
from projections.views.balances import Balances
from projections.views.treasury import Treasury
from projections.worker import wait_for_position

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["treasury and audit"])

STATEMENT_MEDIA_TYPES = ("text/csv", "application/csv")
#: the CSV layouts a statement may come in, by the media type's `profile` parameter
STATEMENT_PROFILES = {None: parse_statement, "cn-bank": parse_cn_bank}


def import_statement(ledger: Ledger, statement: Statement) -> Outcome[Reconciliation]:
    """Reconcile against the treasury view once it includes every event recorded so far."""
    datastore = datastore_of(ledger)
    head = ledger.store.max_notification_id() or 0
    if not wait_for_position(datastore, head, (Treasury.NAME,)):
        raise ProblemError(
            "unavailable", "the read models are catching up; retry", headers={"Retry-After": "1"}
        )
    return ledger.import_statement(statement, lambda s: reads.movements(datastore, s))


@router.post(
    "/reconciliations",
    summary="Import a bank statement",
    status_code=201,
    response_model=ReconciliationReport,
    openapi_extra={
        **roles("treasury"),
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
            "description": "value_date,bank_reference,amount,direction,counterparty (UTF-8); "
            "or, as `text/csv; profile=cn-bank`, a Chinese online-banking export",
        },
    },
    responses={
        **linked(
            written(ReconciliationReport, created=True),
            read_link("getReconciliation", "reconciliation_id", ()),
        ),
        **problem_responses(*ALWAYS),
    },
)
async def import_bank_statement(request: Request) -> Response:
    """Reconcile a bank statement (CSV: `value_date,bank_reference,amount,direction,
    counterparty`, UTF-8; or `text/csv; profile=cn-bank`: a Chinese online-banking
    export, UTF-8 or GBK, with 交易日期, 借方发生额, 贷方发生额, 对方户名 and 交易流水号
    among its columns) against the ledger's payments, returns and recoveries, and record
    the report. A statement wrong anywhere is refused whole, naming its line; the same
    file again answers the same report."""
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    profile = {
        name.strip().lower(): value.strip().strip('"').lower()
        for name, _, value in (p.partition("=") for p in parameters.split(";") if p.strip())
    }.get("profile")
    parse = STATEMENT_PROFILES.get(profile)
    if media_type.strip().lower() not in STATEMENT_MEDIA_TYPES or parse is None:
        raise ProblemError(
            "unsupported_media_type", "send the statement as text/csv (profile: cn-bank or none)"
        )
    data = await request.body()
    try:
        statement = await run_in_threadpool(parse, data)
    except StatementRejected as e:
        raise ProblemError(
            "validation_error",
            e.detail,
            errors=[{"loc": ["body", e.line, e.field], "msg": e.detail, "type": "statement"}],
        ) from None
    outcome = await run_in_threadpool(import_statement, ledger_of(request), statement)
    headers = {"Ledger-Position": str(outcome.position)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _report(outcome.value, 200 if outcome.replayed else 201, headers)


async def reconciliation_filters(
    value_date_from: DateFrom = None, value_date_to: DateTo = None
) -> dict[str, Any]:
    """Statements whose period meets these dates."""
    return {"value_date_from": value_date_from, "value_date_to": value_date_to}


list_route(
    router,
    "/reconciliations",
    ReconciliationSummary,
    reconciliation_filters,
    lists.reconciliations,
    (Treasury.NAME,),
    name="list_reconciliations",
    what="reconciliations, each its statement's period and how many lines fell in each bucket",
)


@read(
    router,
    "/reconciliations/{reconciliation_id}",
    ReconciliationReport,
    summary="Read a reconciliation",
)
def get_reconciliation(reconciliation_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> Response:
    """The report recorded when the statement was imported, as it was recorded."""
    return _report(ledger.load(Reconciliation, reconciliation_id, "reconciliation"), 200, {})


def _report(reconciliation: Reconciliation, status: int, headers: dict[str, str]) -> Response:
    """The stored report as it was stored: a large statement's report is tens of
    megabytes of JSON, not worth parsing only to serialise again."""
    return Response(
        unpack_json(reconciliation.report_packed),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


@router.get(
    "/reports/exceptions",
    summary="Read the exceptions report",
    response_model=ExceptionsReport,
    openapi_extra=roles(*ANY_ROLE),
    dependencies=[consistent((Treasury.NAME, Balances.NAME))],
    responses=problem_responses("unauthenticated", "validation_error", "unavailable"),
)
def get_exceptions_report(
    ledger: LedgerDep,
    _: PrincipalDep,
    request: Request,
    today: Today,
    fund_year: FundYearFilter = None,
    on: Annotated[
        Day | None,
        Query(description="Judge ages (90 and 180 days) as of this business date; today"),
    ] = None,
) -> dict[str, Any]:
    """The red flags an auditor must see, each with a stable `code`: a departed talent
    without a clawback (with the pro-rata proposal), a clawback overdue, a duplicate
    payment suspected, a grant approved and unpaid too long, an unmatched statement line,
    a clawback above what was net paid."""
    day = on or today
    zone = settings_of(request).timezone
    facts = reads.exception_facts(datastore_of(ledger), fund_year, zone)
    return {"fund_year": fund_year, "on": day, "items": find_exceptions(facts, day)}
