"""`LEDGER_DATABASE_URL` reaches PostgreSQL whole (CONTRACT §15): the parameters
eventsourcing's own settings have no name for (`options`, `application_name`, `sslmode`,
keepalives, `target_session_attrs`) are on every connection of the ledger's pool."""

from __future__ import annotations

from ledger.adapters.postgres import datastore_of, statements
from ledger.entrypoints.runtime import Settings, open_ledger


def test_every_parameter_of_the_url_is_on_the_ledgers_connections(
    db_url: str, test_settings: Settings
) -> None:
    extra = {
        "application_name": "ledger-passthrough",
        "options": "-c statement_timeout=4321",
        "sslmode": "disable",
        "keepalives": "1",
        "keepalives_idle": "30",
        "target_session_attrs": "read-write",
    }
    url = f"{db_url} " + " ".join(f"{k}='{v}'" for k, v in extra.items())
    ledger = open_ledger(url, test_settings)
    try:
        datastore = datastore_of(ledger)
        with statements(datastore) as curs:
            row = curs.execute(
                "SELECT current_setting('statement_timeout') AS timeout, "
                "current_setting('application_name') AS name"
            ).fetchone()
            parameters = curs.connection.info.get_parameters()
        assert row == {"timeout": "4321ms", "name": "ledger-passthrough"}
        assert parameters["sslmode"] == "disable"
        assert parameters["keepalives_idle"] == "30"
        assert parameters["target_session_attrs"] == "read-write"
    finally:
        ledger.close()
