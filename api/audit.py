"""Proof for auditors (CONTRACT §12): the hash chain and signed checkpoints verified,
checkpoints signed and listed, and RFC 9162 inclusion and consistency proofs.

Roots, leaf hashes and proof nodes are base64 (as in the signed note); chain hashes
are hex, as everywhere else in the API."""

from __future__ import annotations

import base64
from datetime import datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from psycopg.rows import DictRow
from pydantic import BaseModel, ConfigDict, Field

from api import schemas as s
from api.exports import built, streamed
from api.lists import After, FundYearFilter, Limit, as_page, list_route, page_model
from api.problems import ProblemError, problem_responses
from api.routing import (
    LedgerDep,
    PrincipalDep,
    SettingsDep,
    consistent,
    ledger_router,
    read,
    roles,
)
from api.schemas import Day
from api.writes import ALWAYS, WRITE_HEADERS, linked, read_link
from ledger.adapters.checkpoints import checkpoint_of
from ledger.adapters.postgres import CHECKPOINTS_TABLE, REFUSALS_TABLE, datastore_of
from ledger.usecases.checkpoints import Checkpoint
from ledger.usecases.ledger import Ledger
from projections.bundle import write_bundle
from projections.paging import Where, page
from projections.waits import reach
from projections.worker import NAMES

router = ledger_router("audit")

MAX_TREE = 2**62
Base64 = Annotated[str, Field(description="base64 of 32 bytes")]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class CheckpointOut(BaseModel):
    checkpoint_id: int
    tree_size: int = Field(description="How many events the tree holds: those up to head_position")
    head_position: int
    root: Base64 = Field(description="RFC 9162 Merkle tree hash over the events' chain hashes")
    head: str = Field(description="The chain hash at head_position (hex)")
    signed_at: datetime
    note: str = Field(description="The C2SP signed note: keep it to check the ledger later")

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointOut:
        return cls(
            checkpoint_id=checkpoint.checkpoint_id,
            tree_size=checkpoint.tree_size,
            head_position=checkpoint.head_position,
            root=b64(checkpoint.root),
            head=checkpoint.head.hex(),
            signed_at=checkpoint.signed_at,
            note=checkpoint.note,
        )


class NewCheckpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InclusionOut(BaseModel):
    position: int
    leaf_index: int
    tree_size: int
    leaf_hash: Base64
    audit_path: list[Base64]


class ConsistencyOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from")
    to: int
    proof: list[Base64]


@read(router, "/audit/verify", s.VerificationOut, summary="Verify the hash chain", views=())
def verify_audit_chain(ledger: LedgerDep, _: PrincipalDep) -> s.VerificationOut:
    """Recompute every event's hash from the one before, independently of the database
    function that wrote them, and every signed checkpoint's Merkle root from those
    hashes: a history rewritten and re-chained inside the database, even by its owner,
    no longer gives the root a checkpoint signed (`first_bad_checkpoint`)."""
    return s.VerificationOut.model_validate(ledger.notary.verify())


@router.post(
    "/audit/checkpoints",
    summary="Sign a checkpoint",
    status_code=201,
    response_model=CheckpointOut,
    openapi_extra=roles("admin", "auditor"),
    responses={
        **linked(
            {201: {"description": "Signed", "headers": WRITE_HEADERS}},
            read_link("getCheckpoint", "checkpoint_id", ()),
        ),
        **problem_responses(*ALWAYS),
    },
)
async def sign_checkpoint(
    ledger: LedgerDep, _: PrincipalDep, body: NewCheckpoint | None = None
) -> JSONResponse:
    """Sign the ledger as it stands: the Merkle root of every event recorded so far,
    signed with the ledger's key as a note. Keep the note: `ledger audit verify
    --checkpoint` checks the ledger against it even if every stored checkpoint is gone."""
    checkpoint = await run_in_threadpool(ledger.notary.sign)
    return JSONResponse(
        CheckpointOut.of(checkpoint).model_dump(mode="json"),
        status_code=201,
        headers={"Ledger-Position": str(checkpoint.head_position)},
    )


def _checkpoints(datastore: Any, _: dict[str, Any], after: int, limit: int) -> Any:
    return page(datastore, CHECKPOINTS_TABLE, Where(), after, limit, order="checkpoint_id")


def _present(_: Ledger, row: DictRow) -> CheckpointOut:
    return CheckpointOut.of(checkpoint_of(row))


async def _no_filters() -> dict[str, Any]:
    return {}


list_route(
    router,
    "/audit/checkpoints",
    CheckpointOut,
    _no_filters,
    _checkpoints,
    (),
    _present,
    name="list_checkpoints",
    what="signed checkpoints",
)


@read(
    router,
    "/audit/checkpoints/latest",
    CheckpointOut,
    summary="Read the latest checkpoint",
    views=(),
)
def get_latest_checkpoint(ledger: LedgerDep, _: PrincipalDep) -> CheckpointOut:
    """The checkpoint of the largest tree (404 `not_found` before the first is signed)."""
    checkpoint = ledger.notary.find()
    if checkpoint is None:
        raise ProblemError("not_found", "no checkpoint has been signed yet")
    return CheckpointOut.of(checkpoint)


@read(
    router,
    "/audit/checkpoints/{checkpoint_id}",
    CheckpointOut,
    summary="Read a checkpoint",
    views=(),
)
def get_checkpoint(
    checkpoint_id: Annotated[int, Path(ge=1, le=MAX_TREE)], ledger: LedgerDep, _: PrincipalDep
) -> CheckpointOut:
    """One signed checkpoint, as it was signed: its tree size, root, head and the note
    to keep (404 `not_found` for an id never signed)."""
    checkpoint = ledger.notary.find(checkpoint_id)
    if checkpoint is None:
        raise ProblemError("not_found", f"no checkpoint {checkpoint_id}")
    return CheckpointOut.of(checkpoint)


TreeSize = Annotated[int, Query(ge=1, le=MAX_TREE, description="The size of the tree")]


@read(router, "/audit/proof", InclusionOut, summary="Prove an event is in a tree", views=())
def get_inclusion_proof(
    ledger: LedgerDep,
    _: PrincipalDep,
    position: Annotated[int, Query(ge=1, le=MAX_TREE, description="The event's position")],
    tree_size: TreeSize,
) -> InclusionOut:
    """RFC 9162 inclusion proof of the event at `position` in the tree of the first
    `tree_size` events: with the leaf hash and the audit path, anyone recomputes the
    root a checkpoint of that size signed."""
    proof = ledger.notary.inclusion(position, tree_size)
    return InclusionOut(
        position=proof.position,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        leaf_hash=b64(proof.leaf_hash),
        audit_path=[b64(node) for node in proof.audit_path],
    )


@read(
    router, "/audit/consistency", ConsistencyOut, summary="Prove a tree extends another", views=()
)
def get_consistency_proof(
    ledger: LedgerDep,
    _: PrincipalDep,
    first: Annotated[int, Query(alias="from", ge=1, le=MAX_TREE, description="The smaller tree")],
    to: TreeSize,
) -> Any:
    """RFC 9162 consistency proof that the tree of the first `from` events is a prefix
    of the tree of the first `to`: a later checkpoint extends an earlier one, nothing
    signed before was rewritten."""
    proof = ledger.notary.consistency(first, to)
    return {"from": first, "to": to, "proof": [b64(node) for node in proof]}


class RefusalOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    request_id: str
    method: str
    path: str
    code: str
    ids: dict[str, str | int] = Field(description="The ids the path and body named; nothing else")


RefusalPage = page_model(RefusalOut, "RefusalPage")


@router.get(
    "/audit/refusals",
    summary="List refused attempts",
    response_model=RefusalPage,
    openapi_extra=roles("admin", "auditor"),
    dependencies=[consistent(())],
    responses=problem_responses("unauthenticated", "forbidden", "validation_error", "unavailable"),
)
def list_refusals(
    ledger: LedgerDep,
    _: PrincipalDep,
    settings: SettingsDep,
    after: After,
    limit: Limit = 100,
    code: Annotated[
        str | None, Query(pattern="^[a-z_]{1,64}$", description="Only this code")
    ] = None,
    actor: Annotated[str | None, Query(max_length=64, description="Only this key's")] = None,
    first: Annotated[Day | None, Query(alias="from", description="On or after this date")] = None,
    last: Annotated[Day | None, Query(alias="to", description="On or before this date")] = None,
) -> Any:
    """Every write refused as `forbidden`, or by a business rule (a `409` other than
    `idempotency_conflict`), oldest first, a page at a time: when, who, the request,
    the code and the ids it named, never its amounts, texts or personal data. Dates are
    business dates (`LEDGER_TIMEZONE`), inclusive. Kept apart from the ledger's
    events: a refusal still records nothing in the ledger."""
    where = Where()
    where.equal("code", code)
    where.equal("actor", actor)
    zone = settings.timezone
    if first is not None:
        where.add("at >= %s", datetime.combine(first, time(), zone))
    if last is not None:
        where.add("at < %s", datetime.combine(last + timedelta(days=1), time(), zone))
    rows, cursor = page(datastore_of(ledger), REFUSALS_TABLE, where, after, limit, order="seq")
    return as_page(rows, cursor)


@read(
    router,
    "/audit/bundle.zip",
    summary="Download an audit bundle",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The bundle (zip)",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "Ledger-Position": {
                    "description": "The checkpoint's head position: the bundle's last event",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
        }
    },
)
def get_audit_bundle(
    ledger: LedgerDep,
    _: PrincipalDep,
    checkpoint_id: Annotated[
        int | None, Query(ge=1, le=MAX_TREE, description="The checkpoint; the latest if left out")
    ] = None,
    fund_year: FundYearFilter = None,
) -> StreamingResponse:
    """What `ledger audit bundle` writes (docs/auditing.md): every event up to the
    checkpoint with its stored bytes and chain hash, the signed note, the public key and
    a manifest, and with `fund_year` that fund year as of the checkpoint, for
    `ledger-verify` to check on a machine that trusts neither this server nor its
    database. Built whole first, as an export is (`api.exports.built`): a slow download
    holds no transaction, and few are built at once (404 `not_found` before the first
    checkpoint)."""
    checkpoint = ledger.notary.find(checkpoint_id)
    if checkpoint is None:
        raise ProblemError("not_found", "no such checkpoint has been signed")
    if fund_year is not None:
        reach(datastore_of(ledger), checkpoint.head_position, NAMES)
    out = built(lambda file: write_bundle(ledger, file, checkpoint.checkpoint_id, fund_year))[0]
    return streamed(
        out,
        "application/zip",
        {
            "Content-Disposition": 'attachment; filename="talent-ledger-bundle-'
            f'{checkpoint.checkpoint_id}.zip"',
            "Ledger-Position": str(checkpoint.head_position),
        },
    )
