"""A migration: the topics events were stored under before the domain was split into
modules. The first edition kept every aggregate in one module, `ledger.domain`, so
its events name classes such as `ledger.domain:Grant.Proposed`; stored events never
change, so those names resolve to the classes' new homes here."""

from __future__ import annotations

from eventsourcing.utils import register_topic

from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.payments import BankReference, Payment
from ledger.domain.reconciliation import Reconciliation
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver

FIRST_EDITION_MODULE = "ledger.domain"
MOVED = (FundYear, Talent, Grant, Payment, BankReference, RentWaiver, Clawback, Reconciliation)

for _aggregate in MOVED:
    # an event class's topic is its aggregate's plus `.Name`, which resolves from this
    register_topic(f"{FIRST_EDITION_MODULE}:{_aggregate.__name__}", _aggregate)
