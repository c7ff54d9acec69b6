"""The domain: aggregates with their events and rules, money, dates and refusals.

It knows nothing of HTTP, SQL or how a decision is made race-free. Importing it
registers the topics its events were first stored under (`moved_topics`).
"""

from ledger.domain import moved_topics

__all__ = ["moved_topics"]
