"""Statements as ISO 20022 camt.053.001.08 (CONTRACT §6, second edition): read from the
file a bank sends (valid against the published schema), a batched entry a line per
transaction, and anything malformed, hostile or unbalanced refused whole, naming the
element by its path."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal

import pytest
import xmlschema

from api.treasury import STATEMENT_EXAMPLES
from ledger.adapters.statement_camt import parse_camt053
from ledger.domain.errors import StatementRejected, StatementUnbalanced
from ledger.domain.reconciliation import Balance, StatementLine
from tests.bank_statements import (
    ACCOUNT,
    BILLION_LAUGHS,
    CAMT053,
    CAMT053_XSD,
    XXE,
    Entry,
    camt053,
)

D = Decimal


def refusal(data: bytes) -> tuple[int | None, str]:
    with pytest.raises(StatementRejected) as refused:
        parse_camt053(data)
    error = refused.value
    assert error.code == "validation_error"
    assert (f"line {error.line}: " if error.line else f"{error.field}: ") in error.detail
    return error.line, error.field


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(CAMT053_XSD)


def test_the_fixtures_and_examples_are_valid_against_the_published_schema(
    schema: xmlschema.XMLSchema,
) -> None:
    schema.validate(CAMT053.decode())
    schema.validate(STATEMENT_EXAMPLES["application/xml"])
    schema.validate(camt053([Entry("2024-03-03", "BR-1", "5000.00", "debit")]).decode())


def test_a_bank_statement_is_read_with_its_account_balances_and_booked_entries() -> None:
    statement = parse_camt053(CAMT053)

    assert statement.account == "31050161373600001234"
    assert statement.opening == Balance(D("1000000.00"), date(2024, 3, 1))
    assert statement.closing == Balance(D("991200.00"), date(2024, 3, 31))
    details = "Stmt/Ntry[{}]/NtryDtls[1]/TxDtls[{}]"
    assert statement.lines == (
        StatementLine(
            1, date(2024, 3, 3), "BR-1", D("5000.00"), "debit", "张伟", details.format(1, 1)
        ),
        # one entry of two transfers: a line each, at the entry's value date
        StatementLine(
            2, date(2024, 3, 8), "BR-2", D("3000.00"), "debit", "张伟", details.format(2, 1)
        ),
        StatementLine(
            3, date(2024, 3, 8), "BR-3", D("2000.00"), "debit", "张伟", details.format(2, 2)
        ),
        # a return: the money comes back from its debtor
        StatementLine(
            4, date(2024, 3, 18), "BR-5", D("1500.00"), "credit", "张伟", details.format(3, 1)
        ),
        # EndToEndId NOTPROVIDED: the bank's own reference
        StatementLine(
            5,
            date(2024, 3, 21),
            "2024032100017",
            D("800.00"),
            "debit",
            "张伟",
            details.format(4, 1),
        ),
        StatementLine(
            6, date(2024, 3, 26), "RB-1", D("500.00"), "credit", "李娜", details.format(5, 1)
        ),
    )  # and the pending entry (PDNG) is no line: it is not booked, nor in the balances
    assert statement.period == (date(2024, 3, 3), date(2024, 3, 26))


def test_a_debit_balance_is_negative_and_a_zero_balance_is_read() -> None:
    data = camt053([Entry("2024-03-03", "BR-1", "500.00", "debit")], opening="0")
    statement = parse_camt053(data)
    assert statement.opening == Balance(D("0.00"), date(2024, 3, 1))
    assert statement.closing == Balance(D("-500.00"), date(2024, 3, 31))
    assert b"<CdtDbtInd>DBIT</CdtDbtInd><Dt><Dt>2024-03-31" in data


def test_an_account_may_be_named_by_its_iban() -> None:
    iban = "CN7310000000001234567890"
    data = camt053([Entry("2024-03-03", "BR-1", "5.00", "debit")]).replace(
        f"<Othr><Id>{ACCOUNT}</Id></Othr>".encode(), f"<IBAN>{iban}</IBAN>".encode()
    )
    assert parse_camt053(data).account == iban


def test_the_same_statement_names_the_same_file() -> None:
    assert parse_camt053(CAMT053).sha256 == parse_camt053(bytes(CAMT053)).sha256
    assert parse_camt053(CAMT053).sha256 != parse_camt053(CAMT053 + b"\n").sha256


# --- refusals ----------------------------------------------------------------------------

DOCTYPE_ONLY = CAMT053.replace(b"<Document ", b"<!DOCTYPE Document>\n<Document ")
ENTRY = '<Amt Ccy="CNY">5000.00</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>'
GOOD = [Entry("2024-03-03", "BR-1", "5000.00", "debit")]


def fixture(old: str, new: str, count: int = 1) -> bytes:
    """The fixture with `old` made `new` (which must occur `count` times)."""
    assert CAMT053.count(old.encode()) == count, old
    return CAMT053.replace(old.encode(), new.encode())


REFUSED: dict[str, tuple[bytes, int | None, str]] = {
    "not XML": (b"value_date,bank_reference,amount,direction,counterparty\n", 1, "xml"),
    "empty": (b"", 1, "xml"),
    "cut short": (CAMT053[:2000], CAMT053[:2000].count(b"\n") + 1, "xml"),
    "billion laughs": (BILLION_LAUGHS, None, "DOCTYPE"),
    "an external entity (XXE)": (XXE, None, "DOCTYPE"),
    "a document type declaration": (DOCTYPE_ONLY, None, "DOCTYPE"),
    "camt.053.001.02's namespace": (
        fixture("camt.053.001.08", "camt.053.001.02"),
        None,
        "Document",
    ),
    "no namespace": (
        fixture(' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"', ""),
        None,
        "Document",
    ),
    "another message": (
        fixture("BkToCstmrStmt>", "BkToCstmrDbtCdtNtfctn>", 2),
        None,
        "Document/BkToCstmrStmt",
    ),
    "two statements": (
        fixture("    </Stmt>\n", "    </Stmt>\n<Stmt/>\n"),
        None,
        "Stmt",
    ),
    "no account": (
        fixture(f"<Othr>\n            <Id>{ACCOUNT}</Id>\n          </Othr>", "<Prxy/>"),
        None,
        "Stmt/Acct/Id",
    ),
    "the account in dollars": (fixture("<Ccy>CNY</Ccy>", "<Ccy>USD</Ccy>"), None, "Stmt/Acct/Ccy"),
    "no opening balance": (fixture("<Cd>OPBD</Cd>", "<Cd>PRCD</Cd>"), None, "Stmt/Bal"),
    "two closing balances": (fixture("<Cd>CLAV</Cd>", "<Cd>CLBD</Cd>"), None, "Stmt/Bal[3]"),
    "a balance of no date": (
        fixture(
            "<Dt>\n          <Dt>2024-03-01</Dt>",
            "<Dt>\n          <DtTm>2024-03-01T00:00:00</DtTm>",
        ),
        None,
        "Stmt/Bal[1]/Dt/Dt",
    ),
    "an entry without its amount": (
        fixture(
            '<NtryRef>2</NtryRef>\n        <Amt Ccy="CNY">5000.00</Amt>', "<NtryRef>2</NtryRef>"
        ),
        None,
        "Stmt/Ntry[2]/Amt",
    ),
    "an amount with a separator": (
        fixture('<Amt Ccy="CNY">1500.00</Amt>', '<Amt Ccy="CNY">1,500.00</Amt>', 2),
        None,
        "Stmt/Ntry[3]/Amt",
    ),
    "an amount of 3 decimals": (
        camt053([GOOD[0]._replace(amount="5000.001")]),
        None,
        "Stmt/Ntry[1]/Amt",
    ),
    "a negative amount": (camt053([GOOD[0]._replace(amount="-5000.00")]), None, "Stmt/Ntry[1]/Amt"),
    "a zero amount": (camt053([GOOD[0]._replace(amount="0.00")]), None, "Stmt/Ntry[1]/Amt"),
    "an amount in dollars": (
        fixture(ENTRY, ENTRY.replace("CNY", "USD"), 2),
        None,
        "Stmt/Ntry[1]/Amt/@Ccy",
    ),
    "an impossible date": (
        camt053([GOOD[0]._replace(value_date="2024-02-30")]),
        None,
        "Stmt/Ntry[1]/ValDt/Dt",
    ),
    "a date not in ISO form": (
        fixture("<Dt>2024-03-21</Dt>\n        </ValDt>", "<Dt>21/03/2024</Dt>\n        </ValDt>"),
        None,
        "Stmt/Ntry[4]/ValDt/Dt",
    ),
    "no value date": (
        fixture("<ValDt>\n          <Dt>2024-03-03</Dt>\n        </ValDt>", ""),
        None,
        "Stmt/Ntry[1]/ValDt",
    ),
    "neither debit nor credit": (
        fixture(ENTRY, ENTRY.replace("DBIT", "DEBIT"), 2),
        None,
        "Stmt/Ntry[1]/CdtDbtInd",
    ),
    "a status of its own": (
        fixture("<Cd>PDNG</Cd>", "<Prtry>HELD</Prtry>"),
        None,
        "Stmt/Ntry[6]/Sts/Cd",
    ),
    "a batch that does not add up": (
        fixture('<Amt Ccy="CNY">2000.00</Amt>', '<Amt Ccy="CNY">2500.00</Amt>'),
        None,
        "Stmt/Ntry[2]/Amt",
    ),
    "a batched transaction of no amount": (
        fixture('<Amt Ccy="CNY">2000.00</Amt>', ""),
        None,
        "Stmt/Ntry[2]/NtryDtls[1]/TxDtls[2]/Amt",
    ),
    "a transaction of another amount than its entry's": (
        fixture(
            '<Amt Ccy="CNY">800.00</Amt>\n            <CdtDbtInd>',
            '<Amt Ccy="CNY">80.00</Amt>\n            <CdtDbtInd>',
        ),
        None,
        "Stmt/Ntry[4]/NtryDtls[1]/TxDtls[1]/Amt",
    ),
    "no reference": (
        fixture("<AcctSvcrRef>2024032100017</AcctSvcrRef>", ""),
        None,
        "Stmt/Ntry[4]/NtryDtls[1]/TxDtls[1]/Refs/EndToEndId",
    ),
    "no booked entry": (camt053([]), None, "Stmt/Ntry"),
    "Latin-1 bytes": (
        fixture("李娜", "Li N\xe4").replace("Li N\xe4".encode(), b"Li N\xe4"),
        CAMT053[: CAMT053.index("李娜".encode())].count(b"\n") + 1,
        "encoding",
    ),
    "a declared encoding other than UTF-8": (
        fixture('encoding="UTF-8"', 'encoding="GB18030"'),
        1,
        "encoding",
    ),
}


@pytest.mark.parametrize(("data", "line", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_a_malformed_statement_is_refused_naming_where(
    data: bytes, line: int | None, field: str
) -> None:
    assert refusal(data) == (line, field)


def test_entities_are_refused_before_any_is_expanded() -> None:
    started = time.perf_counter()
    refusal(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5


def test_a_statement_whose_balances_do_not_add_up_is_unbalanced() -> None:
    data = fixture('<Amt Ccy="CNY">991200.00</Amt>', '<Amt Ccy="CNY">991300.00</Amt>', 2)
    with pytest.raises(StatementUnbalanced) as refused:
        parse_camt053(data)
    assert refused.value.code == "statement_unbalanced"
    assert (refused.value.line, refused.value.field) == (None, "Stmt/Bal[2]")
    assert "1000000.00" in refused.value.detail
    assert "991300.00" in refused.value.detail
    assert "991200.00" in refused.value.detail
