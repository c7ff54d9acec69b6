"""What disbursement runs read of the read models: the grants a run may take, and the
sealed names and accounts its payment file opens."""

from __future__ import annotations

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import statements
from ledger.usecases.runs import PrepareRun


def candidates(datastore: PostgresDatastore, run: PrepareRun) -> list[str]:
    """The approved grants of the run's fund year and programme (every one, when it
    names none) with money neither paid nor held: the decision reads each from its
    events before taking it."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT grant_id FROM rm_grants WHERE status = 'approved'"
            " AND paid - returned + held < amount"
            " AND (%(year)s::int IS NULL OR year = %(year)s::int)"
            " AND (%(programme)s::text IS NULL OR programme = %(programme)s::text)",
            {"year": run.fund_year, "programme": run.programme},
        )
        return [row["grant_id"] for row in curs.fetchall()]


def sealed_creditors(
    datastore: PostgresDatastore, talent_ids: list[str]
) -> dict[str, tuple[str, str | None, bytes | None]]:
    """Each talent's sealed name and bank account, with its wrapped data key (None once
    destroyed)."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT t.talent_id, t.sealed_name, t.sealed_bank_account, k.wrapped"
            "  FROM rm_talents t LEFT JOIN talent_keys k ON k.talent_id = t.talent_id"
            " WHERE t.talent_id = ANY(%(ids)s)",
            {"ids": talent_ids},
        )
        return {
            row["talent_id"]: (row["sealed_name"], row["sealed_bank_account"], row["wrapped"])
            for row in curs.fetchall()
        }
