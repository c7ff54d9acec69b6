"""Audit trails (docs/api.md, "What the reads answer"): talent and fund-year histories,
the event stream, and the CSV export (RFC 4180, UTF-8, spreadsheet-safe)."""

from __future__ import annotations

import base64
import csv
import gc
import io
import warnings
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ledger.adapters.postgres import datastore_of
from ledger.adapters.spreadsheets import write_csv
from ledger.domain.context import acting_as
from ledger.domain.vocabulary import CODES, code_label
from ledger.usecases.ledger import Ledger
from projections import exports
from projections.exports import AUDIT_TRAIL_COLUMNS
from projections.worker import ProjectionWorker
from tests import commands as c
from tests.integration.scenario import (
    MONEY_RE,
    YEAR,
    Api,
    Json,
    appropriation_body,
    assert_problem,
    assert_validation_error,
    clawback_body,
    expect,
    fund_year_body,
    funded,
    grant_body,
    payment_body,
    recovery_body,
    talent_body,
    waiver_body,
)

pytestmark = [pytest.mark.db]

OTHER_YEAR = YEAR + 1
ENTRY_FIELDS = {
    "position",
    "recorded_at",
    "event_type",
    "talent_id",
    "grant_id",
    "payment_id",
    "waiver_id",
    "clawback_id",
    "fund_year",
    "programme",
    "amount",
    "actor",
    "reason",
    "reference",
    "request_id",
    "hash",
}
QUOTED_REASON = 'He said "yes, later",\nthen left'
CHINESE_REASON = "安家补贴，第二批（含税）— 已核对"
FORMULAS = {
    "reason": '=HYPERLINK("http://evil.example","click")',
    "reference": "+86 571 1234",
    "reject": "-5 元 扣除",
    "note": "@SUM(A1:A9)",
    "tab": "\t=cmd|' /C calc'!A0",
}


def send(client: TestClient, path: str, body: Json, request_id: str, status: int = 201) -> int:
    r = client.post(path, json=body, headers={"X-Request-Id": request_id})
    expect(r, status)
    assert r.headers["x-request-id"] == request_id
    return int(r.headers["Ledger-Position"])


class World:
    """A ledger over two fund years, each write with a request id of its own."""

    def __init__(self, api: Api, ledger: Ledger) -> None:
        self.a = a = funded(api)
        self.ledger = ledger
        self.head = 0
        c_, ap, tr = a.clerk, a.approver, a.treasury

        def w(client: TestClient, path: str, body: Json, rid: str, status: int = 201) -> None:
            self.head = send(client, path, body, rid, status)

        w(a.admin, "/v1/fund-years", fund_year_body(OTHER_YEAR), "req-open-2025")
        w(
            a.admin,
            f"/v1/fund-years/{OTHER_YEAR}/appropriations",
            appropriation_body("AP-2025", amount="9000", reference="=2025预算"),
            "req-ap-2025",
        )
        w(c_, "/v1/talents", talent_body("T-2", name="李娜"), "req-t2")
        grant = grant_body("G-1", amount="30000", reason=CHINESE_REASON)
        w(c_, "/v1/grants", grant, "req-g1")
        w(ap, "/v1/grants/G-1/approve", {"note": FORMULAS["note"]}, "req-g1-ok", 200)
        w(tr, "/v1/payments", payment_body("P-1", amount="10000"), "req-pay-1")
        w(tr, "/v1/payments", payment_body("P-2", amount="2500.5", bank_reference="BR-2"), "rp2")
        w(tr, "/v1/payments/P-2/return", {"returned_on": "2024-03-09", "reason": QUOTED_REASON},
          "req-ret-2", 200)  # fmt: skip
        formula_grant = grant_body(
            "G-2", amount="100", reason=FORMULAS["reason"], policy_reference=FORMULAS["reference"]
        )
        w(c_, "/v1/grants", formula_grant, "req-g2")
        w(ap, "/v1/grants/G-2/reject", {"reason": FORMULAS["reject"]}, "req-g2-no", 200)
        w(c_, "/v1/rent-waivers", waiver_body("W-1"), "req-w1")
        other = grant_body("G-9", talent_id="T-2", fund_year=OTHER_YEAR, amount="900")
        w(c_, "/v1/grants", other, "req-g9")
        w(c_, "/v1/talents/T-1/departure", {"departed_on": "2024-09-30", "reason": "调离"},
          "req-dep", 200)  # fmt: skip
        w(c_, "/v1/clawbacks", clawback_body("C-1", amount="4000", reason="a=b"), "req-c1")
        w(tr, "/v1/clawbacks/C-1/recoveries", recovery_body("R-1"), "req-r1")
        # a text that the API would strip: written by the application itself
        with acting_as("closer", "req-close"):
            outcome = ledger.execute(c.CloseFundYear(YEAR, FORMULAS["tab"]))
        self.head = outcome.position
        self.events = page_all(a.auditor, "/v1/events", limit=1000, min_position=self.head)


def page_all(
    client: TestClient, path: str, *, limit: int | None = None, min_position: int = 0
) -> list[Json]:
    """Walk every page; checks each page's size and that `next` is null on the last only."""
    items: list[Json] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"min_position": min_position}
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        page = expect(client.get(path, params=params), 200)
        assert set(page) == {"items", "next"}
        pages += 1
        assert pages < 10_000
        assert len(page["items"]) <= (limit or 100)
        items.extend(page["items"])
        after = page["next"]
        if after is None:
            return items
        assert isinstance(after, str)
        assert after
        assert len(page["items"]) == (limit or 100), "a page before the last is full"


@pytest.fixture
def world(api: Api, ledger: Ledger) -> World:
    return World(api, ledger)


def stored(db_url: str) -> dict[int, tuple[datetime, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT notification_id, recorded_at, hash FROM ledger_events")
        return {row[0]: (row[1], bytes(row[2]).hex()) for row in rows}


# --- entries ----------------------------------------------------------------------


def test_the_event_stream_is_every_event_oldest_first_with_its_details(
    world: World, db_url: str
) -> None:
    items = world.events
    events = stored(db_url)
    assert [e["position"] for e in items] == list(range(1, len(events) + 1))
    for entry in items:
        assert set(entry) >= ENTRY_FIELDS, entry
        recorded_at, hash_hex = events[entry["position"]]
        assert datetime.fromisoformat(entry["recorded_at"].replace("Z", "+00:00")) == recorded_at
        assert entry["hash"] == hash_hex
        assert entry["event_type"]
        assert entry["actor"]
        assert entry["request_id"]
        assert entry["amount"] is None or MONEY_RE.fullmatch(entry["amount"]), entry
    instants = [datetime.fromisoformat(e["recorded_at"].replace("Z", "+00:00")) for e in items]
    assert instants == sorted(instants)


def by_request(items: list[Json], request_id: str) -> list[Json]:
    found = [e for e in items if e["request_id"] == request_id]
    assert found, f"no entry of {request_id}"
    return found


def one(entries: list[Json], **fields: Any) -> Json:
    """The entry (of a request's entries) with those fields; a request may record
    several events, e.g. a payment and its grant's Paid, both naming the payment."""
    matching = [e for e in entries if all(e[k] == v for k, v in fields.items())]
    assert matching, (fields, entries)
    return matching[-1]


def test_entries_name_the_ids_amount_actor_words_and_request(world: World) -> None:
    items = world.events

    for entry in by_request(items, "req-pay-1"):
        assert entry["actor"] == "treasury"
    paid = one(by_request(items, "req-pay-1"), payment_id="P-1", bank_reference="BR-1")
    assert (paid["grant_id"], paid["amount"]) == ("G-1", "10000.00")
    assert (paid["talent_id"], paid["fund_year"], paid["programme"]) == ("T-1", YEAR, "settling_in")

    proposed = one(by_request(items, "req-g1"), grant_id="G-1", reason=CHINESE_REASON)
    assert proposed["actor"] == "clerk"
    assert proposed["reference"] == "人才新政第5条"
    assert (proposed["talent_id"], proposed["amount"]) == ("T-1", "30000.00")

    approved = one(by_request(items, "req-g1-ok"), grant_id="G-1")
    assert (approved["actor"], approved["reason"]) == ("approver", FORMULAS["note"])

    returned = one(by_request(items, "req-ret-2"), payment_id="P-2", reason=QUOTED_REASON)
    assert (returned["amount"], returned["actor"]) == ("2500.50", "treasury")

    rejected = one(by_request(items, "req-g2-no"), grant_id="G-2", reason=FORMULAS["reject"])
    assert rejected["actor"] == "approver"

    waiver = one(by_request(items, "req-w1"), waiver_id="W-1", talent_id="T-1")
    assert (waiver["programme"], waiver["fund_year"]) == ("housing", YEAR)
    assert waiver["amount"] == "7500.00"  # January to March, 2500 a month

    departed = one(by_request(items, "req-dep"), talent_id="T-1")
    assert departed["reason"] == "调离"

    clawback = one(by_request(items, "req-c1"), clawback_id="C-1")
    assert (clawback["grant_id"], clawback["amount"]) == ("G-1", "4000.00")
    assert clawback["reason"] == "a=b"

    recovered = one(by_request(items, "req-r1"), clawback_id="C-1", amount="1000.00")
    assert recovered["actor"] == "treasury"

    closed = one(by_request(items, "req-close"), fund_year=YEAR)
    assert (closed["actor"], closed["reason"]) == ("closer", FORMULAS["tab"])

    appropriated = one(by_request(items, "req-ap-2025"), fund_year=OTHER_YEAR)
    assert appropriated["reference"] == "=2025预算"
    assert appropriated["amount"] == "9000.00"


def test_a_request_without_an_id_gets_one_and_its_entries_carry_it(
    world: World,
) -> None:
    r = world.a.clerk.post("/v1/talents", json=talent_body("T-3"))
    expect(r, 201)
    given = r.headers["x-request-id"]
    assert given
    page = expect(
        world.a.auditor.get(
            "/v1/talents/T-3/history", params={"min_position": r.headers["Ledger-Position"]}
        ),
        200,
    )
    assert [e["request_id"] for e in page["items"]] == [given]


def test_a_talent_history_is_exactly_that_talents_entries(world: World) -> None:
    for talent in ("T-1", "T-2"):
        history = page_all(world.a.auditor, f"/v1/talents/{talent}/history")
        assert history == [e for e in world.events if e["talent_id"] == talent]
        assert history
    t1 = page_all(world.a.auditor, "/v1/talents/T-1/history")
    assert {"G-1", "G-2"} <= {e["grant_id"] for e in t1}
    assert "C-1" in {e["clawback_id"] for e in t1}
    assert "G-9" not in {e["grant_id"] for e in t1}


def test_a_fund_year_history_is_exactly_that_years_entries(world: World) -> None:
    for year in (YEAR, OTHER_YEAR):
        history = page_all(world.a.auditor, f"/v1/fund-years/{year}/history")
        assert history == [e for e in world.events if e["fund_year"] == year]
        assert history
    other = page_all(world.a.auditor, f"/v1/fund-years/{OTHER_YEAR}/history")
    assert {e["grant_id"] for e in other} >= {"G-9"}
    assert "G-1" not in {e["grant_id"] for e in other}


def test_the_history_of_an_unknown_talent_or_year_is_not_found(world: World) -> None:
    for path in ("/v1/talents/T-404/history", "/v1/fund-years/1999/history"):
        assert_problem(world.a.auditor.get(path), 404, "not_found")


# --- pagination -------------------------------------------------------------------

PATHS = ["/v1/events", "/v1/talents/T-1/history", f"/v1/fund-years/{YEAR}/history"]


def test_every_page_size_walks_the_same_entries_without_gaps_or_repeats(world: World) -> None:
    for path in PATHS:
        everything = page_all(world.a.auditor, path, limit=1000)
        assert len(everything) > 8
        positions = [e["position"] for e in everything]
        assert positions == sorted(set(positions))
        for limit in (1, 2, 3, 7, len(everything), len(everything) - 1, len(everything) + 1):
            assert page_all(world.a.auditor, path, limit=limit) == everything, (path, limit)
        assert page_all(world.a.auditor, path) == everything  # the default limit


def test_the_last_page_has_no_next_even_when_it_is_full(world: World) -> None:
    for path in PATHS:
        everything = page_all(world.a.auditor, path, limit=1000)
        page = expect(world.a.auditor.get(path, params={"limit": len(everything)}), 200)
        assert page["items"] == everything
        assert page["next"] is None


def test_a_cursor_keeps_its_place_while_events_are_added(world: World) -> None:
    first = expect(world.a.auditor.get("/v1/events", params={"limit": 5}), 200)
    r = world.a.clerk.post("/v1/talents", json=talent_body("T-late"), headers={"X-Request-Id": "l"})
    expect(r, 201)
    late = int(r.headers["Ledger-Position"])
    expect(world.a.auditor.get("/v1/events", params={"limit": 1, "min_position": late}), 200)
    items = list(first["items"])
    after = first["next"]
    while after is not None:
        page = expect(world.a.auditor.get("/v1/events", params={"limit": 4, "after": after}), 200)
        items.extend(page["items"])
        after = page["next"]
    assert [e["position"] for e in items] == list(range(1, late + 1))
    assert items[-1]["talent_id"] == "T-late"


def test_the_default_page_is_100_entries(api: Api, ledger: Ledger) -> None:
    a = funded(api)
    with acting_as("admin", "bulk"):
        for n in range(110):
            last = ledger.execute(
                c.Appropriate(YEAR, f"AP-bulk-{n}", "settling_in", "cash", Decimal(1), "bulk")
            ).position
    for path in ("/v1/events", f"/v1/fund-years/{YEAR}/history"):
        page = expect(a.auditor.get(path, params={"min_position": last}), 200)
        assert len(page["items"]) == 100
        assert page["next"] is not None
        second = expect(a.auditor.get(path, params={"after": page["next"]}), 200)
        assert second["items"][0]["position"] == page["items"][-1]["position"] + 1
        assert len(page_all(a.auditor, path)) == len(page_all(a.auditor, path, limit=1000))


def test_a_limit_outside_1_to_1000_is_refused_and_the_bounds_are_accepted(
    world: World,
) -> None:
    for path in PATHS:
        for limit in ("0", "1001", "-1", "x", "1.5", ""):
            r = world.a.auditor.get(path, params={"limit": limit})
            assert_validation_error(r, "limit")
        for limit in ("1", "1000"):
            page = expect(world.a.auditor.get(path, params={"limit": limit}), 200)
            assert len(page["items"]) == 1 if limit == "1" else page["next"] is None


GARBAGE = [
    "garbage",
    "!!!!",
    base64.urlsafe_b64encode(b"q12").decode(),
    base64.urlsafe_b64encode(b"p").decode(),
    base64.urlsafe_b64encode(b"pabc").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    "p5",
]


def test_a_garbage_cursor_is_refused(world: World) -> None:
    for path in PATHS:
        for cursor in GARBAGE:
            r = world.a.auditor.get(path, params={"after": cursor})
            assert r.status_code == 422, (path, cursor, r.text)
            assert_validation_error(r)


# --- the CSV export ---------------------------------------------------------------


def record_terminators(text: str) -> list[str]:
    """The line breaks that end records, outside quoted fields (RFC 4180 §2)."""
    ends = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "\r\n":
            if text.startswith("\r\n", i):
                ends.append("\r\n")
                i += 1
            else:
                ends.append(ch)
        i += 1
    assert not quoted, "an unterminated quoted field"
    return ends


def export(world: World, year: int | None) -> tuple[str, list[dict[str, str]]]:
    """The English export, its rows keyed by field name, its codes as they were."""
    params: dict[str, Any] = {"min_position": world.head, "lang": "en"}
    if year is not None:
        params["fund_year"] = year
    r = world.a.auditor.get("/v1/exports/audit-trail.csv", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0].strip() == "text/csv"
    text = r.content.decode("utf-8")  # strict: the bytes are UTF-8
    return text, _by_field(text)


def _by_field(text: str) -> list[dict[str, str]]:
    fields = {column.title("en"): column.field for column in AUDIT_TRAIL_COLUMNS}
    codes = {
        name: {code_label(name, code, "en"): code for code in CODES[name]}
        for name in ("event_type", "programme")
    }
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline=""), strict=True):
        named = {fields[title]: value for title, value in row.items()}
        for name, labels in codes.items():
            named[name] = labels.get(named[name], named[name])
        rows.append(named)
    return rows


def unguarded(cell: str, original: str | None) -> str:
    """What a cell says once its formula guard (if its text needed one) is taken off."""
    if original is not None and original[:1] in ("=", "+", "-", "@", "\t"):
        assert cell == "'" + original, (cell, original)
        return original
    return cell


def test_the_csv_export_is_rfc_4180_and_holds_that_years_entries(world: World) -> None:
    text, rows = export(world, YEAR)
    ends = record_terminators(text)
    assert ends == ["\r\n"] * (len(rows) + 1)  # the header and every record, CRLF
    assert text.endswith("\r\n")

    expected = [e for e in world.events if e["fund_year"] == YEAR]
    assert [int(row["position"]) for row in rows] == [e["position"] for e in expected]
    assert OTHER_YEAR not in {int(row["fund_year"]) for row in rows}
    for row, entry in zip(rows, expected, strict=True):
        for name in ("event_type", "actor", "request_id", "hash", "programme"):
            assert row[name] == (entry[name] or ""), (name, row, entry)
        for name in ("talent_id", "grant_id", "payment_id", "waiver_id", "clawback_id"):
            assert row[name] == (entry[name] or ""), (name, row, entry)
        assert row["amount"] == (entry["amount"] or "")
        assert unguarded(row["reason"], entry["reason"]) == (entry["reason"] or "")
        assert unguarded(row["reference"], entry["reference"]) == (entry["reference"] or "")


def test_the_csv_export_round_trips_quotes_commas_newlines_and_chinese(world: World) -> None:
    _, rows = export(world, YEAR)
    reasons = {row["reason"] for row in rows}
    assert QUOTED_REASON in reasons
    assert CHINESE_REASON in reasons
    assert "a=b" in reasons  # a formula character inside a text is left alone


def test_the_csv_export_guards_every_text_a_spreadsheet_would_run(world: World) -> None:
    _, rows = export(world, YEAR)
    cells = [row["reason"] for row in rows] + [row["reference"] for row in rows]
    for original in FORMULAS.values():
        assert "'" + original in cells, original
        assert original not in cells, original
    for cell in cells:
        assert cell[:1] not in ("=", "+", "-", "@", "\t"), cell
    _, other = export(world, OTHER_YEAR)
    assert "'=2025预算" in [row["reference"] for row in other]


def test_the_csv_export_without_a_year_is_the_whole_trail(world: World) -> None:
    text, rows = export(world, None)
    assert [int(row["position"]) for row in rows] == [e["position"] for e in world.events]
    assert record_terminators(text) == ["\r\n"] * (len(rows) + 1)


def test_the_csv_export_of_an_unknown_year_is_not_found(world: World) -> None:
    r = world.a.auditor.get("/v1/exports/audit-trail.csv", params={"fund_year": 1999})
    assert_problem(r, 404, "not_found")


def test_the_csv_export_needs_a_key(world: World, api: Api) -> None:
    r = api(None).get("/v1/exports/audit-trail.csv", params={"fund_year": YEAR})
    assert_problem(r, 401, "unauthenticated")


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_the_export_leaves_no_cursor_open(ledger: Ledger) -> None:
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(YEAR, "CNY"))
    ProjectionWorker(ledger).catch_up()
    filters = {"fund_year": YEAR, "talent_id": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = exports.export(
            datastore_of(ledger), "audit-trail", filters, lambda e, _: list(e.rows)
        )
        gc.collect()
    assert len(rows) == 1
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_csv_cells_of_the_writer_itself() -> None:
    """The export writer on hand-made rows: guards, quoting, CRLF, None as empty."""
    row: dict[str, Any] = {column.field: None for column in AUDIT_TRAIL_COLUMNS}
    row.update(position=1, event_type="X", actor="a", request_id="r", hash="h")
    rows = []
    for text in ("=1+1", "+1", "-1", "@x", "\tx", "plain", 'q"uote', "多\r\n行", ""):
        rows.append({**row, "reason": text, "amount": Decimal("1.50")})
    buffer = io.BytesIO()
    assert write_csv(AUDIT_TRAIL_COLUMNS, rows, "en", buffer, bom=False) == len(rows)
    out = buffer.getvalue().decode()
    parsed = _by_field(out)
    assert [p["reason"] for p in parsed] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@x",
        "'\tx",
        "plain",
        'q"uote',
        "多\r\n行",
        "",
    ]
    assert record_terminators(out) == ["\r\n"] * (len(rows) + 1)
    assert all(p["bank_reference"] == "" for p in parsed)
    assert all(p["amount"] == "1.50" for p in parsed)
