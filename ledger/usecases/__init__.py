"""The use cases: one decision per command, each straight-line (load, decide, record),
run race-free by the engine (`ledger.engine`). `ledger.usecases.ledger.Ledger` is
the application every entry point opens."""
