"""Treasury and audit work: bank statements and the exceptions report."""

from __future__ import annotations

from typing import Annotated, Any

from eventsourcing.postgres import PostgresDatastore
from fastapi import Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.lists import DateFrom, DateTo, FundYearFilter, list_route
from api.operations import written_headers
from api.problems import ProblemError, problem_responses
from api.routing import (
    ANY_ROLE,
    LedgerDep,
    PathId,
    PrincipalDep,
    Today,
    consistent,
    file_body,
    ledger_of,
    ledger_router,
    read,
    roles,
    settings_of,
)
from api.schemas import Day, ExceptionsReport, ReconciliationReport, ReconciliationSummary
from api.writes import ALWAYS, linked, read_link, written
from ledger.adapters.postgres import datastore_of
from ledger.adapters.statement_formats import PARSERS
from ledger.domain.audit_exceptions import find_exceptions
from ledger.domain.errors import StatementRejected
from ledger.domain.reconciliation import Reconciliation, Statement, unpack_json
from ledger.engine.outcome import Outcome
from ledger.usecases.ledger import Ledger
from projections import lists, reads
from projections.views.balances import Balances
from projections.views.treasury import Treasury
from projections.waits import reach

router = ledger_router("treasury and audit")

#: the formats a statement may come in (`PARSERS`), by its media type and the media
#: type's `profile` parameter
STATEMENT_PROFILES = {
    ("text/csv", None): "ledger",
    ("application/csv", None): "ledger",
    ("text/csv", "cn-bank"): "cn-bank",
    ("application/csv", "cn-bank"): "cn-bank",
    ("application/xml", None): "camt.053",
    ("text/xml", None): "camt.053",
    ("text/plain", None): "mt940",
}
#: what the documentation shows of the formats besides the CSV the story sends
STATEMENT_EXAMPLES = {
    "application/xml": """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>PCBC20240401053000017</MsgId><CreDtTm>2024-04-01T06:30:00+08:00</CreDtTm></GrpHdr>
<Stmt><Id>31050161373600001234-20240331</Id>
<Acct><Id><Othr><Id>31050161373600001234</Id></Othr></Id><Ccy>CNY</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">1000000.00</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-01</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">995000.00</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-31</Dt></Dt></Bal>
<Ntry><Amt Ccy="CNY">5000.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<ValDt><Dt>2024-03-03</Dt></ValDt><AcctSvcrRef>2024030300011</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><Refs><EndToEndId>BR-20240303-001</EndToEndId></Refs>
<RltdPties><Cdtr><Pty><Nm>张伟</Nm></Pty></Cdtr></RltdPties></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>
""",
    "text/plain": """:20:STMT240331001
:25:31050161373600001234
:28C:3/1
:60F:C240301CNY1000000,00
:61:2403030303D5000,00NTRFBR-20240303-001//2024030300011
:86:/NAME/ZHANG WEI/REMI/SETTLING-IN ALLOWANCE
:62F:C240331CNY995000,00
""",
}


def treasury_at_head(ledger: Ledger) -> PostgresDatastore:
    """The datastore, once the treasury view includes every event recorded so far:
    what a decision it proposes candidates for (a statement's movements, a run's
    grants) must not miss; else a 503 to retry."""
    head = ledger.store.max_notification_id() or 0
    return reach(datastore_of(ledger), head, (Treasury.NAME,))


def import_statement(ledger: Ledger, statement: Statement) -> Outcome[Reconciliation]:
    """Reconcile against the treasury view once it includes every event recorded so far."""
    datastore = treasury_at_head(ledger)
    return ledger.import_statement(
        statement,
        lambda s: reads.movements(datastore, s),
        lambda s: reads.previous_statement(datastore, s),
    )


@router.post(
    "/reconciliations",
    summary="Import a bank statement",
    status_code=201,
    response_model=ReconciliationReport,
    openapi_extra={
        **roles("treasury"),
        "requestBody": {
            # not `required`, nor the CSV first: openapi-python-client (0.29) writes a
            # client that cannot import for a required body of several media types
            # (its issue 1451) and sends bytes as the last of them. An empty body is
            # refused all the same.
            "required": False,
            "content": {
                media: {
                    "schema": {"type": "string", "format": "binary"},
                    **(
                        {"example": STATEMENT_EXAMPLES[media]}
                        if media in STATEMENT_EXAMPLES
                        else {}
                    ),
                }
                for media in ("application/xml", "text/plain", "text/csv")
            },
            "description": "value_date,bank_reference,amount,direction,counterparty (UTF-8); "
            "or, as `text/csv; profile=cn-bank`, a Chinese online-banking export; as "
            "`application/xml`, an ISO 20022 camt.053.001.08; as `text/plain`, a SWIFT MT940",
        },
    },
    responses={
        **linked(
            written(ReconciliationReport, created=True),
            read_link("getReconciliation", "reconciliation_id", ()),
        ),
        **problem_responses(*ALWAYS, "statement_unbalanced"),
    },
)
async def import_bank_statement(request: Request) -> Response:
    """Reconcile a bank statement against the ledger's payments, returns and recoveries,
    and record the report. The statement comes as CSV (`value_date,bank_reference,amount,
    direction,counterparty`, UTF-8), as `text/csv; profile=cn-bank` (a Chinese
    online-banking export, UTF-8 or GBK, with 交易日期, 借方发生额, 贷方发生额, 对方户名 and
    交易流水号 among its columns), as `application/xml` (ISO 20022 camt.053.001.08) or as
    `text/plain` (SWIFT MT940). A statement wrong anywhere is refused whole, naming its
    line (or, in XML, its element); one whose balances do not add up is
    `statement_unbalanced`. The same file again answers the same report."""
    data = await file_body(request, "the statement")
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    profile = {
        name.strip().lower(): value.strip().strip('"').lower()
        for name, _, value in (p.partition("=") for p in parameters.split(";") if p.strip())
    }.get("profile")
    parse = PARSERS.get(STATEMENT_PROFILES.get((media_type.strip().lower(), profile), ""))
    if parse is None:
        raise ProblemError(
            "unsupported_media_type",
            "send the statement as text/csv (profile: cn-bank or none), application/xml "
            "(camt.053.001.08) or text/plain (MT940)",
        )
    try:
        statement = await run_in_threadpool(parse, data)
    except StatementRejected as e:
        where = ["body", e.field] if e.line is None else ["body", e.line, e.field]
        raise ProblemError(
            e.code, e.detail, errors=[{"loc": where, "msg": e.detail, "type": "statement"}]
        ) from None
    outcome = await run_in_threadpool(import_statement, ledger_of(request), statement)
    return _report(outcome.value, 200 if outcome.replayed else 201, written_headers(outcome))


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
    a clawback above what was net paid, a statement not opening where the previous one of
    its account closed."""
    day = on or today
    zone = settings_of(request).timezone
    facts = reads.exception_facts(datastore_of(ledger), fund_year, zone)
    return {"fund_year": fund_year, "on": day, "items": find_exceptions(facts, day)}
