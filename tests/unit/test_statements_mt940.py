"""Statements as SWIFT MT940 (CONTRACT §6, second edition): read with their `:86:`
details over several lines, the reference the account owner gave (else the bank's),
and anything malformed or unbalanced refused whole, naming the line and the tag."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from api.treasury import STATEMENT_EXAMPLES
from ledger.adapters.statement_mt940 import parse_mt940
from ledger.domain.errors import StatementRejected, StatementUnbalanced
from ledger.domain.reconciliation import Balance, StatementLine
from tests.bank_statements import MT940, Entry, mt940

D = Decimal
GOOD = [Entry("2024-03-03", "BR-1", "5000.00", "debit"), Entry("2024-03-05", "RB-1", "5", "credit")]


def refusal(data: bytes) -> tuple[int | None, str]:
    with pytest.raises(StatementRejected) as refused:
        parse_mt940(data)
    error = refused.value
    assert error.code == "validation_error"
    assert f"line {error.line}: " in error.detail
    return error.line, error.field


def test_a_bank_statement_is_read_with_its_account_balances_and_lines() -> None:
    statement = parse_mt940(MT940)

    assert statement.account == "31050161373600001234", "the bank's BIC before it left out"
    assert statement.opening == Balance(D("1000000.00"), date(2024, 3, 1))
    assert statement.closing == Balance(D("991200.00"), date(2024, 3, 31))
    assert statement.lines == (
        StatementLine(6, date(2024, 3, 3), "BR-1", D("5000.00"), "debit", "ZHANG WEI"),
        StatementLine(11, date(2024, 3, 8), "BR-2", D("3000.00"), "debit", "ZHANG WEI"),
        StatementLine(13, date(2024, 3, 8), "BR-3", D("2000.00"), "debit", "ZHANG WEI"),
        StatementLine(15, date(2024, 3, 18), "BR-5", D("1500.00"), "credit", "ZHANG WEI"),
        # NONREF: the bank's reference, after //
        StatementLine(18, date(2024, 3, 21), "2024032100017", D("800.00"), "debit", "ZHANG WEI"),
        StatementLine(20, date(2024, 3, 26), "RB-1", D("500.00"), "credit", "LI NA"),
    )


def test_details_over_several_lines_are_read_as_the_bank_wrapped_them() -> None:
    details = ":86:/NAME/某市第一人民医院附属医院人才公寓管理办公室/REMI/租房补\r\n贴 2024年3月\r\n"
    data = mt940(GOOD).replace(":86:/NAME/张伟\r\n".encode(), details.encode(), 1)
    assert parse_mt940(data).lines[0].counterparty == "某市第一人民医院附属医院人才公寓管理办公室"
    unstructured = mt940(GOOD).replace(
        ":86:/NAME/张伟\r\n".encode(), ":86:退回 王芳\r\n 个人账户\r\n".encode(), 1
    )
    assert parse_mt940(unstructured).lines[0].counterparty == "退回 王芳 个人账户"
    german = mt940(GOOD).replace(
        ":86:/NAME/张伟\r\n".encode(),
        b":86:166?00GUTSCHRIFT?20EREF+BR-1?32MUSTER\r\n?33MANN?34000\r\n",
        1,
    )
    assert parse_mt940(german).lines[0].counterparty == "MUSTERMANN"


def test_a_file_of_the_bank_in_gbk_without_envelope_is_read_like_one_in_utf8() -> None:
    text = mt940(GOOD).decode()
    assert parse_mt940(text.encode("gbk")).lines == parse_mt940(text.encode()).lines


def test_reversals_the_old_statement_number_tag_and_a_closing_dash_are_read() -> None:
    data = (
        mt940(GOOD)
        .replace(b":28C:", b":28:")
        .replace(b"D5000,00NTRF", b"RC5000,00NTRF")
        .replace(b"C5,00NTRF", b"RDR5,00NTRF")
        + b"-\r\n"
    )
    assert [line.direction for line in parse_mt940(data).lines] == ["debit", "credit"]


def test_a_debit_balance_is_negative_and_the_examples_are_read() -> None:
    statement = parse_mt940(mt940(GOOD, opening="1000.00"))
    assert statement.closing == Balance(D("-3995.00"), date(2024, 3, 31))
    assert b":62F:D240331CNY3995,00" in mt940(GOOD, opening="1000.00")
    assert parse_mt940(STATEMENT_EXAMPLES["text/plain"].encode()).lines[0].bank_reference == (
        "BR-20240303-001"
    )


# --- refusals ----------------------------------------------------------------------------


def changed(old: str, new: str, data: bytes = MT940) -> bytes:
    assert data.count(old.encode()) == 1, old
    return data.replace(old.encode(), new.encode())


REFUSED: dict[str, tuple[bytes, int, str]] = {
    "empty": (b"", 1, ":20:"),
    "a CSV": (b"value_date,bank_reference,amount,direction,counterparty\n", 1, ":20:"),
    "the envelope not closed": (MT940.replace(b"-}\r\n", b""), 25, "envelope"),
    "no :20:": (changed(":20:STMT240331001\r\n", ""), 2, ":20:"),
    "no :25:": (changed(":25:PCBCCNBJ/31050161373600001234\r\n", ""), 3, ":25:"),
    "an unknown tag": (changed(":28C:3/1", ":28D:3/1"), 4, ":28C:"),
    "a malformed statement number": (changed(":28C:3/1", ":28C:three"), 4, ":28C:"),
    "an opening balance in dollars": (changed("C240301CNY", "C240301USD"), 5, ":60F:"),
    "an opening balance of two lines": (
        changed(":60F:C240301CNY1000000,00", ":60F:C240301CNY1000000,00\r\n00"),
        6,
        ":60F:",
    ),
    "an amount with a letter": (changed("D5000,00NTRF", "D50x0,00NTRF"), 6, ":61:"),
    "an amount without its comma": (changed("D5000,00NTRF", "D5000NTRF"), 6, ":61:"),
    "an amount of 3 decimals": (changed("D5000,00NTRF", "D5000,001NTRF"), 6, ":61:"),
    "an amount of zero": (changed("D800,00NTRF", "D0,00NTRF"), 18, ":61:"),
    "an impossible date": (changed(":61:2403030303D", ":61:2402300230D"), 6, ":61:"),
    "an impossible entry date": (changed(":61:2403030303D", ":61:2403031303D"), 6, ":61:"),
    "a reference too long": (changed("NTRFBR-1//", "NTRFBR-1-OF-THE-TREASURY//"), 6, ":61:"),
    "no reference at all": (changed("NTRFNONREF//RB-1", "NTRFNONREF"), 20, ":61:"),
    "a line of three lines": (changed("/OCMT/CNY5000,00/", "/OCMT/CNY5000,00/\r\nmore"), 8, ":61:"),
    "details before any line": (
        changed(":60F:C240301CNY1000000,00", ":60F:C240301CNY1000000,00\r\n:86:x"),
        6,
        ":62F:",
    ),
    "no closing balance": (changed(":62F:C240331CNY991200,00\r\n:64:", ":64:"), 23, ":62F:"),
    "an intermediate closing balance": (changed(":62F:", ":62M:"), 23, ":62F:"),
    "a second statement": (
        changed("-}", ":20:STMT240331002\r\n-}"),
        26,
        ":20:",
    ),
    "no :61: line": (mt940([]), 5, ":61:"),
    "bytes neither UTF-8 nor GBK": (
        MT940.replace(b"/NAME/LI NA", b"/NAME/LI\x81\x20NA"),
        21,
        "encoding",
    ),
}


@pytest.mark.parametrize(("data", "line", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_a_malformed_statement_is_refused_naming_the_line(
    data: bytes, line: int, field: str
) -> None:
    assert refusal(data) == (line, field)


def test_a_statement_whose_balances_do_not_add_up_is_unbalanced() -> None:
    with pytest.raises(StatementUnbalanced) as refused:
        parse_mt940(changed(":62F:C240331CNY991200,00", ":62F:C240331CNY991300,00"))
    assert refused.value.code == "statement_unbalanced"
    assert (refused.value.line, refused.value.field) == (23, ":62F:")
    assert "991300.00" in refused.value.detail
