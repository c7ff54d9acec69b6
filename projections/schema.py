"""Read-model tables. Each balance has its current row and one version row per event
that changed it, so an as-of read is one index probe per line or talent balance."""

from __future__ import annotations

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import migrate

LINE_AMOUNTS = (
    "appropriated",
    "committed",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)
TALENT_AMOUNTS = (
    "granted",
    "approved",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)

# Tables a rebuild empties, in an order that is safe to truncate together.
READ_MODEL_TABLES = (
    "rm_streams",
    "rm_fund_years",
    "rm_lines",
    "rm_line_versions",
    "rm_talents",
    "rm_talent_balances",
    "rm_talent_balance_versions",
    "rm_audit_trail",
    "rm_journal",
    "rm_accounts",
    "rm_grants",
    "rm_payments",
    "rm_clawbacks",
    "rm_recoveries",
    "rm_reconciliation_lines",
)


def _amounts(names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} numeric(20,2) NOT NULL" for name in names)


_LINE = _amounts(LINE_AMOUNTS)
_TALENT = _amounts(TALENT_AMOUNTS)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "read-models",
        # DDL built from constants only (no values), hence the noqa on its last line
        f"""
        CREATE TABLE projection_tracking (
            name text PRIMARY KEY, position bigint NOT NULL, generation int NOT NULL);
        INSERT INTO projection_tracking VALUES ('ledger', 0, 0);

        -- every aggregate: what its later events need to know (where it is charged)
        CREATE TABLE rm_streams (
            id uuid PRIMARY KEY, kind text NOT NULL, key text NOT NULL,
            talent_id text, year int, programme text, amount numeric(20,2));

        CREATE TABLE rm_fund_years (
            year int PRIMARY KEY, currency text NOT NULL,
            opened_position bigint NOT NULL, closed_position bigint);
        CREATE TABLE rm_lines (
            year int NOT NULL, programme text NOT NULL, kind text NOT NULL, {_LINE},
            PRIMARY KEY (year, programme));
        CREATE TABLE rm_line_versions (
            year int NOT NULL, programme text NOT NULL, position bigint NOT NULL,
            kind text NOT NULL, {_LINE},
            PRIMARY KEY (year, programme, position));

        CREATE TABLE rm_talents (
            talent_id text PRIMARY KEY, sealed_name text NOT NULL, category text NOT NULL,
            employer text NOT NULL, arrived_on date NOT NULL,
            service_commitment_until date NOT NULL, registered_position bigint NOT NULL,
            departed_on date, departure_reason text, departed_position bigint);
        CREATE TABLE rm_talent_balances (
            talent_id text NOT NULL, year int NOT NULL, programme text NOT NULL, {_TALENT},
            PRIMARY KEY (talent_id, year, programme));
        CREATE TABLE rm_talent_balance_versions (
            talent_id text NOT NULL, year int NOT NULL, programme text NOT NULL,
            position bigint NOT NULL, {_TALENT},
            PRIMARY KEY (talent_id, year, programme, position));

        CREATE TABLE rm_audit_trail (
            position bigint PRIMARY KEY, recorded_at timestamptz NOT NULL,
            event_type text NOT NULL, talent_id text, grant_id text, payment_id text,
            waiver_id text, clawback_id text, recovery_id text, bank_reference text,
            fund_year int, programme text, amount numeric(20,2), actor text NOT NULL,
            reason text, reference text, request_id text NOT NULL, hash text NOT NULL);
        CREATE INDEX rm_audit_trail_talent ON rm_audit_trail (talent_id, position);
        CREATE INDEX rm_audit_trail_fund_year ON rm_audit_trail (fund_year, position);

        CREATE TABLE rm_journal (
            position bigint NOT NULL, seq int NOT NULL, year int NOT NULL,
            programme text NOT NULL, account text NOT NULL,
            debit numeric(20,2) NOT NULL, credit numeric(20,2) NOT NULL,
            PRIMARY KEY (position, seq));
        CREATE TABLE rm_accounts (
            year int NOT NULL, account text NOT NULL, programme text NOT NULL,
            debit numeric(20,2) NOT NULL, credit numeric(20,2) NOT NULL,
            PRIMARY KEY (year, account, programme));
        """,  # noqa: S608
    ),
    (
        # What treasury reconciles and the exceptions report judges.
        "read-models-treasury",
        """
        CREATE TABLE rm_grants (
            grant_id text PRIMARY KEY, talent_id text NOT NULL, year int NOT NULL,
            programme text NOT NULL, amount numeric(20,2) NOT NULL, status text NOT NULL,
            approved_at timestamptz, paid numeric(20,2) NOT NULL,
            returned numeric(20,2) NOT NULL, clawed_back numeric(20,2) NOT NULL);
        CREATE INDEX rm_grants_year ON rm_grants (year);
        CREATE TABLE rm_payments (
            payment_id text PRIMARY KEY, grant_id text NOT NULL, talent_id text NOT NULL,
            year int NOT NULL, programme text NOT NULL, amount numeric(20,2) NOT NULL,
            value_date date NOT NULL, bank_reference text NOT NULL, returned_on date);
        CREATE INDEX rm_payments_reference ON rm_payments (bank_reference);
        CREATE INDEX rm_payments_value_date ON rm_payments (value_date);
        CREATE INDEX rm_payments_year ON rm_payments (year);
        CREATE TABLE rm_clawbacks (
            clawback_id text PRIMARY KEY, grant_id text NOT NULL, talent_id text NOT NULL,
            year int NOT NULL, programme text NOT NULL, amount numeric(20,2) NOT NULL,
            recovered numeric(20,2) NOT NULL, assessed_at timestamptz NOT NULL);
        CREATE TABLE rm_recoveries (
            clawback_id text NOT NULL, recovery_id text NOT NULL,
            amount numeric(20,2) NOT NULL, value_date date NOT NULL,
            bank_reference text NOT NULL, PRIMARY KEY (clawback_id, recovery_id));
        CREATE INDEX rm_recoveries_reference ON rm_recoveries (bank_reference);
        CREATE TABLE rm_reconciliation_lines (
            reconciliation_id text NOT NULL, seq int NOT NULL, bucket text NOT NULL,
            bank_reference text NOT NULL, amount numeric(20,2) NOT NULL,
            value_date date NOT NULL, PRIMARY KEY (reconciliation_id, seq));
        """,
    ),
]


def ensure_schema(datastore: PostgresDatastore) -> None:
    """Create or upgrade the read models' tables; safe when several processes start."""
    migrate(datastore, MIGRATIONS)
