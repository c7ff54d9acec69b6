"""Demo data, apart from the service: `ledger serve --demo` records it into an empty
ledger. `plan` says what happens; this records it through the use cases."""

from __future__ import annotations

from ledger.demo.plan import plan_demo
from ledger.domain.context import acting_as
from ledger.usecases.ledger import Ledger


def load_demo(ledger: Ledger) -> None:
    """Record the demo into an empty ledger, one use case (one transaction) per step,
    each as the person the plan names: so approvals pass maker-checker."""
    for number, (actor, command) in enumerate(plan_demo(), start=1):
        with acting_as(actor, f"demo-{number:05d}"):
            ledger.execute(command)
