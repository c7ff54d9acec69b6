"""Exports for people (docs/api.md, "Exports"): CSV and XLSX of the audit trail, grants,
payments, budget execution and the year end, in Chinese or English; the XLSX opened by
openpyxl and read cell by cell."""

from __future__ import annotations

import csv
import io
import threading
from datetime import date, datetime
from typing import Any

import openpyxl
import psycopg
import pytest
from openpyxl.cell.cell import Cell

from api import exports
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    approved_grant,
    assert_problem,
    assert_validation_error,
    created,
    expect,
    funded,
    grant_body,
    pay,
    position,
    waiver_body,
)

# a text a spreadsheet would run, if it were written as anything but text
FORMULA = '=HYPERLINK("http://evil.example","点我")'


def world(api: Api) -> tuple[Actors, int]:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    body = grant_body("G-2", amount="1234.5") | {"reason": FORMULA, "policy_reference": "+第5条"}
    created(a.clerk.post("/v1/grants", json=body))
    pay(a, "P-1", amount="10000", value_date="2024-03-01", bank_reference="BR-1")
    pay(a, "P-2", amount="2000.05", value_date="2024-04-30", bank_reference="BR-2")
    r = a.clerk.post("/v1/rent-waivers", json=waiver_body("W-1"))
    created(r)
    return a, position(r)


@pytest.fixture
def data(api: Api) -> tuple[Actors, int]:
    a, head = world(api)
    expect(a.auditor.get("/v1/grants", params={"min_position": head}), 200)
    return a, head


def xlsx(a: Actors, name: str, **params: Any) -> tuple[Any, dict[str, str]]:
    r = a.auditor.get(f"/v1/exports/{name}.xlsx", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == exports.MEDIA_TYPES["xlsx"]
    assert int(r.headers["content-length"]) == len(r.content)
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    return book, dict(r.headers)


def sheet_rows(sheet: Any) -> list[list[Cell]]:
    return [list(row) for row in sheet.iter_rows()]


def test_a_grants_xlsx_is_typed_cell_by_cell_and_never_holds_a_formula(
    data: tuple[Actors, int], db_url: str
) -> None:
    a, _ = data
    book, headers = xlsx(a, "grants", lang="en", fund_year=YEAR)
    assert book.sheetnames == ["data", "manifest"]
    header, *rows = sheet_rows(book["data"])
    titles = [cell.value for cell in header]
    assert titles[:5] == ["Grant ID", "Talent ID", "Fund year", "Programme", "Amount"]
    assert len(rows) == 2
    by_title = [dict(zip(titles, row, strict=True)) for row in rows]
    g1, g2 = by_title
    assert (g1["Grant ID"].value, g1["Status"].value) == ("G-1", "Approved")
    assert g1["Programme"].value == "Settling-in allowance"
    # money: numbers formatted #,##0.00, exact to the fen
    for title in ("Amount", "Paid", "Net paid", "Payable", "Effective amount"):
        assert g1[title].data_type == "n", title
        assert g1[title].number_format == "#,##0.00", title
    assert g1["Amount"].value == 30000
    assert g1["Paid"].value == pytest.approx(12000.05, abs=1e-9)
    assert g2["Amount"].value == pytest.approx(1234.5, abs=1e-9)
    assert g1["Fund year"].value == YEAR
    # a text that looks like a formula is text, exactly as recorded
    assert g2["Reason"].value == FORMULA
    assert g2["Reason"].data_type == "s"
    assert g2["Decided by"].value is None
    assert g2["Policy reference"].value == "+第5条"  # no guard: a text cell is never run
    for row in sheet_rows(book["data"]) + sheet_rows(book["manifest"]):
        assert all(cell.data_type != "f" for cell in row)
    # the manifest: the filters, the row count, the position and the chain's hash there
    manifest = {row[0].value: row[1].value for row in sheet_rows(book["manifest"])}
    at = int(headers["ledger-position"])
    assert manifest["export"] == "grants"
    assert manifest["filter fund_year"] == str(YEAR)
    assert manifest["rows"] == 2
    assert manifest["position"] == at
    assert manifest["language"] == "en"
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT hash FROM ledger_events WHERE notification_id = %s", (at,)
        ).fetchone()
    assert row is not None
    assert manifest["chain_hash"] == headers["ledger-chain-hash"] == bytes(row[0]).hex()


def test_dates_are_date_cells_and_codes_are_labelled_in_chinese(data: tuple[Actors, int]) -> None:
    a, _ = data
    book, headers = xlsx(a, "payments")
    assert headers["content-language"] == "zh"
    header, *rows = sheet_rows(book["data"])
    titles = [cell.value for cell in header]
    assert titles[:3] == ["支付编号", "拨款编号", "人才编号"]
    p1, p2 = (dict(zip(titles, row, strict=True)) for row in rows)
    assert p1["起息日"].is_date
    assert p1["起息日"].value == datetime(2024, 3, 1)
    assert p1["起息日"].number_format == "yyyy-mm-dd"
    assert (p1["状态"].value, p1["项目"].value) == ("已支付", "安家补贴")
    assert p2["银行流水号"].value == "BR-2"
    assert p2["金额"].value == pytest.approx(2000.05, abs=1e-9)


def test_the_list_export_holds_the_lists_items(data: tuple[Actors, int]) -> None:
    a, _ = data
    listed = expect(a.auditor.get("/v1/payments", params={"value_date_to": "2024-03-31"}), 200)
    r = a.auditor.get("/v1/exports/payments.csv", params={"value_date_to": "2024-03-31"})
    rows = list(csv.reader(io.StringIO(r.content.decode(), newline="")))
    assert [row[0] for row in rows[1:]] == [p["payment_id"] for p in listed["items"]] == ["P-1"]


def test_the_language_comes_from_lang_else_accept_language_else_chinese(
    data: tuple[Actors, int],
) -> None:
    a, _ = data

    def first_title(headers: dict[str, str] | None = None, **params: str) -> str:
        r = a.auditor.get("/v1/exports/grants.csv", params=params, headers=headers or {})
        assert r.status_code == 200, r.text
        return r.content.decode().split(",", 1)[0]

    assert first_title() == "拨款编号"
    assert first_title({"Accept-Language": "en-US,en;q=0.9"}) == "Grant ID"
    assert first_title({"Accept-Language": "fr-FR, en;q=0.5, zh;q=0.4"}) == "Grant ID"
    assert first_title({"Accept-Language": "en;q=0.2, zh-CN"}) == "拨款编号"
    assert first_title({"Accept-Language": "fr, de"}) == "拨款编号"
    assert first_title({"Accept-Language": "en"}, lang="zh") == "拨款编号"
    assert first_title(lang="en") == "Grant ID"


def test_a_csv_is_rfc_4180_utf8_with_a_bom_only_when_asked(data: tuple[Actors, int]) -> None:
    a, _ = data
    plain = a.auditor.get("/v1/exports/grants.csv", params={"lang": "en"}).content
    with_bom = a.auditor.get("/v1/exports/grants.csv", params={"lang": "en", "bom": "true"})
    assert not plain.startswith(b"\xef\xbb\xbf")
    assert with_bom.content == b"\xef\xbb\xbf" + plain
    rows = list(csv.reader(io.StringIO(plain.decode("utf-8"), newline=""), strict=True))
    g2 = dict(zip(rows[0], rows[2], strict=True))
    assert g2["Reason"] == "'" + FORMULA  # a CSV is guessed at: the guard stays
    assert g2["Policy reference"] == "'+第5条"
    assert g2["Amount"] == "1234.50"
    assert plain.count(b"\r\n") == 3


def test_report_exports_are_a_row_per_line_with_the_reports_figures(
    data: tuple[Actors, int],
) -> None:
    a, _ = data
    report = expect(
        a.auditor.get(f"/v1/fund-years/{YEAR}/execution", params={"on": "2024-03-31"}), 200
    )
    book, _ = xlsx(a, "execution", fund_year=YEAR, on="2024-03-31", lang="en")
    header, *rows = sheet_rows(book["data"])
    titles = [cell.value for cell in header]
    assert len(rows) == len(report["lines"]) == 2
    assert "2024-03 Net paid" in titles
    outside = ["Outside the year Paid", "Outside the year Returned", "Outside the year Net paid"]
    assert titles[-3:] == outside
    for line, row in zip(report["lines"], rows, strict=True):
        cells = dict(zip(titles, row, strict=True))
        assert cells["Kind"].value == {"cash": "Cash", "in_kind": "In kind"}[line["kind"]]
        assert cells["Execution rate"].value == pytest.approx(float(line["execution_rate"]))
        assert cells["Execution rate"].number_format == "0.0000"
        for month in line["months"]:
            cell = cells[f"{month['month']} Net paid"]
            assert cell.value == pytest.approx(float(month["net_paid"])), month
            assert cell.number_format == "#,##0.00"
    manifest = {row[0].value: row[1].value for row in sheet_rows(book["manifest"])}
    assert manifest["filter on"] == "2024-03-31"

    statement = expect(a.auditor.get(f"/v1/fund-years/{YEAR}/year-end"), 200)
    r = a.auditor.get("/v1/exports/year-end.csv", params={"fund_year": YEAR, "lang": "en"})
    rows_csv = list(csv.DictReader(io.StringIO(r.content.decode(), newline="")))
    assert [row["Lapsed"] for row in rows_csv] == [line["lapsed"] for line in statement["lines"]]


def test_the_execution_export_defaults_to_today(data: tuple[Actors, int]) -> None:
    a, _ = data
    book, _ = xlsx(a, "execution", fund_year=YEAR)
    manifest = {row[0].value: row[1].value for row in sheet_rows(book["manifest"])}
    assert date.fromisoformat(manifest["filter on"]) >= date(2026, 1, 1)


def test_the_audit_trail_export_ends_at_the_position_it_answers(data: tuple[Actors, int]) -> None:
    a, head = data
    r = a.auditor.get("/v1/exports/audit-trail.csv", params={"lang": "en"})
    at = int(r.headers["Ledger-Position"])
    assert at >= head
    rows = list(csv.DictReader(io.StringIO(r.content.decode(), newline="")))
    assert int(rows[-1]["Position"]) == at
    assert [int(row["Position"]) for row in rows] == list(range(1, at + 1))
    assert rows[-1]["Hash"] == r.headers["Ledger-Chain-Hash"]
    talent = a.auditor.get("/v1/exports/audit-trail.xlsx", params={"talent_id": "T-1"})
    assert talent.status_code == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/exports/grants.csv?state=approved", "state"),
        ("/v1/exports/grants.xlsx?status=paid", "status"),
        ("/v1/exports/grants.xlsx?bom=true", "bom"),  # a CSV's option only
        ("/v1/exports/payments.csv?value_date_from=2024-02-30", "value_date_from"),
        ("/v1/exports/grants.csv?lang=fr", "lang"),
        ("/v1/exports/grants.csv?bom=maybe", "bom"),
        ("/v1/exports/execution.csv", "fund_year"),
        ("/v1/exports/execution.xlsx?fund_year=2024&on=2024-13-01", "on"),
        ("/v1/exports/year-end.xlsx?fund_year=12", "fund_year"),
        ("/v1/exports/audit-trail.csv?talent_id=-x", "talent_id"),
    ],
)
def test_bad_export_requests_are_refused(api: Api, path: str, field: str) -> None:
    a = funded(api)
    assert_validation_error(a.auditor.get(path), field)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/exports/execution.csv?fund_year=2030",
        "/v1/exports/year-end.xlsx?fund_year=2030",
        "/v1/exports/audit-trail.xlsx?fund_year=2030",
        "/v1/exports/audit-trail.csv?talent_id=T-404",
        "/v1/exports/ledger.csv",
        "/v1/exports/grants.pdf",
    ],
)
def test_exports_of_what_does_not_exist_are_not_found(api: Api, path: str) -> None:
    a = funded(api)
    assert_problem(a.auditor.get(path), 404, "not_found")


def test_an_xlsx_past_a_sheets_rows_is_refused(
    data: tuple[Actors, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = data
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 1)
    body = assert_validation_error(a.auditor.get("/v1/exports/grants.xlsx"))
    assert "CSV" in body["detail"]
    assert a.auditor.get("/v1/exports/grants.csv").status_code == 200


def test_exports_past_the_limit_at_once_wait_then_answer_503(
    data: tuple[Actors, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = data
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(exports, "_slots", slots)
    monkeypatch.setattr(exports, "SLOT_WAIT_SECONDS", 0.2)
    assert slots.acquire()  # an export being built
    try:
        r = a.auditor.get("/v1/exports/grants.csv")
        assert_problem(r, 503, "unavailable")
        assert r.headers["Retry-After"].isdigit()
    finally:
        slots.release()
    assert a.auditor.get("/v1/exports/grants.csv").status_code == 200


def test_exports_need_a_key(api: Api) -> None:
    assert_problem(api(None).get("/v1/exports/grants.xlsx"), 401, "unauthenticated")
