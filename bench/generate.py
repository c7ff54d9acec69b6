"""A large, valid history, made by the domain's own aggregates and appended in bulk.

Going through the HTTP API would take hours for a million events; the aggregates
still enforce every rule, and COPY into the event table still runs the hash-chain
trigger, so the stored history is what the service itself would have written.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

from psycopg import sql

from ledger.adapters.postgres import EVENTS_TABLE, SNAPSHOTS_TABLE, datastore_of
from ledger.domain.base import LedgerAggregate
from ledger.domain.budget import Appropriation, FundYear, LineKind
from ledger.domain.context import acting_as
from ledger.domain.grants import Grant
from ledger.domain.payments import BankReference
from ledger.domain.talents import Talent
from ledger.usecases.ledger import Ledger
from ledger.usecases.personal import DataKey

YEARS = range(2019, 2029)
CASH_LINES = ("settling_in", "rent_subsidy", "project_support")
CHUNK = 20_000
KEY_CHUNK = 1_000  # talents whose data keys are made in one transaction


def _talent_events(
    key: DataKey, rng: random.Random, index: int, fund_years: dict[int, FundYear]
) -> Iterator[LedgerAggregate]:
    """One talent's life: registration, a few grants, approvals and instalments."""
    year = rng.choice(YEARS)
    arrived = date(year, 1, 1) + timedelta(days=rng.randrange(300))
    with acting_as("bench-clerk", f"bench-{index}"):
        talent = Talent(
            key.talent_id,
            key.seal(f"人才{index}"),
            "master",
            "某单位",
            arrived,
            arrived + timedelta(days=5 * 365),
            "-",
        )
    yield talent
    for g in range(rng.randint(2, 5)):
        programme = rng.choice(CASH_LINES)
        amount = Decimal(rng.randrange(1_000, 50_000)).quantize(Decimal("0.01"))
        grant_id = f"G{index:07d}-{g}"
        with acting_as("bench-clerk", f"bench-{index}-{g}"):
            grant = Grant(grant_id, talent.talent_id, year, programme, amount, "政策", "bench", "-")
            fund_years[year].reserve(grant)
        with acting_as("bench-approver", f"bench-{index}-{g}-a"):
            grant.approve(None, date(year, 3, 1))
        instalments = rng.randint(1, 3)
        for p in range(instalments):
            payment_id = f"P{index:07d}-{g}-{p}"
            part = (amount / instalments).quantize(Decimal("0.01"))
            if p == instalments - 1:
                part = amount - grant.paid
            with acting_as("bench-treasury", f"bench-{payment_id}"):
                reference = BankReference.claim(None, f"BR{payment_id}", payment_id=payment_id)
                payment = grant.pay(
                    payment_id, part, date(year, 12, 1), reference.bank_reference, "-"
                )
            yield reference
            yield payment
        yield grant


def generate(app: Ledger, target_events: int, seed: int = 7) -> int:
    """Append about `target_events` events; returns how many were appended."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    fund_years: dict[int, FundYear] = {}
    with acting_as("bench-admin", "bench-setup"):
        for year in YEARS:
            fund_years[year] = FundYear(year, "CNY", "-")
            for programme in CASH_LINES:
                fund_years[year].appropriate(
                    Appropriation(
                        f"A{year}{programme}",
                        programme,
                        LineKind.CASH,
                        Decimal("999999999999.00"),
                        "bench",
                        "-",
                    )
                )
    written = 0
    pending: list[LedgerAggregate] = []
    pending_events = 0
    index = 0
    while written + pending_events < target_events:
        if index % KEY_CHUNK == 0:
            keys = app.vault.keys_for_new(f"T{i:07d}" for i in range(index, index + KEY_CHUNK))
        life = list(_talent_events(keys[f"T{index:07d}"], rng, index, fund_years))
        pending += life
        pending_events += sum(len(a.pending_events) for a in life)
        index += 1
        if pending_events >= CHUNK:
            written += _append(app, [*fund_years.values(), *pending])
            pending, pending_events = [], 0
    return written + _append(app, [*fund_years.values(), *pending])


def long_fund_year(app: Ledger, year: int, grants: int, talent_id: str) -> int:
    """A fund year that has taken `grants` grants (an event each on the fund year's own
    stream) for one talent, registered first; returns how many events were appended."""
    with acting_as("bench-admin", "bench-long-year"):
        fund_year = FundYear(year, "CNY", "-")
        fund_year.appropriate(
            Appropriation(
                f"A{year}", "settling_in", LineKind.CASH, Decimal("999999999999.00"), "bench", "-"
            )
        )
    (key,) = app.vault.keys_for_new([talent_id]).values()
    with acting_as("bench-clerk", "bench-long-year"):
        arrived = date(year, 1, 1)
        talent = Talent(
            talent_id, key.seal("压测"), "master", "bench", arrived, date(year + 5, 1, 1), "-"
        )
    written = _append(app, [fund_year, talent])
    pending: list[LedgerAggregate] = []
    for n in range(grants):
        with acting_as("bench-clerk", f"bench-long-{n}"):
            grant = Grant(
                f"L{year}-{n:07d}", talent_id, year, "settling_in", Decimal(1), "政策", "bench", "-"
            )
            fund_year.reserve(grant)
        pending.append(grant)
        if len(pending) >= CHUNK // 2:
            written += _append(app, [fund_year, *pending])
            pending = []
    return written + _append(app, [fund_year, *pending])


def _append(app: Ledger, aggregates: list[LedgerAggregate]) -> int:
    """Append the aggregates' new events, with the snapshots the engine would take."""
    events = [e for a in aggregates for e in a.collect_events()]
    stored = [app.mapper.to_stored_event(e) for e in events]
    with datastore_of(app).transaction(commit=True) as curs:  # the COPY takes the lock
        for table, rows in (
            (EVENTS_TABLE, stored),
            (SNAPSHOTS_TABLE, app.snapshots_due(aggregates, events)),
        ):
            with curs.copy(
                sql.SQL(
                    "COPY {} (originator_id, originator_version, topic, state) FROM STDIN"
                ).format(sql.Identifier(table))
            ) as copy:
                for s in rows:
                    copy.write_row((s.originator_id, s.originator_version, s.topic, s.state))
    return len(stored)
