"""Domain refusals, each with the stable code of docs/api.md, "Conventions" (and `NotReached`, the
one error of a read: nothing is recorded by either)."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """A refusal: nothing was recorded."""

    code = "invalid_state"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole, whatever the subclass's constructor takes (an exception is
        rebuilt from its `args` alone): a refusal crosses from the process that decided
        to the one that answers."""
        return _restored, (type(self), self.args, self.__dict__)


def _restored(cls: type[LedgerError], args: tuple[Any, ...], state: dict[str, Any]) -> LedgerError:
    error = cls.__new__(cls, *args)
    error.__dict__.update(state)
    return error


class NotFound(LedgerError):
    code = "not_found"


class InvalidState(LedgerError):
    code = "invalid_state"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class BudgetExceeded(LedgerError):
    code = "budget_exceeded"


class Overpayment(LedgerError):
    code = "overpayment"


class SelfApproval(LedgerError):
    code = "self_approval"


class DuplicateBankReference(LedgerError):
    code = "duplicate_bank_reference"


class FundYearClosed(LedgerError):
    code = "fund_year_closed"


class ClawbackExceedsPaid(LedgerError):
    code = "clawback_exceeds_paid"


class TalentDeparted(LedgerError):
    code = "talent_departed"


class SeparationOfDuties(LedgerError):
    """Duties that must be kept apart (财会 [2012] 21 号): approving a payment's grant and
    paying it; approver and treasury in one key."""

    code = "separation_of_duties"


class NameTaken(LedgerError):
    code = "name_taken"


class NotReached(LedgerError):
    """The read models did not reach the position a read asked for within the wait."""

    code = "unavailable"

    def __init__(self, position: int) -> None:
        super().__init__(f"the read models have not reached position {position} yet")


class TooManyWaiting(LedgerError):
    """As many reads of this process wait for a position as it lets wait: retry."""

    code = "unavailable"


class ValidationFailed(LedgerError):
    """A field is well formed but not acceptable here (out of year, wrong line kind...)."""

    code = "validation_error"

    def __init__(self, field: str, detail: str, where: str = "body") -> None:
        super().__init__(detail)
        self.field = field
        self.where = where  # "body", or "query" for a query parameter


class StatementRejected(LedgerError):
    """A bank statement we cannot read, refused whole. A text file names its `line`
    (1-based: a CSV's header is line 1) and the `field`; an XML file has no line to
    name (None) and names the element by its path in `field` (`Stmt/Ntry[3]/Amt`)."""

    code = "validation_error"

    def __init__(self, line: int | None, field: str, detail: str) -> None:
        super().__init__(f"line {line}: {detail}" if line is not None else f"{field}: {detail}")
        self.line = line
        self.field = field


class StatementUnbalanced(StatementRejected):
    """A statement whose opening balance plus its lines is not its closing balance: a
    line is missing, or one too many (CONTRACT §6, second edition)."""

    code = "statement_unbalanced"
