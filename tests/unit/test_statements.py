"""Bank statements are parsed strictly (docs/api.md, "Bank statements and
reconciliation"): a readable file gives every line with its number, a file wrong
anywhere is refused whole, naming the line and the field."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.adapters.statement_csv import HEADER, parse_statement
from ledger.domain.errors import StatementRejected
from ledger.domain.reconciliation import StatementLine

HEAD = ",".join(HEADER) + "\n"
BOM = b"\xef\xbb\xbf"


def statement(*lines: str, head: str = HEAD) -> bytes:
    return (head + "".join(line + "\n" for line in lines)).encode()


def refusal(data: bytes) -> tuple[int, str]:
    with pytest.raises(StatementRejected) as caught:
        parse_statement(data)
    error = caught.value
    assert error.code == "validation_error"
    assert f"line {error.line}" in error.detail
    return error.line, error.field


# --- what a good statement reads as --------------------------------------------------


def test_every_line_is_read_with_its_number_the_header_being_line_1() -> None:
    data = statement(
        "2024-03-01,BR-1,10000.00,debit,张伟",
        "2024-03-04,BR-2,12.5,credit,市第一人民医院",
        "2024-02-28,BR-3,200000,debit,",
    )

    parsed = parse_statement(data)

    assert parsed.lines == (
        StatementLine(2, date(2024, 3, 1), "BR-1", Decimal("10000.00"), "debit", "张伟"),
        StatementLine(3, date(2024, 3, 4), "BR-2", Decimal("12.50"), "credit", "市第一人民医院"),
        StatementLine(4, date(2024, 2, 28), "BR-3", Decimal("200000.00"), "debit", ""),
    )
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.period == (date(2024, 2, 28), date(2024, 3, 4))


def test_a_utf8_bom_crlf_line_ends_blank_lines_and_padded_cells_are_accepted() -> None:
    plain = parse_statement(statement("2024-03-01,BR-1,10.00,debit,张伟"))
    data = BOM + b"value_date,bank_reference,amount,direction,counterparty\r\n\r\n"
    data += " 2024-03-01 , BR-1 , 10.00 , debit , 张伟 \r\n,,,,\r\n".encode()

    parsed = parse_statement(data)

    assert parsed.lines == (
        StatementLine(3, date(2024, 3, 1), "BR-1", Decimal("10.00"), "debit", "张伟"),
    )
    assert parsed.lines[0] == plain.lines[0]._replace(line=3)
    assert parsed.sha256 == hashlib.sha256(data).hexdigest() != plain.sha256


def test_a_quoted_counterparty_may_hold_commas_and_quotes() -> None:
    parsed = parse_statement(statement('2024-03-01,BR-1,10.00,debit,"Acme, Inc. ""HQ"""'))
    assert parsed.lines[0].counterparty == 'Acme, Inc. "HQ"'


def test_the_same_bytes_always_hash_the_same_and_other_bytes_do_not() -> None:
    one = statement("2024-03-01,BR-1,10.00,debit,x")
    other = statement("2024-03-01,BR-1,10.01,debit,x")
    assert parse_statement(one).sha256 == parse_statement(bytes(one)).sha256
    assert parse_statement(one).sha256 != parse_statement(other).sha256


def test_progress_is_told_every_thousand_lines_and_at_the_end() -> None:
    lines = [f"2024-03-01,BR-{n},1.00,debit,x" for n in range(2500)]
    calls: list[tuple[int, int]] = []

    parsed = parse_statement(statement(*lines), progress=lambda d, t: calls.append((d, t)))

    assert len(parsed.lines) == 2500
    assert [done for done, _ in calls] == [1000, 2000, 2501]
    assert all(total >= 2501 for _, total in calls)
    assert calls[-1] == (2501, 2501)  # the header and every line: all read


# --- refusals ------------------------------------------------------------------------

GOOD = "2024-03-01,BR-1,10.00,debit,x"

REFUSED: dict[str, tuple[bytes, int, str]] = {
    "empty file": (b"", 1, "header"),
    "header only": (statement(), 2, "lines"),
    "header and blank lines only": (statement("", ",,,,", ""), 2, "lines"),
    "no header": (statement(GOOD, head=""), 1, "header"),
    "header with a missing column": (
        statement(GOOD, head="value_date,bank_reference,amount,direction\n"),
        1,
        "header",
    ),
    "header with columns in another order": (
        statement(GOOD, head="bank_reference,value_date,amount,direction,counterparty\n"),
        1,
        "header",
    ),
    "header misspelt": (
        statement(GOOD, head="value_date,bank_ref,amount,direction,counterparty\n"),
        1,
        "header",
    ),
    "amount with an exponent": (statement(GOOD, "2024-03-01,BR-2,1e3,debit,x"), 3, "amount"),
    "negative amount": (statement(GOOD, "2024-03-01,BR-2,-5,debit,x"), 3, "amount"),
    "amount with 3 decimals": (statement(GOOD, "2024-03-01,BR-2,12.345,debit,x"), 3, "amount"),
    "zero amount": (statement(GOOD, "2024-03-01,BR-2,0.00,debit,x"), 3, "amount"),
    "blank amount": (statement(GOOD, "2024-03-01,BR-2,,debit,x"), 3, "amount"),
    "amount with a separator": (statement(GOOD, '2024-03-01,BR-2,"1,000.00",debit,x'), 3, "amount"),
    "amount in full-width digits": (statement(GOOD, "2024-03-01,BR-2,１０,debit,x"), 3, "amount"),
    "NaN amount": (statement(GOOD, "2024-03-01,BR-2,NaN,debit,x"), 3, "amount"),
    "amount above the maximum": (
        statement(GOOD, "2024-03-01,BR-2,1000000000000.00,debit,x"),
        3,
        "amount",
    ),
    "impossible date": (statement(GOOD, "2024-02-30,BR-2,1.00,debit,x"), 3, "value_date"),
    "date without zero padding": (statement(GOOD, "2024-3-1,BR-2,1.00,debit,x"), 3, "value_date"),
    "day-first date": (statement(GOOD, "01/03/2024,BR-2,1.00,debit,x"), 3, "value_date"),
    "blank date": (statement(GOOD, ",BR-2,1.00,debit,x"), 3, "value_date"),
    "capitalised direction": (statement(GOOD, "2024-03-01,BR-2,1.00,Debit,x"), 3, "direction"),
    "unknown direction": (statement(GOOD, "2024-03-01,BR-2,1.00,out,x"), 3, "direction"),
    "blank direction": (statement(GOOD, "2024-03-01,BR-2,1.00,,x"), 3, "direction"),
    "blank bank reference": (statement(GOOD, "2024-03-01,,1.00,debit,x"), 3, "bank_reference"),
    "four columns": (statement(GOOD, "2024-03-01,BR-2,1.00,debit"), 3, "columns"),
    "six columns": (statement(GOOD, "2024-03-01,BR-2,1.00,debit,x,y"), 3, "columns"),
    "bad line after good ones": (
        statement(GOOD, GOOD.replace("BR-1", "BR-2"), "2024-03-01,BR-3,1..0,debit,x"),
        4,
        "amount",
    ),
    "invalid UTF-8 in the header": (b"value_date,bank_\xff\n" + statement(GOOD, head=""), 1, ""),
    "invalid UTF-8 on line 3": (statement(GOOD) + b"2024-03-02,BR-2,1.00,debit,\xff\n", 3, ""),
    "truncated UTF-8 at the very end": (
        statement(GOOD) + "2024-03-02,BR-2,1.00,debit,张".encode()[:-1],
        3,
        "",
    ),
    "invalid UTF-8 at the start of line 4": (
        statement(GOOD, GOOD.replace("BR-1", "BR-2")) + b"\xc3(,BR-3,1.00,debit,x\n",
        4,
        "",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_bad_file_is_refused_naming_the_line_and_the_field(name: str) -> None:
    data, line, field = REFUSED[name]
    got_line, got_field = refusal(data)
    assert got_line == line
    if field:
        assert got_field == field
    else:
        assert got_field == "encoding"


def test_invalid_utf8_in_a_file_with_a_bom_names_the_line_of_the_bad_byte() -> None:
    data = BOM + statement(GOOD) + b"\xff2024-03-02,BR-2,1.00,debit,x\n"
    assert refusal(data) == (3, "encoding")


# --- any statement we can write, we can read back ----------------------------------

references = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: s == s.strip())
amounts = st.integers(min_value=1, max_value=99_999_999_999_999).map(lambda fen: Decimal(fen) / 100)
rows = st.tuples(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2999, 12, 31)),
    references,
    amounts,
    st.sampled_from(["debit", "credit"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=20),
)


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


@given(lines=st.lists(rows, min_size=1, max_size=20), bom=st.booleans())
def test_any_well_formed_statement_reads_back_exactly(
    lines: list[tuple[date, str, Decimal, str, str]], bom: bool
) -> None:
    text = HEAD + "".join(
        f"{day.isoformat()},{_quote(ref)},{amount:.2f},{direction},{_quote(party)}\r\n"
        for day, ref, amount, direction, party in lines
    )
    data = (BOM if bom else b"") + text.encode()

    parsed = parse_statement(data)

    assert [(ln.value_date, ln.bank_reference, ln.amount, ln.direction) for ln in parsed.lines] == [
        (day, ref, amount, direction) for day, ref, amount, direction, _ in lines
    ]
    assert [ln.counterparty for ln in parsed.lines] == [party.strip() for *_, party in lines]
    assert [ln.line for ln in parsed.lines] == list(range(2, len(lines) + 2))
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
