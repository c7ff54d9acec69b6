"""Personal data at rest (issue 6): a talent's name is sealed with a key of its own, and
destroying that key erases the name everywhere while the money and the chain stay."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest
from psycopg import sql

from ledger.domain.context import acting_as
from ledger.domain.errors import NotFound
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from ledger.usecases.personal import MasterKeyMismatch, new_master_key
from projections.worker import ProjectionWorker
from tests.integration.scenario import (
    Api,
    Json,
    approved_grant,
    assert_problem,
    created,
    expect,
    funded,
    pay,
    position,
    talent_body,
)

pytestmark = pytest.mark.db

NAME = "Forgettable Zhang 张可忘"
EMPLOYER = "Conspicuous Employer 显眼单位"


def database_text(db_url: str) -> str:
    """Every row of every table, as text, and every event's state decoded: what
    someone holding a copy of the database could read."""
    parts = []
    with psycopg.connect(db_url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables.fetchall():
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table)))
            parts += [row for (row,) in rows]
        parts += [bytes(s).decode() for (s,) in conn.execute("SELECT state FROM ledger_events")]
    return "\n".join(parts)


def readable_forms(text: str) -> list[str]:
    """The forms a text takes in the database: as is, JSON-escaped, bytea hex."""
    return [text, json.dumps(text)[1:-1], text.encode().hex()]


def register(api: Api) -> tuple[Json, int]:
    a = funded(api)
    approved_grant(a, amount="30000")
    pay(a, "P-1", amount="10000")
    response = a.clerk.post("/v1/talents", json=talent_body("T-9", NAME, employer=EMPLOYER))
    body = created(response)
    return body, position(response)


def test_a_name_is_nowhere_in_the_database_in_clear(api: Api, db_url: str) -> None:
    body, at = register(api)
    assert body["name"] == NAME
    read = expect(api("auditor").get("/v1/talents/T-9", params={"min_position": at}), 200)
    assert (read["name"], read["personal_data_erased"]) == (NAME, False)
    text = database_text(db_url)
    assert EMPLOYER in text, "the dump must show what is stored in clear"
    for form in readable_forms(NAME):
        assert form not in text


def test_a_retry_is_recognised_without_the_name_in_clear(api: Api) -> None:
    body, _ = register(api)
    clerk = api("clerk")
    again = clerk.post("/v1/talents", json=talent_body("T-9", NAME, employer=EMPLOYER))
    assert expect(again, 200) == body
    assert again.headers["Idempotent-Replayed"] == "true"
    other = clerk.post("/v1/talents", json=talent_body("T-9", NAME + "二", employer=EMPLOYER))
    assert_problem(other, 409, "idempotency_conflict")


def forget(ledger: Ledger, talent_id: str) -> int:
    with acting_as("dpo-cli", "req-forget"):
        return ledger.forget_talent(talent_id).position


def test_forgetting_erases_the_name_everywhere_and_keeps_the_money(
    api: Api, ledger: Ledger, count_events: Callable[[], int]
) -> None:
    """The API and the `ledger` command are separate processes in production: the
    erasure must show at once, with no cached key."""
    _, registered = register(api)
    auditor = api("auditor")
    before = expect(auditor.get("/v1/talents/T-1", params={"min_position": registered}), 200)
    assert before["name"] == "张伟"

    erased_at = forget(ledger, "T-1")
    after = expect(auditor.get("/v1/talents/T-1", params={"min_position": erased_at}), 200)
    assert (after["name"], after["personal_data_erased"]) == (None, True)
    assert {k: v for k, v in after.items() if k not in ("name", "personal_data_erased")} == {
        k: v for k, v in before.items() if k not in ("name", "personal_data_erased")
    }
    past = auditor.get("/v1/talents/T-1", params={"as_of_position": registered})
    assert expect(past, 200)["name"] is None, "a destroyed key cannot open past events"
    assert expect(auditor.get("/v1/talents/T-9"), 200)["name"] == NAME

    history = expect(auditor.get("/v1/talents/T-1/history"), 200)["items"]
    assert history[-1]["event_type"] == "Talent.PersonalDataErased"
    assert (history[-1]["actor"], history[-1]["position"]) == ("dpo-cli", erased_at)
    assert expect(auditor.get("/v1/audit/verify"), 200)["ok"] is True

    events = count_events()
    forget(ledger, "T-1")
    assert count_events() == events, "a second erasure records nothing"
    again = api("clerk").post("/v1/talents", json=talent_body())
    assert_problem(again, 409, "idempotency_conflict")
    assert count_events() == events
    with pytest.raises(NotFound):
        forget(ledger, "T-404")


def test_a_rebuild_after_forgetting_still_reads_the_name_as_erased(
    api: Api, ledger: Ledger
) -> None:
    register(api)
    erased_at = forget(ledger, "T-1")
    auditor = api("auditor")
    incremental = expect(auditor.get("/v1/talents/T-1", params={"min_position": erased_at}), 200)
    ProjectionWorker(ledger).rebuild()
    assert expect(auditor.get("/v1/talents/T-1"), 200) == incremental
    assert incremental["name"] is None


def test_another_master_key_cannot_open_the_database(
    ledger: Ledger, db_url: str, test_settings: Settings
) -> None:
    with pytest.raises(MasterKeyMismatch):
        open_ledger(db_url, replace(test_settings, master_key=new_master_key()))
