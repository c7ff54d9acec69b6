"""RFC 9457 problem details: every refusal has a status, a stable code and a detail."""

from __future__ import annotations

from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from ledger.domain.errors import LedgerError, ValidationFailed

PROBLEM_MEDIA_TYPE = "application/problem+json"

TITLES = {
    "unauthenticated": "Missing or unknown API key",
    "forbidden": "Your roles do not allow this",
    "not_found": "No such resource",
    "method_not_allowed": "Method not allowed",
    "idempotency_conflict": "Id reused with a different body",
    "budget_exceeded": "Budget exceeded",
    "overpayment": "Payment exceeds what is payable",
    "invalid_state": "Not allowed in the current state",
    "self_approval": "Maker-checker: you cannot approve your own proposal",
    "duplicate_bank_reference": "Bank reference already recorded",
    "fund_year_closed": "Fund year is closed",
    "clawback_exceeds_paid": "Clawback exceeds the net paid",
    "talent_departed": "Talent has departed",
    "separation_of_duties": "Duties must be kept apart",
    "name_taken": "Name already taken",
    "statement_unbalanced": "The statement's balances do not add up",
    "payload_too_large": "Request body too large",
    "unsupported_media_type": "Unsupported media type",
    "validation_error": "Invalid request",
    "contended": "Too many concurrent writers",
    "unavailable": "Service temporarily unavailable",
    "internal_error": "Internal error",
}

STATUS = {
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "statement_unbalanced": 422,
    "contended": 503,
    "unavailable": 503,
    "internal_error": 500,
}


#: the `type` of an error that a rule of the ledger found in a well-formed request
RULE = "rule"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, `query` or `path`, then the field")
    msg: str
    type: str = Field(
        description="What kind of error: `rule` for a well-formed value a rule of the ledger "
        "refuses (an unknown talent, a date outside the fund year, a position not yet "
        "recorded), `statement` for a malformed line of a bank statement, else pydantic's "
        "type of a value the schema does not allow (`missing`, `string_pattern_mismatch`, "
        "`extra_forbidden`...)"
    )


class Problem(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised by the HTTP layer itself (authentication, media types, waits)."""

    def __init__(
        self,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers
        self.errors = errors


def problem_body(
    code: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:talent-ledger:problem:{code}",
        "title": TITLES[code],
        "status": STATUS.get(code, 409),
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def error_body(error: LedgerError) -> dict[str, Any]:
    """The problem a domain refusal answers."""
    if isinstance(error, ValidationFailed):
        loc: list[str | int] = [error.where, error.field]
        error_item = {"loc": loc, "msg": error.detail, "type": RULE}
        return problem_body(error.code, error.detail, [error_item])
    return problem_body(error.code, error.detail)


def problem_response(
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return problem_json(problem_body(code, detail, errors), headers)


def problem_json(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def problem_schema(codes: list[str]) -> dict[str, Any]:
    """A problem whose `code` is one of `codes`."""
    only = {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}
    return {"allOf": [{"$ref": PROBLEM_SCHEMA_REF}, only]}


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route can answer, each status
    with the `code`s it can carry."""
    by_status: dict[int, set[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS.get(code, 409), set()).add(code)
    return {
        status: {
            "description": "Problem: " + ", ".join(f"`{c}`" for c in sorted(names)),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": problem_schema(sorted(names))}},
            **({"headers": PROBLEM_HEADERS[status]} if status in PROBLEM_HEADERS else {}),
        }
        for status, names in sorted(by_status.items())
    }


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
# Headers every problem of that status carries: a 401 names the scheme (RFC 9110
# §11.6.1), a 503 says when to retry (docs/api.md, "Conventions").
PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with",
            "required": True,
            "schema": {"type": "string", "enum": ["Bearer"]},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def with_problem_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the `Problem` schemas that the problem responses refer to."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas["Problem"].pop("$defs", {}))
    return openapi


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        headers = {"Retry-After": "1"} if STATUS.get(exc.code) == 503 else None
        return problem_json(error_body(exc), headers)

    @app.exception_handler(ProblemError)
    def problem_error(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.code, exc.detail, headers=exc.headers, errors=exc.errors)

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e["loc"]],
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response("validation_error", detail, errors=errors)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "validation_error"
        )
        headers = dict(exc.headers) if exc.headers else None
        if code == "method_not_allowed":
            headers = {"Allow": _allowed(request)}
        # FastAPI raises one other: a body it cannot read (not UTF-8). Like every
        # validation problem, it says where the request is wrong.
        detail = str(exc.detail)
        errors = (
            [{"loc": ["body"], "msg": detail, "type": "json_invalid"}]
            if code == "validation_error"
            else None
        )
        return problem_response(code, detail, headers=headers, errors=errors)


def _allowed(request: Request) -> str:
    """Every method the path answers (`Allow`, RFC 9110 §15.5.6). Starlette names only
    those of the first route matching the path, where a list and its create are two.
    Our routers are included without a prefix: each route's own path is the one served."""
    routes = (context.original_route for context in iter_route_contexts(request.app.routes))
    methods = {
        method
        for route in routes
        if isinstance(route, Route)
        and route.methods
        and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods
    }
    return ", ".join(sorted(methods))


#: what the database's being down or saturated raises
UNAVAILABLE = (PersistenceError, psycopg.OperationalError, PoolTimeout)


def unavailable_response() -> JSONResponse:
    """The database is down or saturated: a clean 503 the client may retry."""
    return problem_response(
        "unavailable", "the database is unavailable; retry", headers={"Retry-After": "1"}
    )


def install_unavailable_handlers(app: FastAPI) -> None:
    for exc_class in UNAVAILABLE:
        app.add_exception_handler(exc_class, lambda _, __: unavailable_response())
