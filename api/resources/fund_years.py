"""Fund years: opened, appropriated to programme lines, closed; their lines and totals
(now or as of any moment), history and trial balance."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import Field

from api.lists import After, HistoryPage, Limit, as_page, list_route
from api.operations import Ids, Operation
from api.routing import (
    AsOfQuery,
    PathYear,
    PrincipalDep,
    ReadsDep,
    Today,
    ledger_router,
    read,
)
from api.schemas import Day, Money, Out
from api.writes import add_writes
from ledger.domain.budget import Appropriation, FundYear
from ledger.usecases.fund_years import Appropriate, CloseFundYear, OpenFundYear
from ledger.usecases.ledger import Ledger
from projections import lists, reads, reports
from projections.views.audit_trail import AuditTrail
from projections.views.balances import Balances
from projections.views.journal import Journal
from projections.views.treasury import Treasury

router = ledger_router("fund years")


FundYearStatus = Literal["open", "closed"]


class FundYearSummary(Out):
    year: int
    currency: str
    status: FundYearStatus
    close_reason: str | None


class Amounts(Out):
    appropriated: Money
    committed: Money
    available: Money
    paid: Money
    returned: Money
    net_paid: Money
    in_kind_value: Money
    clawback_assessed: Money
    clawback_recovered: Money


class LineOut(Amounts):
    programme: str
    kind: Literal["cash", "in_kind"]


class FundYearOut(Out):
    year: int
    currency: str
    status: FundYearStatus
    lines: list[LineOut]
    totals: Amounts


Share = Annotated[
    str,
    Field(
        pattern=r"^-?[0-9]+\.[0-9]{4}$",
        description="A share with 4 decimals, rounded half to even",
        examples=["0.5014"],
    ),
]


class Flow(Out):
    paid: Money
    returned: Money
    net_paid: Money


class ExecutionMonth(Flow):
    month: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$", examples=["2024-05"])
    in_kind_value: Money


class ExecutionAmounts(Out):
    appropriated: Money
    committed: Money
    net_paid: Money = Field(description="the twelve months' and `outside_year`'s")
    in_kind_value: Money
    execution_rate: Share = Field(description="(net_paid + in_kind_value) / appropriated")
    lag: Share = Field(description="elapsed_share - execution_rate")
    outside_year: Flow = Field(
        description="paid or returned on dates outside the year (a grant paid the next year)"
    )


class ExecutionLine(ExecutionAmounts):
    programme: str
    kind: Literal["cash", "in_kind"]
    months: list[ExecutionMonth] = Field(description="always the year's 12, January first")


class Execution(Out):
    year: int
    on: date
    elapsed_share: Share = Field(description="days of the year up to and including `on`")
    lines: list[ExecutionLine]
    totals: ExecutionAmounts


class YearEndAmounts(Out):
    appropriated: Money
    committed: Money
    net_paid: Money
    in_kind_value: Money
    carried_forward: Money = Field(description="approved grants' amounts not yet net paid")
    pending: Money = Field(description="proposed grants not yet decided")
    lapsed: Money = Field(description="never committed: the line's `available`")
    clawback_recovered: Money


class YearEndLine(YearEndAmounts):
    programme: str
    kind: Literal["cash", "in_kind"]


class YearEnd(Out):
    year: int
    status: FundYearStatus
    closed_at: datetime | None
    checkpoint_id: str | None = Field(
        description="the checkpoint signed at closing; null until checkpoints are signed"
    )
    lines: list[YearEndLine]
    totals: YearEndAmounts


class AppropriationOut(Out):
    appropriation_id: str
    fund_year: int
    programme: str
    kind: str
    amount: Money
    reference: str


class TrialBalanceAccount(Out):
    account: str = Field(description="`<account>:<programme>`, see the chart of accounts")
    programme: str
    debit: Money
    credit: Money


class TrialBalance(Out):
    fund_year: int
    accounts: list[TrialBalanceAccount]
    total_debit: Money
    total_credit: Money


def _appropriation(ledger: Ledger, appropriation: Appropriation, ids: Ids) -> dict[str, Any]:
    return {**vars(appropriation), "fund_year": ids["year"]}


def _signed(ledger: Ledger, fund_year: FundYear, ids: Ids) -> FundYear:
    """A close is answered once a checkpoint signs the ledger with it (CONTRACT §12): a
    closed year's figures are fixed, and from then on provably so. Over HTTP and in a
    batch alike (a close replayed signs one more: a checkpoint only states what is)."""
    ledger.notary.sign()
    return fund_year


OPERATIONS = (
    Operation(
        "fund_year.open",
        "/fund-years",
        OpenFundYear,
        FundYearSummary,
        True,
        reads=("getFundYear", "year"),
        summary="Open a fund year",
        description="A fund year of the special fund, in CNY: the budget its programme "
        "lines are appropriated to.",
    ),
    Operation(
        "appropriation.add",
        "/fund-years/{year}/appropriations",
        Appropriate,
        AppropriationOut,
        True,
        _appropriation,
        reads=("getFundYear", "year"),
        summary="Appropriate to a programme line",
        description="Add budget to a programme line of an open fund year, under the "
        "document that decided it. The line's kind (`cash` or `in_kind`) is fixed by its "
        "first appropriation.",
    ),
    Operation(
        "fund_year.close",
        "/fund-years/{year}/close",
        CloseFundYear,
        FundYearSummary,
        False,
        _signed,
        True,
        reads=("getFundYear", "year"),
        summary="Close a fund year",
        description="Nothing new may be granted from a closed year (`fund_year_closed`); "
        "what was granted before may still be decided, paid, returned and clawed back. "
        "Its year-end statement then gives `closed_at`. Closing signs a checkpoint of the "
        "ledger (`GET /v1/audit/checkpoints/latest`) before it answers.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/fund-years/{year}", FundYearOut, summary="Read a fund year", views=(Balances.NAME,))
def get_fund_year(year: PathYear, datastore: ReadsDep, _: PrincipalDep, as_of: AsOfQuery) -> Any:
    """A fund year's programme lines and totals: appropriated, committed, available,
    paid, returned, net paid, in-kind value and clawbacks; now, or as of an instant or a
    position (`as_of`, `as_of_position`)."""
    return reads.fund_year(datastore, year, as_of.resolve(datastore))


async def fund_year_filters(
    status: Annotated[
        FundYearStatus | None, Query(description="Only fund years in this status")
    ] = None,
) -> dict[str, Any]:
    return {"status": status}


list_route(
    router,
    "/fund-years",
    FundYearOut,
    fund_year_filters,
    lists.fund_years,
    (Balances.NAME,),
    name="list_fund_years",
    what="fund years, each with its lines and totals as they stand",
)


# the fund year's existence is the balances' to say, for these two
@read(
    router,
    "/fund-years/{year}/history",
    HistoryPage,
    summary="Read a fund year's history",
    views=(AuditTrail.NAME, Balances.NAME),
)
def get_fund_year_history(
    year: PathYear, datastore: ReadsDep, _: PrincipalDep, after: After, limit: Limit = 100
) -> Any:
    """The audit-trail entries of the fund year, oldest first, a page at a time."""
    return as_page(*reads.history(datastore, fund_year=year, after=after, limit=limit))


REPORT_VIEWS = (Balances.NAME, Treasury.NAME)


@read(
    router,
    "/fund-years/{year}/execution",
    Execution,
    summary="Read a fund year's budget execution",
    views=REPORT_VIEWS,
)
def get_execution(
    year: PathYear,
    datastore: ReadsDep,
    _: PrincipalDep,
    response: Response,
    today: Today,
    on: Annotated[Day | None, Query(description="The business date to report at; today")] = None,
) -> Any:
    """How far the year's money has gone by a business date (预算执行), line by line and
    month by month, against the share of the year elapsed (序时进度): `execution_rate` =
    (net paid + in-kind value) / appropriated, `lag` = `elapsed_share` - `execution_rate`,
    exact until written with 4 decimals, rounded half to even. `Ledger-Position` says
    where in the history it was read."""
    report = reports.execution_report(datastore, year, on or today)
    response.headers["Ledger-Position"] = str(report.pop("position"))
    return report


@read(
    router,
    "/fund-years/{year}/year-end",
    YearEnd,
    summary="Read a fund year's year-end statement",
    views=REPORT_VIEWS,
)
def get_year_end(year: PathYear, datastore: ReadsDep, _: PrincipalDep, response: Response) -> Any:
    """The year-end statement (年终结转和结余), per line and in total: always appropriated =
    net paid + in-kind value + carried forward + pending + lapsed."""
    report = reports.year_end_report(datastore, year)
    response.headers["Ledger-Position"] = str(report.pop("position"))
    return report


@read(
    router,
    "/fund-years/{year}/trial-balance",
    TrialBalance,
    summary="Read a fund year's trial balance",
    views=(Journal.NAME, Balances.NAME),
)
def get_trial_balance(year: PathYear, datastore: ReadsDep, _: PrincipalDep) -> Any:
    """The double-entry journal's accounts, each balance on its side: total debits equal
    total credits."""
    return reads.trial_balance(datastore, year)
