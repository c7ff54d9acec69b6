"""Bank statements as SWIFT MT940, read strictly or refused whole, naming the line.

Hand-written rather than the `mt-940` package (docs/api.md, "Bank statements and
reconciliation", says why): that package silently drops a `:61:` line it cannot
read, keeps lines it does not know, and does without `:62F:`, where a refused file
must name its line.

One statement a file: `:20:`, `:21:` (optional), `:25:`, `:28C:`, `:60F:`, then each
`:61:` line with its `:86:` details (optional, over as many lines as the bank
writes), `:62F:`, and optionally `:64:`, `:65:` and a last `:86:`. A SWIFT envelope
(`{1:...}{2:...}{4:` before, `-}` after) may wrap it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ledger.adapters.statement_csv import (
    check_reference,
    decoded,
    statement_balance,
    statement_money,
)
from ledger.domain.errors import StatementRejected
from ledger.domain.reconciliation import Balance, Statement, StatementLine, balanced

CURRENCY = "CNY"  # the ledger's: a statement in another currency cannot match it
NO_REFERENCE = "NONREF"
#: `:61:` marks: a reversal of a credit takes money out, of a debit puts it back
MARKS = {"D": "debit", "C": "credit", "RC": "debit", "RD": "credit"}
_TAG_RE = re.compile(r":([0-9]{2}[A-Z]?):(.*)", re.ASCII)
_ENVELOPE_RE = re.compile(r"(\{[1-3]:[^{}]*\})+\{4:", re.ASCII)
_CLOSING_RE = re.compile(r"-\}(\{5:.*\})?", re.ASCII)
_AMOUNT = r"[0-9]{1,12},[0-9]{0,2}"
_BALANCE_RE = re.compile(rf"([CD])([0-9]{{6}})([A-Z]{{3}})({_AMOUNT})", re.ASCII)
_LINE_RE = re.compile(
    rf"(?P<value_date>[0-9]{{6}})(?P<entry_date>[0-9]{{4}})?(?P<mark>RC|RD|C|D)[A-Z]?"
    rf"(?P<amount>{_AMOUNT})[NSF][A-Z0-9]{{3}}"
    r"(?P<owner>(?:(?!//).){1,16}?)(?://(?P<bank>.{1,16}))?",
    re.ASCII,
)
_BIC_RE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?", re.ASCII)
_LINE_LAYOUT = (
    ":61: is not: value date (YYMMDD), entry date (MMDD, optional), C, D, RC or RD, "
    "amount (1234,56), type (NTRF...), reference (16 characters at most) [//bank reference]"
)
_NAME_RE = re.compile(r"/NAME/(.*?)(?:/[A-Z]{2,4}/|$)")
_QUESTION_NAME_RE = re.compile(r"\?3[23]([^?]*)")


@dataclass
class _Field:
    tag: str
    line: int  # where its tag is
    lines: list[str]  # its value, line by line


def parse_mt940(data: bytes) -> Statement:
    """Parse an MT940 statement of one account, or refuse it whole."""
    fields = _Fields(_fields(decoded(data)))
    fields.take("20", r".{1,16}")
    fields.optional("21", r".{1,16}")
    account = _account(fields.take("25", r".{1,35}").lines[0].strip())
    if fields.next_tag() == "28":
        fields.take("28", r"[0-9]{1,5}(/[0-9]{1,5})?")
    else:
        fields.take("28C", r"[0-9]{1,5}(/[0-9]{1,5})?")
    opening = _balance(fields.take("60F", _BALANCE_RE.pattern))
    lines = []
    while fields.next_tag() == "61":
        line = fields.take("61", r".*")
        details = fields.optional("86", r".*")
        lines.append(_line(line, _counterparty(details.lines) if details else ""))
    closing_field = fields.take("62F", _BALANCE_RE.pattern)
    closing = _balance(closing_field)
    if fields.next_tag() == "64":
        _balance(fields.take("64", _BALANCE_RE.pattern))
    while fields.next_tag() == "65":
        _balance(fields.take("65", _BALANCE_RE.pattern))
    fields.optional("86", r".*")
    fields.end()
    if not lines:
        raise StatementRejected(closing_field.line, ":61:", "the statement has no :61: lines")
    statement = Statement(hashlib.sha256(data).hexdigest(), tuple(lines), account, opening, closing)
    return balanced(statement, closing_field.line, ":62F:")


def _fields(text: str) -> list[_Field]:
    """The file's fields, each a tag and its lines (a line not starting with a tag
    carries on the field before it); blank lines and the envelope are left out."""
    fields: list[_Field] = []
    numbered = [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1)]
    numbered = [(n, line) for n, line in numbered if line.strip()]
    if numbered and _ENVELOPE_RE.fullmatch(numbered[0][1]):
        if not _CLOSING_RE.fullmatch(numbered[-1][1]):
            raise StatementRejected(numbered[-1][0], "envelope", "the envelope is not closed (-})")
        numbered = numbered[1:-1]
    elif numbered and numbered[-1][1] == "-":  # the end of the message's text
        numbered = numbered[:-1]
    for n, line in numbered:
        tag = _TAG_RE.match(line)
        if tag:
            fields.append(_Field(tag[1], n, [tag[2]]))
        elif fields:
            fields[-1].lines.append(line)
        else:
            raise StatementRejected(n, ":20:", "an MT940 statement starts with :20:")
    if not fields:
        raise StatementRejected(1, ":20:", "the file holds no MT940 statement")
    return fields


class _Fields:
    """The fields in order, taken one by one as the statement's layout expects them."""

    def __init__(self, fields: list[_Field]) -> None:
        self.fields = fields
        self.at = 0

    def next_tag(self) -> str | None:
        return self.fields[self.at].tag if self.at < len(self.fields) else None

    def take(self, tag: str, pattern: str) -> _Field:
        """The next field, which must be `tag`, its first line matching `pattern`."""
        if self.next_tag() != tag:
            where = self.fields[self.at].line if self.at < len(self.fields) else self.last_line()
            found = f":{self.next_tag()}:" if self.next_tag() else "the end of the file"
            raise StatementRejected(where, f":{tag}:", f"expected :{tag}:, found {found}")
        field = self.fields[self.at]
        self.at += 1
        if not re.fullmatch(pattern, field.lines[0].strip(), re.ASCII):
            raise StatementRejected(field.line, f":{tag}:", f":{tag}: is malformed")
        if tag not in ("61", "86") and len(field.lines) > 1:
            raise StatementRejected(field.line + 1, f":{tag}:", f":{tag}: is one line")
        return field

    def optional(self, tag: str, pattern: str) -> _Field | None:
        return self.take(tag, pattern) if self.next_tag() == tag else None

    def end(self) -> None:
        if self.at < len(self.fields):
            field = self.fields[self.at]
            detail = (
                "one statement a file: a second :20: begins here"
                if field.tag == "20"
                else f":{field.tag}: is not expected here"
            )
            raise StatementRejected(field.line, f":{field.tag}:", detail)

    def last_line(self) -> int:
        return self.fields[-1].line + len(self.fields[-1].lines) - 1


def _account(identification: str) -> str:
    """The account of `:25:`, without the bank's BIC some banks write before it
    (`PCBCCNBJ/31050161373600001234`): the same account as its camt.053 names."""
    bic, slash, account = identification.partition("/")
    return account if slash and _BIC_RE.fullmatch(bic) and account else identification


def _is_day(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _date(line: int, tag: str, yymmdd: str) -> date:
    year, month, day = 2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    if not _is_day(year, month, day):
        raise StatementRejected(line, tag, f"{yymmdd} is not a date (YYMMDD)")
    return date(year, month, day)


def _amount(text: str) -> str:
    """SWIFT's `1234,5` in the API's wire form, `1234.5`."""
    whole, _, fraction = text.partition(",")
    return f"{whole}.{fraction}" if fraction else whole


def _balance(field: _Field) -> Balance:
    tag = f":{field.tag}:"
    found = _BALANCE_RE.fullmatch(field.lines[0].strip())
    assert found is not None  # `take` matched it
    mark, day, currency, amount = found.groups()
    if currency != CURRENCY:
        raise StatementRejected(field.line, tag, f"the ledger keeps {CURRENCY}, not {currency}")
    signed = statement_balance(field.line, tag, _amount(amount), debit=mark == "D")
    return Balance(signed, _date(field.line, tag, day))


def _line(field: _Field, counterparty: str) -> StatementLine:
    """A `:61:` statement line: its first line, and at most one of supplementary
    details (not read)."""
    found = _LINE_RE.fullmatch(field.lines[0].strip())
    if found is None:
        raise StatementRejected(field.line, ":61:", _LINE_LAYOUT)
    if len(field.lines) > 2:
        raise StatementRejected(field.line + 2, ":61:", ":61: is at most two lines")
    value_date = _date(field.line, ":61:", found["value_date"])
    entry_date = found["entry_date"]
    if entry_date and not _is_day(2000, int(entry_date[:2]), int(entry_date[2:])):  # any year
        raise StatementRejected(field.line, ":61:", f"the entry date {entry_date} is not MMDD")
    amount: Decimal = statement_money(field.line, ":61:", _amount(found["amount"]))
    owner, bank = found["owner"].strip(), found["bank"]
    reference = bank.strip() if owner == NO_REFERENCE and bank else owner
    if reference == NO_REFERENCE:
        raise StatementRejected(field.line, ":61:", "the line has no reference (NONREF, no //)")
    check_reference(field.line, ":61:", reference)
    return StatementLine(
        field.line, value_date, reference, amount, MARKS[found["mark"]], counterparty
    )


def _counterparty(lines: list[str]) -> str:
    """From the `:86:` details: a structured name (`/NAME/...`, or `?32` and `?33` in
    the German layout), else the whole text. SWIFT breaks the details into lines of
    65 characters, so the lines are joined as they were before the breaks."""
    text = "".join(lines)
    named = _NAME_RE.search(text)
    if named:
        return named[1].strip()
    parts = _QUESTION_NAME_RE.findall(text)
    return "".join(parts).strip() if parts else text.strip()
