"""The wire forms of money, dates and instants, and the response models.

Money, dates and ids are parsed by the same narrow rules everywhere; a JSON number
where a string is due, an unknown field or a blank text is a 422. Request bodies are
made from the commands (`api.operations`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from ledger.domain.money import MONEY_PATTERN, format_money, parse_money

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_INSTANT_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def _day(value: object) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise ValueError("a date is a string YYYY-MM-DD")
    return date.fromisoformat(value)


def _instant(value: object) -> object:
    """Only RFC 3339 with its zone: pydantic alone would take a number as Unix time,
    a bare date as midnight and a naive time as UTC."""
    if not isinstance(value, str) or not _INSTANT_RE.fullmatch(value):
        raise ValueError("an instant is RFC 3339 with a time zone, e.g. 2024-05-01T08:00:00Z")
    return value


MoneyIn = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["3000.00"]}),
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


class FundYearSummary(Out):
    year: int
    currency: str
    status: Literal["open", "closed"]
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
    status: Literal["open", "closed"]
    lines: list[LineOut]
    totals: Amounts


class AppropriationOut(Out):
    appropriation_id: str
    fund_year: int
    programme: str
    kind: str
    amount: Money
    reference: str


def revealed(talent: dict[str, Any], name: str | None) -> dict[str, Any]:
    """A talent's fields as answered: its name in clear, or null once erased."""
    return {**talent, "name": name, "personal_data_erased": name is None}


class TalentProfile(Out):
    talent_id: str
    name: str | None = Field(description="null once the talent's personal data was erased")
    personal_data_erased: bool
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date
    status: Literal["active", "departed"]
    departed_on: date | None
    departure_reason: str | None


class TalentBalance(Out):
    fund_year: int
    programme: str
    granted: Money
    approved: Money
    paid: Money
    returned: Money
    outstanding: Money
    in_kind_value: Money
    clawback_assessed: Money
    clawback_recovered: Money
    clawback_due: Money


class TalentOut(TalentProfile):
    balances: list[TalentBalance]


class GrantOut(Out):
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    policy_reference: str
    reason: str
    status: Literal["proposed", "approved", "rejected", "revoked"]
    proposed_by: str
    decision_by: str | None
    decision_note: str | None
    effective_amount: Money
    paid: Money
    returned: Money
    net_paid: Money
    payable: Money
    clawed_back: Money


class PaymentOut(Out):
    payment_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    value_date: date
    bank_reference: str
    status: Literal["paid", "returned"]
    returned_on: date | None
    return_reason: str | None


class WaiverOut(Out):
    waiver_id: str
    talent_id: str
    fund_year: int
    programme: str
    apartment: str
    start_on: date
    end_on: date
    monthly_rent: Money
    months: int
    value: Money
    status: Literal["active", "ended"]
    ended_on: date | None


class RecoveryOut(Out):
    clawback_id: str
    recovery_id: str
    amount: Money
    value_date: date
    bank_reference: str


class RecoveryItem(Out):
    recovery_id: str
    amount: Money
    value_date: date
    bank_reference: str


class ClawbackOut(Out):
    clawback_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    reason: str
    status: Literal["open", "recovered"]
    recovered: Money
    due: Money
    recoveries: list[RecoveryItem]

    @classmethod
    def of(cls, clawback: Any) -> ClawbackOut:
        return cls.model_validate(
            {
                **{
                    name: getattr(clawback, name)
                    for name in cls.model_fields
                    if name != "recoveries"
                },
                "recoveries": list(clawback.recoveries.values()),
            }
        )


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


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next: str | None = Field(description="Cursor of the next page (`after=`), null at the end")


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


class VerificationOut(Out):
    ok: bool
    events_checked: int
    head: str
    first_bad_position: int | None


class StatementEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    bank_reference: str
    amount: str
    value_date: date


class Period(BaseModel):
    from_: date = Field(alias="from")
    to: date


class ReconciliationReport(BaseModel):
    reconciliation_id: str
    sha256: str
    period: Period
    line_count: int
    matched: list[StatementEntry]
    amount_mismatch: list[StatementEntry]
    date_mismatch: list[StatementEntry]
    unknown_in_ledger: list[StatementEntry]
    missing_in_bank: list[StatementEntry]


class ExceptionItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: Literal[
        "departed_without_clawback",
        "clawback_overdue",
        "duplicate_payment_suspected",
        "approved_unpaid",
        "clawback_exceeds_net_paid",
        "reconciliation_unmatched",
    ]
    detail: str


class ExceptionsReport(BaseModel):
    fund_year: int | None
    on: date
    items: list[ExceptionItem]
