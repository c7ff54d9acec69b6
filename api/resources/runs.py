"""Disbursement runs (§14): prepared from every unpaid instalment due, paid by the bank
from an ISO 20022 `pain.001` file, settled from the bank's answer (JSON or a
`pain.002` status report)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api.lists import After, FundYearFilter, Limit, as_page, list_route, page_model
from api.operations import Operation, body_model, written_headers
from api.problems import ProblemError, problem_responses
from api.routing import (
    LedgerDep,
    PrincipalDep,
    SettingsDep,
    file_body,
    ledger_of,
    ledger_router,
    read,
    roles,
)
from api.schemas import Money, Out
from api.treasury import treasury_at_head
from api.writes import ALWAYS, linked, read_link, written
from ledger.adapters.iso20022 import credit_transfer, parse_status_report
from ledger.adapters.postgres import datastore_of
from ledger.domain.errors import InvalidState, StatementRejected
from ledger.domain.runs import RUN_ID_PATTERN, DisbursementRun
from ledger.engine.outcome import Outcome
from ledger.usecases.ledger import Ledger
from ledger.usecases.runs import (
    PrepareRun,
    SettleRun,
    prepare_run,
    settle_run,
)
from projections import lists, runs
from projections.views.treasury import Treasury

router = ledger_router("disbursement runs")
OPERATIONS: tuple[Operation, ...] = ()  # its writes take more than a JSON body: below

RunStatus = Literal["prepared", "partially_settled", "settled"]
PathRunId = Annotated[str, Path(pattern=RUN_ID_PATTERN)]


class Exclusion(BaseModel):
    grant_id: str
    reason: Literal["talent_departed", "no_bank_account", "talent_unknown"]


class RunOut(Out):
    run_id: str
    status: RunStatus
    due_on: date
    value_date: date
    fund_year: int | None
    programme: str | None
    items: int
    total: Money
    settled: int
    rejected: int
    excluded: list[Exclusion]


class RunItemOut(Out):
    payment_id: str
    grant_id: str
    talent_id: str
    instalment: int
    amount: Money
    status: Literal["pending", "settled", "rejected"]
    bank_reference: str | None
    reason: str | None


def _settlement(validate: Callable[[Any], Any], answers: Any) -> Any:
    """A settlement's body read by `validate` (JSON text, or what a status report said),
    or its errors as a 422."""
    try:
        return validate(answers)
    except ValidationError as e:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in e.errors()]
        ) from None


def run_out(run: DisbursementRun) -> dict[str, Any]:
    return {
        **{k: getattr(run, k) for k in ("run_id", "status", "due_on", "value_date")},
        **{k: getattr(run, k) for k in ("fund_year", "programme", "total", "excluded")},
        "items": len(run.items),
        "settled": len(run.settled),
        "rejected": len(run.rejected),
    }


def _answered(outcome: Outcome[DisbursementRun], created: bool) -> Response:
    headers = written_headers(outcome)
    body = RunOut.model_validate(run_out(outcome.value)).model_dump_json()
    status = 201 if created and not outcome.replayed else 200
    return Response(body, status_code=status, headers=headers, media_type="application/json")


PrepareRunIn = body_model(PrepareRun, ())
SettleRunIn = body_model(SettleRun, ("run_id",))


def _inlined(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A model's JSON schema with its `$defs` written in place: a request body declared
    beside the route's own has no components of its own to refer to."""
    if defs is None:
        defs = schema.pop("$defs", {})
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inlined(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inlined(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


REFUSALS = ("validation_error", "invalid_state", "idempotency_conflict", *ALWAYS)


def _prepare(ledger: Ledger, run: PrepareRun) -> Outcome[DisbursementRun]:
    """Prepare once the treasury view includes every event recorded so far."""
    datastore = treasury_at_head(ledger)
    return ledger.prepare_run(run, lambda r: runs.candidates(datastore, r))


@router.post(
    "/disbursement-runs",
    summary="Prepare a disbursement run",
    status_code=201,
    response_model=RunOut,
    openapi_extra=roles(prepare_run.role),
    responses={
        **linked(written(RunOut, created=True), read_link("getDisbursementRun", "run_id", ())),
        **problem_responses(*REFUSALS),
    },
)
async def prepare_disbursement_run(body: PrepareRunIn, request: Request) -> Response:  # type: ignore[valid-type]
    """Take every approved grant's unpaid instalments due on or before `due_on` (of one
    fund year or programme, if given) that no open run holds, each for its unpaid
    remainder, as the run's items, numbered by grant id then instalment: item n is paid
    as payment `<run_id>-n`. A grant whose talent departed on or before `value_date`,
    or has no bank account, is left out with the reason. The same request again
    answers the run."""
    command = PrepareRun(**vars(body))
    outcome = await run_in_threadpool(_prepare, ledger_of(request), command)
    return _answered(outcome, created=True)


@router.post(
    "/disbursement-runs/{run_id}/settle",
    summary="Settle a disbursement run",
    response_model=RunOut,
    openapi_extra={
        **roles(settle_run.role),
        "requestBody": {
            "required": False,  # see the statement's: openapi-python-client's issue 1451
            "content": {
                "application/json": {"schema": _inlined(SettleRunIn.model_json_schema())},
                "application/xml": {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "What the bank did with the items: JSON, or an ISO 20022 "
            "pain.002.001.10 status report",
        },
    },
    responses={
        **linked(written(RunOut, created=False), read_link("getDisbursementRun", "run_id", ())),
        **problem_responses(
            "not_found", *REFUSALS, *(refusal.code for refusal in settle_run.refuses)
        ),
    },
)
async def settle_disbursement_run(run_id: PathRunId, request: Request) -> Response:
    """Record what the bank did: each settled item as the payment `POST /v1/payments`
    would record (value date: the run's), each rejected item due again for a later
    run. All or nothing: an item any rule of a payment refuses refuses the whole
    settlement. The same settlement again records nothing."""
    data = await file_body(request, "the bank's answer")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        body = _settlement(SettleRunIn.model_validate_json, data)
    elif media_type in ("application/xml", "text/xml"):
        try:
            report = await run_in_threadpool(parse_status_report, data, run_id)
        except StatementRejected as e:
            raise ProblemError(
                "validation_error",
                str(e),
                errors=[{"loc": ["body", e.field], "msg": str(e), "type": "pain.002"}],
            ) from None
        rejected = report.rejected
        if report.all_rejected is not None:  # the whole file: every item not answered
            run = await run_in_threadpool(ledger_of(request).load, DisbursementRun, run_id, "run")
            unanswered = [i for i in run.items if run.item_status(i) == "pending"]
            rejected = {item.payment_id: report.all_rejected for item in unanswered}
        answers = {
            "settled": [{"payment_id": p, "bank_reference": r} for p, r in report.settled.items()],
            "rejected": [{"payment_id": p, "reason": r} for p, r in rejected.items()],
        }
        # what the bank wrote is held to the rules of a JSON settlement (a reference an
        # identifier, a reason a text), as `POST /v1/payments` would hold it
        body = _settlement(SettleRunIn.model_validate, answers)
    else:
        raise ProblemError(
            "unsupported_media_type", "send the settlement as application/json or application/xml"
        )
    if not body.settled and not body.rejected:
        raise ProblemError(
            "validation_error",
            "the settlement answers for no item",
            errors=[{"loc": ["body"], "msg": "no item settled or rejected", "type": "rule"}],
        )
    command = SettleRun(run_id, **vars(body))
    outcome = await run_in_threadpool(ledger_of(request).execute, command)
    return _answered(outcome, created=False)


@read(router, "/disbursement-runs/{run_id}", RunOut, summary="Read a disbursement run")
def get_disbursement_run(run_id: PathRunId, ledger: LedgerDep, _: PrincipalDep) -> dict[str, Any]:
    """A run with how many items it has, settled and rejected, and what it left out."""
    return run_out(ledger.load(DisbursementRun, run_id, "disbursement run"))


RunItemPage = page_model(RunItemOut, "RunItemPage")


@read(router, "/disbursement-runs/{run_id}/items", RunItemPage, summary="List a run's items")
def list_disbursement_run_items(
    run_id: PathRunId, ledger: LedgerDep, _: PrincipalDep, after: After, limit: Limit = 100
) -> dict[str, Any]:
    """A run's items in their order, a page at a time (`next` as `after`), each with
    what the bank did with it."""
    run = ledger.load(DisbursementRun, run_id, "disbursement run")
    chosen = run.items[after : after + limit]
    items = [
        {
            **item._asdict(),
            "status": run.item_status(item),
            "bank_reference": run.settled.get(item.payment_id),
            "reason": run.rejected.get(item.payment_id),
        }
        for item in chosen
    ]
    end = after + len(chosen)
    return as_page(items, str(end) if end < len(run.items) else None)


@router.get(
    "/disbursement-runs/{run_id}/pain.001.xml",
    summary="Download a run's credit transfer file",
    response_class=Response,
    openapi_extra=roles(settle_run.role),
    responses={
        200: {"content": {"application/xml": {}}, "description": "ISO 20022 pain.001.001.09"},
        **problem_responses(
            "unauthenticated", "forbidden", "not_found", "validation_error", "invalid_state"
        ),
    },
)
def get_credit_transfer(
    run_id: PathRunId, ledger: LedgerDep, _: PrincipalDep, settings: SettingsDep
) -> Response:
    """The run as the ISO 20022 `pain.001.001.09` file the agent bank pays it from: one
    payment information block, one credit transfer per item (`EndToEndId`: its payment
    id), the creditor's name and account opened from the talent's sealed data for this
    file alone."""
    run = ledger.load(DisbursementRun, run_id, "disbursement run")
    talent_ids = sorted({i.talent_id for i in run.items if i.payment_id not in run.rejected})
    creditors = {}
    for talent_id, (name, account, wrapped) in runs.sealed_creditors(
        datastore_of(ledger), talent_ids
    ).items():
        opened = [ledger.vault.open(talent_id, wrapped, s) if s else None for s in (name, account)]
        if opened[0] is None or opened[1] is None:
            raise InvalidState(
                f"talent {talent_id}'s name or bank account is no longer held: reject its items"
            )
        creditors[talent_id] = (opened[0], opened[1])
    if missing := set(talent_ids) - creditors.keys():
        raise InvalidState(f"talent {min(missing)} is not in the read models yet: retry")
    body = credit_transfer(run, creditors, settings.payer, datetime.now(UTC))
    return Response(
        body,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{run_id}.pain.001.xml"'},
    )


async def run_filters(
    fund_year: FundYearFilter = None,
    status: Annotated[RunStatus | None, Query(description="Only runs in this status")] = None,
) -> dict[str, Any]:
    return {"fund_year": fund_year, "status": status}


list_route(
    router,
    "/disbursement-runs",
    RunOut,
    run_filters,
    lists.disbursement_runs,
    (Treasury.NAME,),
    name="list_disbursement_runs",
    what="disbursement runs",
)
