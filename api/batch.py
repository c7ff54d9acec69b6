"""`POST /v1/batch`: up to 1000 operations, each answering what its single call would.

`atomic: true` runs them as one unit of work (one transaction, all or nothing);
`atomic: false` runs each on its own. Roles are checked per operation, and path ids
travel in each operation's body (`grant_id`, `year`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.operations import Ids, Operation, answer, presented
from api.problems import error_body, problem_body, problem_json, problem_responses
from api.resources import OPERATIONS
from api.routing import (
    LedgerDep,
    PrincipalDep,
    is_evidence,
    keep_evidence,
    ledger_router,
    roles,
)
from api.writes import ALWAYS, written
from ledger.domain.errors import LedgerError
from ledger.domain.roles import ROLES, Principal
from ledger.engine.engine import AtomicRefusal
from ledger.usecases.ledger import Ledger

router = ledger_router("batch")

MAX_OPERATIONS = 1000
if TYPE_CHECKING:
    OpName = str
else:  # the operations' names, as the schema's enum
    OpName = Literal[tuple(OPERATIONS)]


class BatchOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: OpName
    body: dict[str, Any]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    atomic: Annotated[bool, Field(strict=True)]
    operations: Annotated[list[BatchOperation], Field(min_length=1, max_length=MAX_OPERATIONS)]


class BatchResult(BaseModel):
    status: int
    body: dict[str, Any]
    position: int | None = Field(default=None, description="The single call's Ledger-Position")


class BatchOut(BaseModel):
    results: list[BatchResult]


Prepared = tuple[Operation, Ids, object]


def _prepare(item: BatchOperation, principal: Principal) -> Prepared | dict[str, Any]:
    """The operation and its command, or the problem its single call would answer first."""
    op = OPERATIONS[item.op]
    if op.role not in principal.roles:
        return problem_body("forbidden", f"{item.op} needs the {op.role} role")
    raw = dict(item.body)
    errors: list[dict[str, Any]] = []
    ids: Ids = {}
    for name, adapter in op.id_types.items():
        value = raw.pop(name, None)
        try:
            ids[name] = adapter.validate_python(value)
        except ValidationError as e:
            errors += [
                {"loc": ["body", name], "msg": err["msg"], "type": err["type"]}
                for err in e.errors()
            ]
    try:
        body = op.body.model_validate(raw)
    except ValidationError as e:
        errors += [
            {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in e.errors()
        ]
    if errors:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_body("validation_error", detail, errors)
    return op, ids, op.command_of(ids, body)


def _result(status: int, body: dict[str, Any], position: int | None = None) -> dict[str, Any]:
    """One `BatchResult`, built as the JSON it is: as a model it was validated, then
    dumped again with the whole response, a thousand times a batch."""
    return {"status": status, "body": body, "position": position}


def _run_one(ledger: Ledger, prepared: Prepared) -> dict[str, Any]:
    op, ids, command = prepared
    try:
        outcome = presented(ledger, op, ids, ledger.execute(command))
    except LedgerError as e:
        problem = error_body(e)
        return _result(problem["status"], problem)
    status, _, content = answer(op, outcome)
    return _result(status, content.model_dump(mode="json"), outcome.position)


@router.post(
    "/batch",
    summary="Run operations in a batch",
    response_model=BatchOut,
    openapi_extra=roles(*ROLES),
    responses={
        **written(BatchOut, created=False),
        **problem_responses(
            *ALWAYS,
            *sorted({code for op in OPERATIONS.values() for code in op.refusals}),
        ),
    },
)
def run_batch(body: BatchIn, ledger: LedgerDep, principal: PrincipalDep) -> Any:
    """Up to 1,000 write operations, each answering what its single call would; roles
    are checked per operation. `atomic: true` records all of them in one transaction or
    none, answering the first refusal with `failed_operation`."""
    prepared = [_prepare(item, principal) for item in body.operations]
    if not body.atomic:
        results = [
            _result(p["status"], p) if isinstance(p, dict) else _run_one(ledger, p)
            for p in prepared
        ]
        for item, result in zip(body.operations, results, strict=True):
            _evidence(ledger, item, result["body"])
        positions = [r["position"] for r in results if r["position"] is not None]
        head = max(positions) if positions else ledger.store.max_notification_id() or 0
        return JSONResponse({"results": results}, headers={"Ledger-Position": str(head)})
    for index, p in enumerate(prepared):
        if isinstance(p, dict):
            _evidence(ledger, body.operations[index], p)
            return _refused(index, p)
    ready = [p for p in prepared if not isinstance(p, dict)]
    try:
        outcomes = ledger.execute_atomic([command for _, _, command in ready])
    except AtomicRefusal as e:
        refusal = error_body(e.error)
        _evidence(ledger, body.operations[e.index], refusal)
        return _refused(e.index, refusal)
    results = []
    for (op, ids, _), outcome in zip(ready, outcomes, strict=True):
        status, _, content = answer(op, presented(ledger, op, ids, outcome))
        results.append(_result(status, content.model_dump(mode="json"), outcome.position))
    headers = {"Ledger-Position": str(max(o.position for o in outcomes))}
    return JSONResponse({"results": results}, headers=headers)


def _evidence(ledger: Ledger, item: BatchOperation, answer: dict[str, Any]) -> None:
    """An operation refused in a batch is kept as its single call's refusal would be."""
    code = answer.get("code")
    if isinstance(code, str) and is_evidence("POST", code):
        keep_evidence(ledger, "POST", "/v1" + OPERATIONS[item.op].path, code, {}, item.body)


def _refused(index: int, problem: dict[str, Any]) -> JSONResponse:
    """An atomic batch answers the first refusal, naming its operation; nothing is recorded."""
    body = {
        **problem,
        "detail": f"operation {index}: {problem['detail']}; nothing was recorded",
        "failed_operation": index,
    }
    if "errors" in body:
        body["errors"] = [{**e, "loc": ["operations", index, *e["loc"]]} for e in body["errors"]]
    return problem_json(body)
