"""The decision engine: runs use cases race-free, across threads and processes.

A use case decides on this process's copies of the aggregates it reads; then, holding
the store's append lock, every version it read is checked, and what changed meanwhile
is read there and the use case decides again before its events are appended. The
store is reached through `ledger.engine.store`, implemented on PostgreSQL and in
memory (`ledger.adapters`).
"""
