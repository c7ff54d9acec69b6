"""Signed checkpoints and proofs over HTTP (CONTRACT §12, docs/auditing.md): a note that
verifies with the ledger's public key, a root that is RFC 9162's over the chain hashes,
inclusion and consistency proofs that RFC 9162's own algorithms accept, a checkpoint
at every close, and the attack the chain alone cannot see: a history rewritten and
re-chained inside the database by its owner."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.entrypoints.runtime import Settings, signing_key
from ledger.usecases.checkpoints import Signer
from ledger.verifier import leaf_hash, verify_note
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    approved_grant,
    created,
    expect,
    funded,
    pay,
    position,
)
from tests.rfc9162 import mth, verify_consistency, verify_inclusion
from tests.tampering import rewrite_and_rechain

pytestmark = [pytest.mark.db]


def chain_hashes(db_url: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, hash FROM ledger_events ORDER BY notification_id"
        ).fetchall()
    return [(p, bytes(h)) for p, h in rows]


def public_key(settings: Settings) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(Signer(signing_key(settings)).public_key)


def sign(a: Actors) -> dict[str, Any]:
    r = a.auditor.post("/v1/audit/checkpoints", json={})
    body = created(r)
    assert position(r) == body["head_position"]
    return body


def verify(a: Actors) -> dict[str, Any]:
    result: dict[str, Any] = expect(a.auditor.get("/v1/audit/verify"), 200)
    return result


def paid_life(api: Api) -> Actors:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="1500.00", bank_reference="BR-1")
    return a


# --- signing ----------------------------------------------------------------------


def test_a_checkpoint_signs_the_rfc_9162_root_of_every_chain_hash(
    api: Api, db_url: str, test_settings: Settings
) -> None:
    a = paid_life(api)
    hashes = chain_hashes(db_url)

    checkpoint = sign(a)

    assert checkpoint["tree_size"] == len(hashes)
    assert checkpoint["head_position"] == hashes[-1][0]
    assert checkpoint["head"] == hashes[-1][1].hex()
    assert base64.b64decode(checkpoint["root"]) == mth([h for _, h in hashes])
    note = verify_note(checkpoint["note"], public_key(test_settings))
    assert (note.tree_size, base64.b64encode(note.root).decode()) == (
        checkpoint["tree_size"],
        checkpoint["root"],
    )
    assert expect(a.auditor.get("/v1/audit/checkpoints/latest"), 200) == checkpoint


def test_a_later_checkpoint_grows_from_the_last_and_still_gives_the_full_root(
    api: Api, db_url: str
) -> None:
    a = paid_life(api)
    first = sign(a)
    pay(a, "P-2", amount="200.00", bank_reference="BR-2")
    second = sign(a)

    hashes = [h for _, h in chain_hashes(db_url)]
    assert second["tree_size"] == len(hashes) > first["tree_size"]
    assert base64.b64decode(second["root"]) == mth(hashes)
    # nothing new: a new checkpoint of the same tree
    third = sign(a)
    assert (third["tree_size"], third["root"]) == (second["tree_size"], second["root"])
    assert third["checkpoint_id"] > second["checkpoint_id"]


def test_checkpoints_are_listed_a_page_at_a_time(api: Api) -> None:
    a = paid_life(api)
    ids = [sign(a)["checkpoint_id"] for _ in range(3)]
    first = expect(a.clerk.get("/v1/audit/checkpoints", params={"limit": 2}), 200)
    assert [c["checkpoint_id"] for c in first["items"]] == ids[:2]
    rest = expect(a.clerk.get("/v1/audit/checkpoints", params={"after": first["next"]}), 200)
    assert [c["checkpoint_id"] for c in rest["items"]] == ids[2:]
    assert rest["next"] is None


def test_an_empty_ledger_signs_the_empty_tree(api: Api) -> None:
    a = Actors.of(api)
    assert expect(a.auditor.get("/v1/audit/checkpoints/latest"), 404)["code"] == "not_found"
    checkpoint = created(a.admin.post("/v1/audit/checkpoints", json={}))
    assert (checkpoint["tree_size"], checkpoint["head_position"]) == (0, 0)
    assert base64.b64decode(checkpoint["root"]) == mth([])


def test_only_admins_and_auditors_sign_and_a_body_must_be_empty(api: Api) -> None:
    a = paid_life(api)
    for who in (a.clerk, a.approver, a.treasury):
        assert expect(who.post("/v1/audit/checkpoints", json={}), 403)["code"] == "forbidden"
    refused = expect(a.auditor.post("/v1/audit/checkpoints", json={"tree_size": 1}), 422)
    assert refused["code"] == "validation_error"
    assert expect(a.auditor.get("/v1/audit/checkpoints"), 200)["items"] == []


def test_closing_a_fund_year_signs_a_checkpoint_that_covers_the_close(api: Api) -> None:
    a = paid_life(api)
    r = a.admin.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "年终决算"})
    expect(r, 200)

    latest = expect(a.auditor.get("/v1/audit/checkpoints/latest"), 200)
    assert latest["head_position"] >= position(r)


# --- proofs -----------------------------------------------------------------------


def test_every_event_has_an_inclusion_proof_rfc_9162_accepts(api: Api, db_url: str) -> None:
    a = paid_life(api)
    checkpoint = sign(a)
    root = base64.b64decode(checkpoint["root"])
    hashes = chain_hashes(db_url)
    size = checkpoint["tree_size"]

    for index, (at, chain_hash) in enumerate(hashes):
        proof = expect(
            a.auditor.get("/v1/audit/proof", params={"position": at, "tree_size": size}), 200
        )
        assert (proof["position"], proof["leaf_index"], proof["tree_size"]) == (at, index, size)
        leaf = base64.b64decode(proof["leaf_hash"])
        assert leaf == leaf_hash(chain_hash)
        path = [base64.b64decode(node) for node in proof["audit_path"]]
        assert verify_inclusion(index, size, leaf, path, root)


def test_a_later_checkpoint_is_proved_consistent_with_an_earlier_one(api: Api) -> None:
    a = paid_life(api)
    first = sign(a)
    pay(a, "P-2", amount="200.00", bank_reference="BR-2")
    pay(a, "P-3", amount="300.00", bank_reference="BR-3")
    second = sign(a)
    m, n = first["tree_size"], second["tree_size"]

    proof = expect(a.auditor.get("/v1/audit/consistency", params={"from": m, "to": n}), 200)

    assert (proof["from"], proof["to"]) == (m, n)
    nodes = [base64.b64decode(node) for node in proof["proof"]]
    roots = base64.b64decode(first["root"]), base64.b64decode(second["root"])
    assert verify_consistency(m, n, *roots, nodes)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/audit/proof", {"position": 1, "tree_size": 999}, "tree_size"),
        ("/v1/audit/proof", {"position": 999, "tree_size": 3}, "position"),
        ("/v1/audit/proof", {"position": 0, "tree_size": 3}, "position"),
        ("/v1/audit/consistency", {"from": 4, "to": 3}, "from"),
        ("/v1/audit/consistency", {"from": 1, "to": 999}, "to"),
        ("/v1/audit/consistency", {"from": 1}, "to"),
    ],
)
def test_a_proof_of_a_tree_or_event_the_ledger_lacks_is_a_422_naming_it(
    api: Api, path: str, params: dict[str, int], field: str
) -> None:
    a = paid_life(api)
    refused = expect(a.auditor.get(path, params=params), 422)
    assert refused["code"] == "validation_error"
    assert [e["loc"][-1] for e in refused["errors"]] == [field]


# --- the attack the chain alone cannot see ------------------------------------------


def test_a_history_rewritten_and_rechained_by_the_owner_fails_at_its_checkpoint(
    api: Api, db_url: str
) -> None:
    a = paid_life(api)
    checkpoint = sign(a)
    intact = verify(a)
    assert (intact["ok"], intact["checkpoints_checked"]) == (True, 1)

    rewrite_and_rechain(db_url, "1500.00", "1400.00")

    result = verify(a)
    assert result["ok"] is False
    assert result["first_bad_position"] is None, "the chain itself agrees with itself"
    assert result["first_bad_checkpoint"] == checkpoint["checkpoint_id"]
    assert "rewritten" in result["detail"]
