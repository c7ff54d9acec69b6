"""The hash chain (docs/api.md, "Conventions" and `GET /v1/audit/verify`): every event is
chained to the one before it, so changing or removing one stored row, even with the
table's triggers bypassed, is found at exactly that position."""

from __future__ import annotations

import gc
import hashlib
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import IsolationLevel

import ledger.entrypoints.runtime
from ledger.adapters.postgres import MIGRATIONS
from ledger.domain.chain import GENESIS, event_digest
from ledger.domain.context import acting_as
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from projections.worker import ProjectionWorker
from tests import commands as c
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    approved_grant,
    clawback_body,
    created,
    depart,
    expect,
    funded,
    grant_body,
    pay,
    position,
    recovery_body,
)
from tests.integration.test_projections import tracking, until
from tests.tampering import tamper

# ledger.adapters.chain.verify_chain leaves its named server cursor open (see
# test_verify_leaves_no_cursor_open); that one warning is ignored elsewhere so that the
# chain itself is still tested.
pytestmark = [pytest.mark.db]

Row = tuple[Any, ...]
COLUMNS = "notification_id, originator_id, originator_version, topic, state, recorded_at, hash"


def events(db_url: str) -> list[Row]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            f"SELECT {COLUMNS} FROM ledger_events ORDER BY notification_id"
        ).fetchall()


def position_of(db_url: str, topic_suffix: str, nth: int = 0) -> int:
    """The position of the `nth` stored event whose topic ends with `topic_suffix`."""
    found = [row[0] for row in events(db_url) if row[3].endswith(topic_suffix)]
    assert len(found) > nth, f"no {topic_suffix} event #{nth}"
    return int(found[nth])


def expected_chain(rows: list[Row]) -> list[bytes]:
    """Each event's hash as `ledger.domain.chain.event_digest` chains it from the genesis."""
    prev = GENESIS
    chain = []
    for at, originator_id, version, topic, state, recorded_at, _ in rows:
        prev = event_digest(prev, at, originator_id, version, topic, bytes(state), recorded_at)
        chain.append(prev)
    return chain


def life(api: Api) -> Actors:
    """A few dozen events of every kind, through the API."""
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="10000", bank_reference="BR-1")
    pay(a, "P-2", amount="5000", bank_reference="BR-2")
    expect(a.treasury.post("/v1/payments/P-2/return", json=_returned()), 200)
    created(a.clerk.post("/v1/grants", json=grant_body("G-2", amount="2000")))
    expect(a.approver.post("/v1/grants/G-2/reject", json={"reason": "材料不全"}), 200)
    depart(a)
    created(a.clerk.post("/v1/clawbacks", json=clawback_body(amount="4000")))
    created(a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery_body()))
    return a


def _returned() -> dict[str, str]:
    return {"returned_on": "2024-04-01", "reason": "账户已注销"}


def verify(a: Actors) -> dict[str, Any]:
    body: dict[str, Any] = expect(a.auditor.get("/v1/audit/verify"), 200)
    assert set(body) >= {"ok", "events_checked", "head", "first_bad_position"}
    return body


def assert_api_still_works(a: Actors) -> None:
    """Writes and reads still answer on a tampered ledger."""
    created(a.clerk.post("/v1/talents", json=_talent("T-after")))
    r = a.clerk.post("/v1/grants", json=grant_body("G-after", talent_id="T-after", amount="100"))
    created(r)
    fund_year = expect(
        a.auditor.get(f"/v1/fund-years/{YEAR}", params={"min_position": position(r)}), 200
    )
    assert fund_year["year"] == YEAR
    expect(a.auditor.get("/v1/grants/G-after"), 200)
    expect(a.auditor.get("/v1/events", params={"limit": 5}), 200)


def _talent(talent_id: str) -> dict[str, str]:
    return {
        "talent_id": talent_id,
        "name": "王芳",
        "category": "master",
        "employer": "某大学",
        "arrived_on": "2024-01-02",
        "service_commitment_until": "2029-01-01",
    }


# --- an intact ledger ---------------------------------------------------------------


def test_an_intact_ledger_verifies_with_its_head_hash(api: Api, db_url: str) -> None:
    a = life(api)
    rows = events(db_url)
    assert len(rows) > 20

    result = verify(a)

    assert result == {
        "ok": True,
        "events_checked": len(rows),
        "head": bytes(rows[-1][6]).hex(),
        "first_bad_position": None,
        "checkpoints_checked": 0,
        "first_bad_checkpoint": None,
        "detail": None,
    }
    # the stored hashes are the chain event_digest computes, from the genesis
    assert [bytes(row[6]) for row in rows] == expected_chain(rows)


def test_an_empty_ledger_verifies(api: Api) -> None:
    result = verify(Actors.of(api))
    assert result["ok"] is True
    assert result["events_checked"] == 0
    assert result["first_bad_position"] is None


def test_each_new_event_moves_the_head(api: Api, db_url: str) -> None:
    a = funded(api)
    before = verify(a)
    approved_grant(a)
    after = verify(a)
    rows = events(db_url)
    assert after["events_checked"] == len(rows) > before["events_checked"]
    assert after["head"] == bytes(rows[-1][6]).hex() != before["head"]
    assert after["ok"] is True


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_verify_leaves_no_cursor_open(ledger: Ledger) -> None:
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ledger.notary.verify().ok
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- a tampered ledger --------------------------------------------------------------


def _change_state(db_url: str) -> int:
    """Rewrite the reason inside the first grant's Proposed event (still valid JSON)."""
    at = position_of(db_url, "Grant.Proposed")
    tamper(
        db_url,
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'安家补贴', '安家补贴加倍'), 'UTF8') WHERE notification_id = %s",
        (at,),
    )
    return at


def _change_amount(db_url: str) -> int:
    """Turn the first payment's 10000 into 1000 in its stored state."""
    at = position_of(db_url, "Payment.Recorded")
    tamper(
        db_url,
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'10000', '1000'), 'UTF8') WHERE notification_id = %s",
        (at,),
    )
    return at


def _change_topic(db_url: str) -> int:
    """Relabel the first bank-reference claim (an aggregate nothing reads again), once
    the read models folded it: relabelled before, the projection stops at it."""
    at = position_of(db_url, "BankReference.Claimed")
    until(lambda: tracking(db_url)[0] >= at, "the read models did not fold the claim")
    tamper(
        db_url,
        "UPDATE ledger_events SET topic = topic || 'X' WHERE notification_id = %s",
        (at,),
    )
    return at


def _change_recorded_at(db_url: str) -> int:
    at = position_of(db_url, "Talent.Departed")
    tamper(
        db_url,
        "UPDATE ledger_events SET recorded_at = recorded_at - interval '1 microsecond' "
        "WHERE notification_id = %s",
        (at,),
    )
    return at


def _change_hash(db_url: str) -> int:
    at = position_of(db_url, "Grant.Approved")
    tamper(
        db_url,
        "UPDATE ledger_events SET hash = sha256(hash) WHERE notification_id = %s",
        (at,),
    )
    return at


def _rechain_one(db_url: str) -> int:
    """Change an event and store its correctly recomputed hash: the next one breaks."""
    at = position_of(db_url, "Payment.Recorded")
    rows = {row[0]: row for row in events(db_url)}
    prev = bytes(rows[at - 1][6])
    _, originator_id, version, topic, state, recorded_at, _ = rows[at]
    forged_state = bytes(state).replace(b"10000", b"90000")
    forged = event_digest(prev, at, originator_id, version, topic, forged_state, recorded_at)
    tamper(
        db_url,
        "UPDATE ledger_events SET state = %s, hash = %s WHERE notification_id = %s",
        (forged_state, forged, at),
    )
    return at + 1


TAMPERINGS = {
    "state-text": _change_state,
    "state-amount": _change_amount,
    "topic": _change_topic,
    "recorded_at": _change_recorded_at,
    "hash": _change_hash,
    "rechained-state": _rechain_one,
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_one_altered_event_is_reported_at_its_position_and_the_api_keeps_working(
    api: Api, db_url: str, how: str
) -> None:
    a = life(api)
    total = len(events(db_url))

    bad = TAMPERINGS[how](db_url)

    assert 1 < bad < total
    result = verify(a)
    assert result["ok"] is False
    assert result["first_bad_position"] == bad
    assert result["events_checked"] == bad - 1
    assert_api_still_works(a)
    # new events chain on, but the break stays where it is
    again = verify(a)
    assert again["ok"] is False
    assert again["first_bad_position"] == bad


def test_the_first_of_two_altered_events_is_reported(api: Api, db_url: str) -> None:
    a = life(api)
    later = _change_recorded_at(db_url)
    earlier = _change_state(db_url)
    assert earlier < later
    assert verify(a)["first_bad_position"] == earlier


def test_altering_the_first_event_is_reported_at_position_1(api: Api, db_url: str) -> None:
    a = life(api)
    tamper(
        db_url,
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'\"CNY\"', '\"USD\"'), 'UTF8') WHERE notification_id = 1",
    )
    result = verify(a)
    assert result["ok"] is False
    assert result["first_bad_position"] == 1
    assert result["events_checked"] == 0


@pytest.mark.parametrize("which", ["middle", "first"])
def test_a_deleted_event_is_reported_at_the_next_position(
    api: Api, db_url: str, which: str
) -> None:
    a = life(api)
    gone = position_of(db_url, "Payment.Returned") if which == "middle" else 1
    tamper(db_url, "DELETE FROM ledger_events WHERE notification_id = %s", (gone,))

    result = verify(a)

    assert result["ok"] is False
    assert result["first_bad_position"] == gone + 1
    assert result["events_checked"] == gone - 1


def test_the_table_refuses_changes_when_triggers_are_not_bypassed(api: Api, db_url: str) -> None:
    """The tampering above needs a superuser bypassing triggers; without, it is refused."""
    a = life(api)
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE ledger_events SET hash = sha256(hash) WHERE notification_id = 2")
    assert verify(a)["ok"] is True


# --- chained under concurrency ------------------------------------------------------


def test_events_appended_by_concurrent_writers_form_one_chain(
    db_url: str, test_settings: Settings
) -> None:
    apps = [open_ledger(db_url, test_settings) for _ in range(3)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            app = apps[i]
            with acting_as(f"admin-{i}", f"req-{i}"):
                app.execute(c.OpenFundYear(2100 + i, "CNY"))
                for n in range(15):
                    app.execute(
                        c.Appropriate(
                            2100 + i, f"AP{n}", "settling_in", "cash", Decimal(n + 1), "r"
                        )
                    )
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(apps))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        result = apps[0].notary.verify()
    finally:
        for app in apps:
            app.close()

    assert errors == []
    rows = events(db_url)
    assert [row[0] for row in rows] == list(range(1, 3 * 16 + 1))
    assert result.ok
    assert result.events_checked == len(rows)
    assert [bytes(row[6]) for row in rows] == expected_chain(rows)
    # recorded_at rises with the position, so "at or before T" is a prefix
    instants = [row[5] for row in rows]
    assert instants == sorted(instants)


def test_an_insert_of_its_own_waits_for_the_append_lock_before_taking_a_position(
    ledger: Ledger, db_url: str
) -> None:
    """An INSERT that did not take the append lock first (the ledger's own appends do)
    waits for it before any of its rows takes a position: the position it takes comes after
    those of the append holding the lock, and the chain follows the positions."""
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    row = events(db_url)[0]
    columns = "originator_id, originator_version, topic, state"
    insert = f"INSERT INTO ledger_events ({columns}) VALUES (%s, %s, %s, %s)"
    inserted: list[int] = []

    def insert_of_its_own() -> None:
        with psycopg.connect(db_url) as conn:
            taken = conn.execute(insert + " RETURNING notification_id", (uuid4(), 1, *row[3:5]))
            inserted.extend(position for (position,) in taken)

    with psycopg.connect(db_url) as holder, holder.transaction():
        holder.execute("SELECT ledger_lock_events()")
        other = threading.Thread(target=insert_of_its_own)
        other.start()
        other.join(0.5)
        assert other.is_alive(), "the insert did not wait for the append lock"
        holder.execute(insert, (uuid4(), 1, *row[3:5]))
    other.join(10)
    rows = events(db_url)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert inserted == [3]  # taken once the lock was let go: after the holder's
    assert [bytes(r[6]) for r in rows] == expected_chain(rows)


@pytest.mark.parametrize("level", [IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE])
def test_an_insert_in_a_transaction_of_one_snapshot_is_refused(
    ledger: Ledger, db_url: str, level: IsolationLevel
) -> None:
    """Its snapshot is taken before it waits for the append lock: the chain's trigger
    would link its event to whatever was last before the wait, not to the last event."""
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    row = events(db_url)[0]
    with psycopg.connect(db_url) as conn:
        conn.isolation_level = level
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="READ COMMITTED"):
            conn.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)",
                (uuid4(), 1, *row[3:5]),
            )
    assert len(events(db_url)) == 1


# --- the migration chains events recorded before it ---------------------------------


@pytest.fixture
def ledger_before_the_hash_chain(
    db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ledger]:
    """A ledger migrated without the hash chain's steps (the last writes its trigger
    again), as an old release left it."""
    chain = ("events-hash-chain", "events-hash-chain-digest-inline", "append-lock-own-table")
    steps = [step for step in MIGRATIONS if step[0] not in chain]
    assert len(steps) == len(MIGRATIONS) - 3
    with monkeypatch.context() as m:
        m.setattr(ledger.entrypoints.runtime, "MIGRATIONS", steps)
        app = open_ledger(db_url, test_settings)
    try:
        yield app
    finally:
        app.close()


def _old_life(app: Ledger) -> None:
    with acting_as("admin", "old-1"):
        app.execute(c.OpenFundYear(2023, "CNY"))
        app.execute(c.Appropriate(2023, "AP1", "settling_in", "cash", Decimal(50000), "旧"))
    with acting_as("clerk", "old-2"):
        app.execute(
            c.RegisterTalent(
                "T-old", "赵六", "doctorate", "某厂", date(2022, 1, 1), date(2030, 1, 1)
            )
        )
        app.execute(
            c.ProposeGrant("G-old", "T-old", 2023, "settling_in", Decimal(1000), "旧政", "旧")
        )
    with acting_as("approver", "old-3"):
        app.execute(c.ApproveGrant("G-old", None))


def test_the_migration_chains_events_recorded_before_it(
    ledger_before_the_hash_chain: Ledger, db_url: str, test_settings: Settings
) -> None:
    _old_life(ledger_before_the_hash_chain)
    with psycopg.connect(db_url) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'ledger_events'"
            )
        }
        old = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state, "
            "recorded_at FROM ledger_events ORDER BY notification_id"
        ).fetchall()
    assert "hash" not in columns  # really the old schema
    assert len(old) >= 6
    ledger_before_the_hash_chain.close()

    app = open_ledger(db_url, test_settings)  # the full migration, as on upgrade
    try:
        rows = events(db_url)
        assert [row[:6] for row in rows] == old  # nothing but the hash changed
        assert [bytes(row[6]) for row in rows] == expected_chain(rows)
        result = app.notary.verify()
        assert (result.ok, result.events_checked, result.first_bad_position) == (
            True,
            len(old),
            None,
        )
        assert result.head == bytes(rows[-1][6]).hex()

        # new events chain onto the migrated ones, and the projections see the hashes
        with acting_as("treasury", "new-1"):
            app.execute(c.RecordPayment("P-new", "G-old", Decimal(400), date(2023, 5, 1), "BR-new"))
        rows = events(db_url)
        assert len(rows) > len(old)
        assert [bytes(row[6]) for row in rows] == expected_chain(rows)
        assert app.notary.verify().ok
        ProjectionWorker(app).catch_up()
        with psycopg.connect(db_url) as conn:
            trail = conn.execute("SELECT position, hash FROM rm_audit_trail ORDER BY position")
            assert trail.fetchall() == [(row[0], bytes(row[6]).hex()) for row in rows]
    finally:
        app.close()


# --- event_digest is the SQL function -------------------------------------------------


SAMPLES = [
    pytest.param(
        GENESIS,
        7,
        UUID("bda8f174-5992-5de0-9c23-cf336f30274f"),
        1,
        "ledger.domain:FundYear.Opened",
        b'{"year":2024,"currency":"CNY"}',
        datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC),
        id="plain",
    ),
    pytest.param(
        hashlib.sha256(b"previous").digest(),
        123456789,
        uuid4(),
        42,
        "ledger.domain:Grant.Proposed",
        '{"reason":"安家补贴|第5条","x":"a\\u0000b"}'.encode(),
        datetime(2024, 12, 31, 23, 59, 59, 0, tzinfo=timezone(timedelta(hours=8))),
        id="chinese-pipe-whole-second-east-of-utc",
    ),
    pytest.param(
        bytes(range(32)),
        1,
        uuid4(),
        3,
        "a|b",
        bytes(range(256)),
        datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        id="binary-state-one-microsecond-west-of-utc",
    ),
]


@pytest.mark.parametrize(
    ("prev", "at", "originator_id", "version", "topic", "state", "recorded_at"), SAMPLES
)
@pytest.mark.parametrize("session_zone", ["UTC", "Asia/Shanghai"])
def test_event_digest_equals_the_sql_function(
    ledger: Ledger,
    db_url: str,
    prev: bytes,
    at: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    recorded_at: datetime,
    session_zone: str,
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET TIME ZONE '{session_zone}'")
        row = conn.execute(
            "SELECT ledger_event_digest(%s, ROW(%s, %s, %s, %s, %s, %s, NULL)::ledger_events)",
            (prev, originator_id, version, topic, state, at, recorded_at),
        ).fetchone()
    assert row is not None
    python = event_digest(prev, at, originator_id, version, topic, state, recorded_at)
    assert bytes(row[0]) == python
    assert len(python) == 32


@pytest.mark.parametrize("session_zone", ["UTC", "Asia/Shanghai"])
def test_the_trigger_chains_the_awkward_samples_as_event_digest_does(
    ledger: Ledger, db_url: str, session_zone: str
) -> None:
    """The trigger writes the digest out rather than call `ledger_event_digest` (for
    speed): it is held to the same bytes on the same awkward events."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET TIME ZONE '{session_zone}'")
        for _, _, originator_id, version, topic, state, recorded_at in (p.values for p in SAMPLES):
            conn.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state, "
                "recorded_at) VALUES (%s, %s, %s, %s, %s)",
                (originator_id, version, topic, state, recorded_at),
            )
    rows = events(db_url)
    assert [row[5] for row in rows] == [p.values[6] for p in SAMPLES]  # instants as given
    assert [bytes(row[6]) for row in rows] == expected_chain(rows)


def test_event_digest_equals_the_stored_hash_of_a_real_event(ledger: Ledger, db_url: str) -> None:
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
        ledger.execute(c.Appropriate(2024, "AP1", "housing", "in_kind", Decimal(1), "“引号”"))
    (first, second) = events(db_url)
    assert bytes(first[6]) == event_digest(GENESIS, *first[:3], first[3], bytes(first[4]), first[5])
    assert bytes(second[6]) == event_digest(
        bytes(first[6]), *second[:3], second[3], bytes(second[4]), second[5]
    )
    assert datetime.now(UTC) - second[5] < timedelta(minutes=5)
