"""Bank statements as ISO 20022 camt.053.001.08 (BankToCustomerStatementV08), read
strictly or refused whole, naming the element by its path (`Stmt/Ntry[3]/Amt`).

The XML is parsed by defusedxml with every defence on: a document type declaration
of any kind is refused, so no entity can be expanded (billion laughs) and nothing is
fetched from outside (XXE). Only what reconciliation needs is read, and each of those
elements is checked: one statement (`Stmt`) per file, its account, its opening
(`OPBD`) and closing (`CLBD`) booked balances, and its booked entries (`Ntry`).

An entry that batches several transactions (several `TxDtls`) becomes a line per
transaction, each with its own amount, since each is a payment of its own in the
ledger; their amounts must add up to the entry's. Entries not booked yet (`Sts`
`PDNG`, `INFO`, `FUTR`) are not lines: they are not in the booked balances either.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from datetime import date
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.parsers.expat import errors as expat_errors

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ledger.adapters.statement_csv import check_reference, statement_balance, statement_money
from ledger.domain.errors import StatementRejected
from ledger.domain.money import ZERO, format_money
from ledger.domain.reconciliation import Balance, Statement, StatementLine, balanced

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
CURRENCY = "CNY"  # the ledger's: a statement in another currency cannot match it
BOOKED = "BOOK"
NOT_BOOKED = ("PDNG", "INFO", "FUTR")
NOT_PROVIDED = "NOTPROVIDED"  # what banks write where an EndToEndId was not given
DIRECTIONS = {"DBIT": "debit", "CRDT": "credit"}
_NS = "{" + NAMESPACE + "}"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_ENCODING_RE = re.compile(rb"\A<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def _refused(path: str, detail: str) -> StatementRejected:
    return StatementRejected(None, path, detail)


class _Node:
    """An element with its path from the statement, to name it in a refusal."""

    __slots__ = ("element", "path")

    def __init__(self, element: Element, path: str) -> None:
        self.element = element
        self.path = path

    def _child(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def many(self, name: str) -> list[_Node]:
        """Every child `name`, numbered from 1 in its path (`Ntry[3]`)."""
        found = self.element.findall(_NS + name)
        return [_Node(e, f"{self._child(name)}[{n}]") for n, e in enumerate(found, 1)]

    def optional(self, name: str) -> _Node | None:
        found = self.element.findall(_NS + name)
        if len(found) > 1:
            raise _refused(self._child(name), "is given more than once")
        return _Node(found[0], self._child(name)) if found else None

    def one(self, name: str) -> _Node:
        found = self.optional(name)
        if found is None:
            raise _refused(self._child(name), "is missing")
        return found

    def text(self) -> str:
        if len(self.element):
            raise _refused(self.path, "must hold a value, not elements")
        return (self.element.text or "").strip()


def parse_camt053(data: bytes) -> Statement:
    """Parse a camt.053.001.08 statement of one account, or refuse it whole."""
    document = _document(data)
    statements = _Node(document.one("BkToCstmrStmt").element, "").many("Stmt")
    if len(statements) != 1:
        raise _refused("Stmt", f"a file holds one statement, this one {len(statements)}")
    stmt = _Node(statements[0].element, "Stmt")
    account = _account(stmt)
    (opening, _), (closing, closing_path) = _balances(stmt)
    lines: list[StatementLine] = []
    for entry in stmt.many("Ntry"):
        lines += _entry_lines(entry, len(lines))
    if not lines:
        raise _refused("Stmt/Ntry", "the statement has no booked entries")
    statement = Statement(hashlib.sha256(data).hexdigest(), tuple(lines), account, opening, closing)
    return balanced(statement, None, closing_path)


def _document(data: bytes) -> _Node:
    """The root `Document`, of camt.053.001.08's namespace: UTF-8, well formed, and
    declaring no DTD or entity."""
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body[: e.start].count(b"\n") + 1
        raise StatementRejected(line, "encoding", "an ISO 20022 message is UTF-8") from None
    declared = _ENCODING_RE.match(body)
    if declared and declared[1].lower() not in (b"utf-8", b"utf8"):
        raise StatementRejected(1, "encoding", "an ISO 20022 message is UTF-8")
    try:
        root: Any = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise _refused(
            "DOCTYPE", "a statement may declare no DTD and no entities (nor fetch any)"
        ) from None
    except ParseError as e:
        line, column = e.position
        why = expat_errors.messages.get(e.code, "malformed")
        raise StatementRejected(line, "xml", f"not XML: {why} (column {column})") from None
    if root.tag != _NS + "Document":
        namespace, _, name = root.tag[1:].rpartition("}") if "}" in root.tag else ("", "", root.tag)
        raise _refused(
            "Document",
            f"the root must be Document in the namespace {NAMESPACE}, not {name} in "
            + (namespace or "no namespace"),
        )
    return _Node(root, "Document")


def _account(stmt: _Node) -> str:
    """The statement's account, by its IBAN or another identification (`Othr/Id`)."""
    account = stmt.one("Acct")
    identification = account.one("Id")
    iban, other = identification.optional("IBAN"), identification.optional("Othr")
    found = iban or (other.one("Id") if other else None)
    if found is None:
        raise _refused(identification.path, "names the account by IBAN or Othr/Id")
    if not found.text():
        raise _refused(found.path, "is blank")
    currency = account.optional("Ccy")
    if currency is not None and currency.text() != CURRENCY:
        raise _refused(currency.path, f"the ledger keeps {CURRENCY}, not {currency.text()}")
    return found.text()


def _balances(stmt: _Node) -> tuple[tuple[Balance, str], tuple[Balance, str]]:
    """The opening (`OPBD`) and closing (`CLBD`) booked balances, each with its path;
    the statement's other balances (interim, available...) are not read."""
    found: dict[str, tuple[Balance, str]] = {}
    for balance in stmt.many("Bal"):
        code = balance.one("Tp").one("CdOrPrtry").optional("Cd")
        kind = code.text() if code else None
        if kind not in ("OPBD", "CLBD"):
            continue
        if kind in found:
            raise _refused(balance.path, f"a second {kind} balance")
        debit = _direction(balance.one("CdtDbtInd")) == "debit"
        amount = _currency(balance.one("Amt"))
        signed = statement_balance(None, amount.path, amount.text(), debit=debit)
        found[kind] = (Balance(signed, _date(balance.one("Dt").one("Dt"))), balance.path)
    for kind, what in (("OPBD", "opening"), ("CLBD", "closing")):
        if kind not in found:
            raise _refused("Stmt/Bal", f"the statement states no {what} booked balance ({kind})")
    return found["OPBD"], found["CLBD"]


def _entry_lines(entry: _Node, before: int) -> list[StatementLine]:
    """An entry's lines (none if it is not booked), numbered on from `before`."""
    status = entry.one("Sts").optional("Cd")
    if status is not None and status.text() in NOT_BOOKED:
        return []
    if status is None or status.text() != BOOKED:
        raise _refused(
            f"{entry.path}/Sts/Cd", f"must be {BOOKED} or one of {', '.join(NOT_BOOKED)}"
        )
    amount = _amount(entry.one("Amt"))
    direction = _direction(entry.one("CdtDbtInd"))
    value_date = _date(entry.one("ValDt").one("Dt"))
    transactions = [tx for details in entry.many("NtryDtls") for tx in details.many("TxDtls")]
    if len(transactions) <= 1:
        tx = transactions[0] if transactions else None
        if tx is not None:
            _same(tx, amount, direction, required=False)
        parts = [(tx, amount)]
    else:
        parts = [(tx, _same(tx, None, direction, required=True)) for tx in transactions]
        total = sum((part for _, part in parts), ZERO)
        if total != amount:
            raise _refused(
                f"{entry.path}/Amt",
                f"{format_money(amount)} is not the sum of its transactions' amounts "
                f"({format_money(total)})",
            )
    return [
        StatementLine(
            before + n,
            value_date,
            _reference(entry, tx),
            part,
            direction,
            _counterparty(tx, direction),
            (tx or entry).path,
        )
        for n, (tx, part) in enumerate(parts, 1)
    ]


def _same(tx: _Node, amount: Decimal | None, direction: str, *, required: bool) -> Decimal:
    """A transaction's own amount (`required` in a batch), agreeing with its entry's
    amount (if one is given) and direction."""
    stated = tx.one("Amt") if required else tx.optional("Amt")
    own = _amount(stated) if stated is not None else amount
    assert own is not None
    if amount is not None and own != amount:
        assert stated is not None
        raise _refused(stated.path, f"differs from its entry's amount {format_money(amount)}")
    indicator = tx.optional("CdtDbtInd")
    if indicator is not None and _direction(indicator) != direction:
        raise _refused(indicator.path, f"differs from its entry's direction ({direction})")
    return own


def _reference(entry: _Node, tx: _Node | None) -> str:
    """The transaction's `EndToEndId`, else the bank's reference (`AcctSvcrRef`) of the
    transaction, else of the entry; `NOTPROVIDED` is no reference."""
    refs = tx.optional("Refs") if tx is not None else None
    found = [
        refs.optional("EndToEndId") if refs else None,
        refs.optional("AcctSvcrRef") if refs else None,
        entry.optional("AcctSvcrRef"),
    ]
    for node in found:
        if node is not None and node.text() != NOT_PROVIDED:
            check_reference(None, node.path, node.text())
            return node.text()
    raise _refused(
        f"{(tx or entry).path}/Refs/EndToEndId", "no bank reference: no EndToEndId nor AcctSvcrRef"
    )


def _counterparty(tx: _Node | None, direction: str) -> str:
    """Whom the money went to (the creditor of a debit) or came from (the debtor of a
    credit); blank when the bank does not say."""
    parties = tx.optional("RltdPties") if tx is not None else None
    party = parties.optional("Cdtr" if direction == "debit" else "Dbtr") if parties else None
    identified = party.optional("Pty") if party else None
    name = identified.optional("Nm") if identified else None
    return name.text() if name else ""


def _currency(amount: _Node) -> _Node:
    currency = amount.element.get("Ccy")
    if currency != CURRENCY:
        raise _refused(f"{amount.path}/@Ccy", f"the ledger keeps {CURRENCY}, not {currency}")
    return amount


def _amount(node: _Node) -> Decimal:
    return statement_money(None, node.path, _currency(node).text())


def _direction(node: _Node) -> str:
    direction = DIRECTIONS.get(node.text())
    if direction is None:
        raise _refused(node.path, "must be DBIT or CRDT")
    return direction


def _date(node: _Node) -> date:
    text = node.text()
    if not _DATE_RE.fullmatch(text):
        raise _refused(node.path, "must be a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _refused(node.path, f"{text} is not a date") from None
