"""The HTTP face of the ledger (CONTRACT §2-§5)."""
