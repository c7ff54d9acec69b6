"""The HTTP face of the ledger (docs/api.md)."""
