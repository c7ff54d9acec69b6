"""Talent benefits ledger: the event-sourced domain and its application service."""
