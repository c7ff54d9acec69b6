"""The `cn-bank` profile (CONTRACT §6, second edition): a Chinese online-banking export,
UTF-8 or GBK, with an account preamble before its header row, separate debit and
credit columns, thousands separators, and a totals line (合计) after the data."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger.adapters.statement_csv import parse_cn_bank
from ledger.domain.errors import StatementRejected

EXPORT = """中国工商银行 网上银行 账户明细
账号,6222020200001111222
户名,某市人才发展专项资金
查询期间,2024-03-01 至 2024-03-31
交易日期,摘要,借方发生额,贷方发生额,余额,对方户名,交易流水号
2024-03-01,人才补贴,"12,000.00",,"988,000.00",王芳,BR-20240301-001
2024/03/05,退回,,500.00,"988,500.00",王芳,RB-20240305-002
20240306,项目资助,"1,234,567.89",0.00,,某研究院,BR-20240306-003
合计,,"1,246,567.89",500.00,,,
打印时间,2024-04-01 09:00
"""


def test_a_gbk_export_with_a_preamble_and_a_totals_line_is_read() -> None:
    statement = parse_cn_bank(EXPORT.encode("gbk"))
    assert [
        (line.line, line.value_date, line.bank_reference, line.amount, line.direction)
        for line in statement.lines
    ] == [
        (6, date(2024, 3, 1), "BR-20240301-001", Decimal("12000.00"), "debit"),
        (7, date(2024, 3, 5), "RB-20240305-002", Decimal("500.00"), "credit"),
        (8, date(2024, 3, 6), "BR-20240306-003", Decimal("1234567.89"), "debit"),
    ]
    assert statement.lines[0].counterparty == "王芳"


def test_the_same_export_in_utf8_reads_the_same_lines() -> None:
    gbk, utf8 = parse_cn_bank(EXPORT.encode("gbk")), parse_cn_bank(EXPORT.encode("utf-8-sig"))
    assert gbk.lines == utf8.lines
    assert gbk.sha256 != utf8.sha256, "named by the file's bytes"


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (("交易流水号", "流水号"), 1, "header"),
        (("2024/03/05", "2024-13-05"), 7, "交易日期"),
        ((',,500.00,"988,500.00"', ',"1.00",500.00,"988,500.00"'), 7, "借方发生额"),
        (('"12,000.00",,"988', '"12,00.00",,"988'), 6, "借方发生额"),
        (("RB-20240305-002", ""), 7, "交易流水号"),
    ],
)
def test_a_malformed_export_is_refused_naming_the_line_and_column(
    change: tuple[str, str], line: int, field: str
) -> None:
    with pytest.raises(StatementRejected) as refused:
        parse_cn_bank(EXPORT.replace(*change).encode("gbk"))
    assert (refused.value.line, refused.value.field) == (line, field)


def test_bytes_that_are_neither_utf8_nor_gbk_are_refused_naming_the_line() -> None:
    data = EXPORT.encode("gbk").replace("王芳".encode("gbk"), b"\x81\x20", 1)
    with pytest.raises(StatementRejected) as refused:
        parse_cn_bank(data)
    assert (refused.value.line, refused.value.field) == (6, "encoding")
