"""What a warm grant proposal asks of PostgreSQL (docs/performance.md, "Profile of a
proposal"), counted with psycopg's tracing instrumentation: no statement in the request
itself (the key and the aggregates are cached), and one for its group commit, which
takes the lock, checks what the decision read and appends its events
(`LedgerRecorder.append_checked`). A decision whose copies turn out stale, or taken
under the lock, goes through an append session (`LedgerRecorder.append_session`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from ledger.adapters.postgres import AppendSession, LedgerRecorder, datastore_of
from ledger.domain.budget import FundYear
from ledger.domain.context import acting_as
from ledger.domain.errors import TalentDeparted
from ledger.domain.grants import Grant
from ledger.domain.talents import Talent
from ledger.engine import engine
from ledger.engine.unit_of_work import UnitOfWork
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.fund_years import appropriate
from ledger.usecases.ledger import Ledger
from tests import commands as c
from tests.conftest import install_key


def test_a_warm_proposal_asks_nothing_itself_and_its_group_commit_one_statement(
    test_settings: Settings,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # every span, those outside a request too
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(replace(test_settings, projections_in_process=False), provider)
    with TestClient(app) as client:
        keys = {r: install_key(datastore_of(app.state.ledger), r, [r]) for r in ("admin", "clerk")}
        admin, clerk = ({"Authorization": f"Bearer {keys[r]}"} for r in ("admin", "clerk"))
        for path, body, who in [
            ("/v1/fund-years", {"year": 2030, "currency": "CNY"}, admin),
            (
                "/v1/fund-years/2030/appropriations",
                {
                    "appropriation_id": "A",
                    "programme": "settling_in",
                    "kind": "cash",
                    "amount": "1000000",
                    "reference": "x",
                },
                admin,
            ),
            (
                "/v1/talents",
                {
                    "talent_id": "T1",
                    "name": "张三",
                    "category": "master",
                    "employer": "e",
                    "arrived_on": "2030-01-01",
                    "service_commitment_until": "2035-01-01",
                },
                clerk,
            ),
        ]:
            assert client.post(path, json=body, headers=who).status_code == 201
        for n in range(2):  # the first warms the key and the aggregates' copies
            exporter.clear()
            proposal = {
                "grant_id": f"G{n}",
                "talent_id": "T1",
                "fund_year": 2030,
                "programme": "settling_in",
                "amount": "300.00",
                "policy_reference": "p",
                "reason": "r",
            }
            assert client.post("/v1/grants", json=proposal, headers=clerk).status_code == 201
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if (s.attributes or {}).get("http.route") == "/v1/grants"]
    statements = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    in_request = [s for s in statements if s.context.trace_id == request.context.trace_id]
    assert in_request == [], [s.name for s in in_request]
    (statement,) = statements
    assert str((statement.attributes or {})["db.statement"]).startswith(
        'SELECT * FROM "ledger_append_checked"('
    )


def propose(where: Ledger, grant_id: str, talent_id: str = "T1") -> None:
    with acting_as("clerk", f"req-{grant_id}"):
        where.execute(c.ProposeGrant(grant_id, talent_id, 2030, "settling_in", D1, "p", "r"))


D1 = Decimal(1)


@pytest.fixture
def other(ledger: Ledger, db_url: str, test_settings: Settings) -> Iterator[Ledger]:
    """Another process beside `ledger`, overtaken lately: both propose on one fund year,
    as `ledger serve --workers 2` does, and `ledger` has just changed it again."""
    other = open_ledger(db_url, test_settings)
    try:
        with acting_as("admin", "req-year"):
            ledger.execute(c.OpenFundYear(2030, "CNY"))
            ledger.execute(c.Appropriate(2030, "A", "settling_in", "cash", Decimal(10**6), "r"))
        with acting_as("clerk", "req-talent"):
            ledger.execute(
                c.RegisterTalent("T1", "王芳", "master", "某院", date(2030, 1, 5), date(2033, 1, 4))
            )
        propose(other, "G0")  # its copies, warm; the year and talent were new to it
        propose(ledger, "G1")  # the year changes under them: decided again at G2
        propose(other, "G2")
        propose(ledger, "G3")
        yield other
    finally:
        other.close()


def test_a_process_overtaken_lately_decides_once_under_the_lock(
    ledger: Ledger, other: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process finds the year changed by the other at every append. A process
    overtaken lately does not decide on its copies first, a decision it would take
    again under the lock: there, the year is checked with the lock and brought current
    with what came with the check, the decision taken once, and what else it read is
    checked by the server ahead of the events, with no round trip awaited. Once a
    commit finds nothing changed, or a second has passed, it decides first again, as
    a single process does."""
    calls = _counted(monkeypatch, "changed", "events_after", "expect_current")
    reserve = FundYear.reserve
    decisions: list[str] = []

    def reserving(year: FundYear, grant: Any) -> None:
        decisions.append(grant.grant_id)
        reserve(year, grant)

    monkeypatch.setattr(FundYear, "reserve", reserving)

    def proposed(grant_id: str) -> tuple[list[str], list[str]]:
        """What proposing on `other` decided and asked (the checks it sent)."""
        calls.clear()
        decisions.clear()
        propose(other, grant_id)
        return decisions[:], calls[:]

    # the year, checked with the lock, the rest ahead of the one decision's events
    assert proposed("G4") == (["G4"], ["changed", "expect_current"])
    assert other.load(FundYear, 2030, "fund year").version == 7  # opened, A, G0-G4
    # nothing changed under it this time: the next is decided first, as usual
    assert proposed("G5") == (["G5"], ["changed", "expect_current"])
    assert proposed("G6") == (["G6"], ["append_checked"])
    propose(ledger, "G7")
    # its copy of the year was stale: nothing recorded, decided again under the lock
    assert proposed("G8") == (["G8", "G8"], ["append_checked", "changed", "expect_current"])
    assert other.load(FundYear, 2030, "fund year").version == 11  # opened, A, G0-G8
    monkeypatch.setattr(engine, "OVERTAKEN_LATELY_SECONDS", 0.0)
    propose(ledger, "G9")
    assert proposed("G10") == (["G10", "G10"], ["append_checked", "changed", "expect_current"])
    assert proposed("G11") == (["G11"], ["append_checked"]), "not lately"


def test_a_decision_on_a_guess_that_read_none_of_it_ends_the_guessing(
    ledger: Ledger, other: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval reads its grant, not the fund year: taken on a guess because the
    year changed, it is no reason to take the next decision under the lock too."""
    propose(ledger, "G4")  # the year changes under `other` again
    calls = _counted(monkeypatch, "changed", "expect_current")
    with acting_as("approver", "req-approve"):
        other.execute(c.ApproveGrant("G0", "ok"))
    assert calls == ["changed", "expect_current"]  # on the guess
    calls.clear()
    propose(other, "G5")
    # decided on its copies first; the approval read no year, so this copy of it is
    # stale: the server finds it so, and it is decided again under the lock
    assert calls == ["append_checked", "changed", "expect_current"]


def _counted(monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """The names of the append session's methods called (of `names`), and of the
    store's `append_checked`, in order."""
    calls: list[str] = []

    def count(owner: type, name: str) -> None:
        method = getattr(owner, name)

        def counted(self: Any, *args: Any) -> Any:
            calls.append(name)
            return method(self, *args)

        monkeypatch.setattr(owner, name, counted)

    for name in names:
        count(AppendSession, name)
    count(LedgerRecorder, "append_checked")
    return calls


def test_a_guess_that_misses_what_changed_records_nothing_and_decides_again(
    ledger: Ledger, other: Ledger, db_url: str
) -> None:
    """A process overtaken lately on the fund year decides under the lock on its copy
    of the talent, which the other process has just recorded as departed: the server
    finds that copy stale ahead of the grant's events, the transaction records
    nothing, and the decision taken again on what is current refuses the grant."""
    with acting_as("clerk", "req-depart"):
        ledger.execute(c.DepartTalent("T1", date(2030, 6, 1), "left"))
    with pytest.raises(TalentDeparted):
        propose(other, "G4")
    assert [g for g in ("G0", "G1", "G2", "G3", "G4") if grant_exists(db_url, g)] == [
        "G0",
        "G1",
        "G2",
        "G3",
    ]
    assert other.load(FundYear, 2030, "fund year").version == 6  # opened, A, G0-G3


def test_a_decision_on_a_copy_only_read_and_stale_records_nothing_and_is_refused(
    ledger: Ledger, other: Ledger, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not overtaken lately, a process decides on its copies and records the decision
    in one statement. Its copy of the talent, which the decision only reads, is stale
    (the other process recorded the talent as departed): the server finds it so,
    nothing is recorded, and the decision taken again under the lock refuses."""
    monkeypatch.setattr(engine, "OVERTAKEN_LATELY_SECONDS", 0.0)
    with acting_as("clerk", "req-depart"):
        ledger.execute(c.DepartTalent("T1", date(2030, 6, 1), "left"))
    calls = _counted(monkeypatch, "changed")
    with pytest.raises(TalentDeparted):
        propose(other, "G4")
    assert calls[:2] == ["append_checked", "changed"]
    assert not grant_exists(db_url, "G4")


def test_a_refusal_on_a_guess_stands_only_once_what_it_lacked_is_read(
    ledger: Ledger, other: Ledger
) -> None:
    """Overtaken lately, a decision under the lock needing an aggregate this process
    has never seen (`read_all`: registered by the other process) is refused for now:
    it is read and the decision taken again, never answered as missing."""
    with acting_as("clerk", "req-t2"):
        ledger.execute(
            c.RegisterTalent("T2", "李雷", "master", "某院", date(2030, 1, 5), date(2033, 1, 4))
        )

    def needs_t2(uow: UnitOfWork, _: object) -> str:
        uow.read_all([(Talent, "T2")])
        return uow.get(Talent, "T2", "talent").talent_id

    with acting_as("clerk", "req-needs"):
        assert other.run(needs_t2, None).value == "T2"


def test_a_big_decision_on_a_guess_is_sent_ahead_the_usual_way(
    ledger: Ledger, other: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overtaken lately, a decision handed `APPEND_CHUNK` aggregates under the lock is
    stopped, nothing written, and taken the usual way: its events go ahead while it
    decides (`_SentAhead`) instead of being decided whole holding the lock."""
    monkeypatch.setattr(engine._Bounded, "every", 3)
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    posted: list[int] = []
    post = engine._SentAhead._post

    def counted(sent: Any, statements: Any) -> None:
        posted.append(1)
        post(sent, statements)

    monkeypatch.setattr(engine._SentAhead, "_post", counted)
    steps = [
        (appropriate.decide, c.Appropriate(2030, f"B{n}", "settling_in", "cash", D1, "r"))
        for n in range(12)
    ]
    with acting_as("admin", "req-many"):
        outcomes = other.run_atomic(steps)
    assert posted, "sent ahead"
    assert len({o.position for o in outcomes}) == 1
    appropriations = other.load(FundYear, 2030, "fund year").appropriations
    assert {f"B{n}" for n in range(12)} <= set(appropriations)


def grant_exists(db_url: str, grant_id: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE originator_id = %s",
            (Grant.create_id(grant_id),),
        ).fetchone()
    return row is not None and row[0] > 0
