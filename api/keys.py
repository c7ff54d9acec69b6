"""API keys over HTTP, for admins (CONTRACT §13): issued with a name never used before,
listed without their secrets, revoked. Each issue and revocation is also an event in
the chain, with who did it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.lists import After, Limit, as_page, page_model
from api.problems import problem_responses
from api.routing import LedgerDep, PrincipalDep, consistent, ledger_router, roles
from api.writes import ALWAYS, WRITE_HEADERS, linked, read_link
from ledger.adapters.api_keys import (
    MAX_DAYS,
    KeyRecord,
    find_key,
    issue_key,
    list_keys,
    revoke_key,
)
from ledger.adapters.postgres import datastore_of
from ledger.domain.roles import ROLES
from ledger.domain.values import ID_PATTERN

router = ledger_router("keys")

Role = Annotated[
    str, Field(json_schema_extra={"enum": list(ROLES)}, pattern="^(" + "|".join(ROLES) + ")$")
]
KeyName = Annotated[str, Path(pattern=ID_PATTERN, description="The key's name")]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=ID_PATTERN, description="Who holds it: recorded as the actor")
    roles: list[Role] = Field(
        min_length=1,
        max_length=len(ROLES),
        description="Never both `approver` and `treasury` (`separation_of_duties`)",
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_DAYS, description="Refused after this many days"
    )


class KeyOut(BaseModel):
    name: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Within a second or so")

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            name=record.name,
            roles=record.roles,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class IssuedKey(BaseModel):
    name: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    key: str = Field(description="The bearer key: shown this once, never stored")


KeyPage = page_model(KeyOut, "KeyPage")
ADMIN = roles("admin")


@router.post(
    "/keys",
    summary="Issue an API key",
    status_code=201,
    response_model=IssuedKey,
    openapi_extra=ADMIN,
    responses={
        **linked(
            {201: {"description": "Issued", "headers": WRITE_HEADERS}},
            read_link("getApiKey", "name", ()),
        ),
        **problem_responses(*ALWAYS, "name_taken", "separation_of_duties"),
    },
)
async def issue_api_key(body: NewKey, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    """A new key for `name` with `roles`, answered this once (only its digest is kept).
    A name is never reused, even once its key is revoked (`name_taken`: never a replay);
    no key holds both approver and treasury. Recorded in the chain with who issued it."""
    issued = await run_in_threadpool(issue_key, ledger, body.name, body.roles, body.expires_in_days)
    answer = IssuedKey(
        name=issued.record.name,
        roles=issued.record.roles,
        created_at=issued.record.created_at,
        expires_at=issued.record.expires_at,
        key=issued.key,
    )
    return JSONResponse(
        answer.model_dump(mode="json"),
        status_code=201,
        headers={"Ledger-Position": str(issued.position)},
    )


@router.get(
    "/keys",
    summary="List API keys",
    response_model=KeyPage,
    openapi_extra=ADMIN,
    dependencies=[consistent(())],
    responses=problem_responses("unauthenticated", "forbidden", "validation_error", "unavailable"),
)
def list_api_keys(ledger: LedgerDep, _: PrincipalDep, after: After, limit: Limit = 100) -> Any:
    """Every key in the order issued, a page at a time: names, roles, when each was
    issued, expires, was revoked and last used; never a secret."""
    records, cursor = list_keys(datastore_of(ledger), after, limit)
    return as_page([KeyOut.of(r) for r in records], cursor)


@router.post(
    "/keys/{name}/revoke",
    summary="Revoke an API key",
    response_model=KeyOut,
    openapi_extra=ADMIN,
    responses={
        **linked(
            {200: {"description": "Revoked", "headers": WRITE_HEADERS}},
            read_link("getApiKey", "name", ("name",)),
        ),
        **problem_responses(*ALWAYS, "not_found"),
    },
)
def revoke_api_key(name: KeyName, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    """Refuse the key from now on: every process answers it `401` within two seconds.
    Recorded in the chain with who revoked it; revoking it again answers it as it is."""
    record, position = revoke_key(ledger, name)
    return JSONResponse(
        KeyOut.of(record).model_dump(mode="json"), headers={"Ledger-Position": str(position)}
    )


@router.get(
    "/keys/{name}",
    summary="Read an API key",
    response_model=KeyOut,
    openapi_extra=ADMIN,
    dependencies=[consistent(())],
    responses=problem_responses(
        "unauthenticated", "forbidden", "not_found", "validation_error", "unavailable"
    ),
)
def get_api_key(name: KeyName, ledger: LedgerDep, _: PrincipalDep) -> KeyOut:
    """One key as `GET /v1/keys` lists it: roles, dates and last use; never its secret."""
    return KeyOut.of(find_key(datastore_of(ledger), name))
