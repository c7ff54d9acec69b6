"""The wire forms of money, dates and instants, and the response models.

Money, dates and ids are parsed by the same narrow rules everywhere; a JSON number
where a string is due, an unknown field or a blank text is a 422. Request bodies are
made from the commands (`api.operations`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from ledger.domain.money import MONEY_PATTERN, ZERO_PATTERN, format_money, parse_money

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_INSTANT_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def _day(value: object) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise ValueError("a date is a string YYYY-MM-DD")
    return date.fromisoformat(value)


def whole(value: object) -> object:
    """JSON Schema's integer, which counts 1975.0 as one: a number with no fraction is
    its integer. Never a string or a boolean."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _instant(value: object) -> object:
    """Only RFC 3339 with its zone: pydantic alone would take a number as Unix time,
    a bare date as midnight and a naive time as UTC."""
    if not isinstance(value, str) or not _INSTANT_RE.fullmatch(value):
        raise ValueError("an instant is RFC 3339 with a time zone, e.g. 2024-05-01T08:00:00Z")
    return value


MoneyIn = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "not": {"pattern": ZERO_PATTERN},
            "description": "An amount: positive, at most 999999999999.99",
            "examples": ["3000.00"],
        }
    ),
]
Money = Annotated[
    Decimal,
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$"}),
]
Day = Annotated[
    date,
    BeforeValidator(_day),
    WithJsonSchema({"type": "string", "format": "date", "examples": ["2024-05-01"]}),
]
Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2024-05-01T08:00:00Z"]}),
]


class Body(BaseModel):
    """A request body (made from its command by `api.operations.body_model`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- responses --------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    database: bool
    head_position: int
    projection_position: int
    projection_lag: int


class HistoryEntry(Out):
    position: int
    recorded_at: datetime
    event_type: str
    talent_id: str | None
    grant_id: str | None
    payment_id: str | None
    waiver_id: str | None
    clawback_id: str | None
    recovery_id: str | None
    bank_reference: str | None
    fund_year: int | None
    programme: str | None
    amount: Money | None
    actor: str
    reason: str | None
    reference: str | None
    request_id: str
    hash: str


class VerificationOut(Out):
    ok: bool
    events_checked: int
    head: str
    first_bad_position: int | None = Field(description="Where the hash chain breaks")
    checkpoints_checked: int
    first_bad_checkpoint: int | None = Field(
        description="The first signed checkpoint whose root the events no longer give"
    )
    detail: str | None = Field(description="What did not hold, in words")


class StatementEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    bank_reference: str
    amount: str
    value_date: date


class UnknownEntry(StatementEntry):
    candidates: list[str] | None = Field(
        default=None,
        description="For a debit, the payments it may be: of its amount, dated at most 3 days "
        "from it, that no statement line claimed yet (the nearest first, at most 10); none "
        "for a credit. Absent from reports recorded before it was",
    )
    candidates_total: int | None = Field(
        default=None, description="How many candidates there are, when more than are listed"
    )


class Period(BaseModel):
    from_: date = Field(alias="from")
    to: date


class StatedBalances(BaseModel):
    """Balances are signed: negative when the account is overdrawn (a debit balance)."""

    opening: str
    opening_on: date
    closing: str
    closing_on: date


class Continuity(BaseModel):
    previous_reconciliation_id: str = Field(
        description="The latest statement of the same account closing before this one closes"
    )
    previous_closing: str
    opening: str
    ok: bool = Field(description="Whether this statement opens where the previous one closed")


class ReconciliationReport(BaseModel):
    reconciliation_id: str
    sha256: str
    period: Period
    line_count: int
    account: str | None = Field(
        default=None, description="The account the statement states (camt.053, MT940)"
    )
    balances: StatedBalances | None = Field(
        default=None, description="The booked balances the statement states (camt.053, MT940)"
    )
    continuity: Continuity | None = Field(
        default=None,
        description="For a statement with balances, when one of its account closing before it "
        "was imported",
    )
    matched: list[StatementEntry]
    amount_mismatch: list[StatementEntry]
    date_mismatch: list[StatementEntry]
    unknown_in_ledger: list[UnknownEntry]
    missing_in_bank: list[StatementEntry]


class ReconciliationCounts(BaseModel):
    """How many statement lines (or, for `missing_in_bank`, ledger payments) fell into
    each bucket."""

    matched: int
    amount_mismatch: int
    date_mismatch: int
    unknown_in_ledger: int
    missing_in_bank: int


class ReconciliationSummary(BaseModel):
    reconciliation_id: str
    period: Period
    line_count: int
    counts: ReconciliationCounts
    recorded_at: datetime


class ExceptionItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: Literal[
        "departed_without_clawback",
        "clawback_overdue",
        "duplicate_payment_suspected",
        "approved_unpaid",
        "clawback_exceeds_net_paid",
        "reconciliation_unmatched",
        "statement_discontinuity",
        "double_housing_benefit",
        "run_item_overdue",
    ]
    detail: str


class ExceptionsReport(BaseModel):
    fund_year: int | None
    on: date
    items: list[ExceptionItem]
