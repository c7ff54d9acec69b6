"""As-of reads (docs/api.md, "Conventions"): `as_of=<instant>` or `as_of_position=N` answers
exactly what a read at that moment answered, whatever happened since."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    Json,
    appropriation_body,
    assert_validation_error,
    clawback_body,
    created,
    expect,
    fund_year_body,
    funded,
    grant_body,
    open_year,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

pytestmark = pytest.mark.db

TALENTS = ("T-1", "T-2")
CHINA = timezone(timedelta(hours=8))


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Moment:
    """What the auditor read right after a write: when, at which position, and the answers."""

    instant: datetime
    position: int
    fund_year: Json
    talents: dict[str, Json]


def read_now(auditor: TestClient, at: int) -> Moment:
    """Read the fund year and both talents once the write at `at` is projected."""
    fund_year = expect(auditor.get(f"/v1/fund-years/{YEAR}", params={"min_position": at}), 200)
    talents = {
        t: expect(auditor.get(f"/v1/talents/{t}", params={"min_position": at}), 200)
        for t in TALENTS
    }
    return Moment(datetime.now(UTC), at, fund_year, talents)


def as_of(auditor: TestClient, path: str, **params: Any) -> Any:
    return auditor.get(path, params=params)


class History:
    """Runs writes through the API and records a `Moment` after each."""

    def __init__(self, a: Actors) -> None:
        self.a = a
        self.moments: list[Moment] = []

    def write(self, response: Any, status: int = 201) -> int:
        expect(response, status)
        at = position(response)
        self.moments.append(read_now(self.a.auditor, at))
        return at


def build(api: Api) -> tuple[Actors, History]:
    """Fund year 2024 (cash and in-kind lines), T-1 and T-2, then a life of grants,
    payments, a waiver, returns, a revoke, a departure, a clawback and a close, with a
    recorded moment after every write from the second talent on."""
    a = funded(api)
    h = History(a)
    c, ap, tr = a.clerk, a.approver, a.treasury
    h.write(c.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    h.write(c.post("/v1/grants", json=grant_body("G-1", amount="30000")))
    h.write(ap.post("/v1/grants/G-1/approve", json={"note": "同意"}), 200)
    h.write(c.post("/v1/grants", json=grant_body("G-2", talent_id="T-2", amount="20000")))
    h.write(ap.post("/v1/grants/G-2/approve", json={}), 200)
    h.write(tr.post("/v1/payments", json=_payment("P-1", "G-1", "10000", "BR-1")))
    h.write(c.post("/v1/rent-waivers", json=waiver_body("W-1", talent_id="T-2")))
    h.write(tr.post("/v1/payments", json=_payment("P-2", "G-2", "5000", "BR-2")))
    # the moments above are compared after everything below has happened
    h.write(tr.post("/v1/payments", json=_payment("P-3", "G-1", "15000", "BR-3")))
    h.write(tr.post("/v1/payments/P-1/return", json=_return()), 200)
    h.write(ap.post("/v1/grants/G-2/revoke", json={"reason": "不符合条件"}), 200)
    h.write(c.post("/v1/rent-waivers/W-1/end", json={"ended_on": "2024-02-10"}), 200)
    h.write(c.post("/v1/talents/T-1/departure", json=_departure()), 200)
    h.write(c.post("/v1/clawbacks", json=clawback_body("C-1", "G-1", amount="8000")))
    h.write(tr.post("/v1/clawbacks/C-1/recoveries", json=recovery_body("R-1", amount="3000")))
    h.write(a.admin.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "年度决算"}), 200)
    return a, h


def _payment(payment_id: str, grant_id: str, amount: str, br: str) -> Json:
    return {
        "payment_id": payment_id,
        "grant_id": grant_id,
        "amount": amount,
        "value_date": "2024-03-01",
        "bank_reference": br,
    }


def _return() -> Json:
    return {"returned_on": "2024-03-05", "reason": "账户已注销"}


def _departure() -> Json:
    return {"departed_on": "2024-09-30", "reason": "调离本市"}


def test_as_of_an_instant_or_a_position_answers_exactly_what_was_read_then(api: Api) -> None:
    a, h = build(api)
    final = h.moments[-1]
    # the answers really changed along the way: the test compares different things
    assert len({repr(m.fund_year) for m in h.moments}) >= 10
    assert len({repr(m.talents["T-1"]) for m in h.moments}) >= 8

    for m in h.moments:
        by_instant = {"as_of": rfc3339(m.instant)}
        by_position = {"as_of_position": m.position}
        for params in (by_instant, by_position):
            got = expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", **params), 200)
            assert got == m.fund_year, (params, m.position)
            for t in TALENTS:
                got = expect(as_of(a.auditor, f"/v1/talents/{t}", **params), 200)
                assert got == m.talents[t], (t, params, m.position)

    # and with no as-of, the current answer is the last moment's
    assert expect(a.auditor.get(f"/v1/fund-years/{YEAR}"), 200) == final.fund_year
    assert expect(a.auditor.get("/v1/talents/T-1"), 200) == final.talents["T-1"]


def test_status_fields_follow_the_as_of_moment(api: Api) -> None:
    a, h = build(api)
    departed_at = next(m for m in h.moments if m.talents["T-1"]["status"] == "departed")
    closed_at = next(m for m in h.moments if m.fund_year["status"] == "closed")
    assert departed_at.position < closed_at.position == h.moments[-1].position

    def statuses(**params: Any) -> tuple[str, str, Any]:
        fund_year = expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", **params), 200)
        talent = expect(as_of(a.auditor, "/v1/talents/T-1", **params), 200)
        return fund_year["status"], talent["status"], talent["departed_on"]

    before_departure = departed_at.position - 1
    assert statuses(as_of_position=before_departure) == ("open", "active", None)
    assert statuses(as_of_position=departed_at.position) == ("open", "departed", "2024-09-30")
    assert statuses(as_of_position=closed_at.position - 1) == ("open", "departed", "2024-09-30")
    assert statuses(as_of_position=closed_at.position) == ("closed", "departed", "2024-09-30")
    assert statuses() == ("closed", "departed", "2024-09-30")
    assert statuses(as_of=rfc3339(h.moments[0].instant)) == ("open", "active", None)
    assert statuses(as_of=rfc3339(closed_at.instant)) == ("closed", "departed", "2024-09-30")


def _recorded_at(db_url: str, at: int) -> datetime:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT recorded_at FROM ledger_events WHERE notification_id = %s", (at,)
        ).fetchone()
    assert row is not None
    instant: datetime = row[0]
    return instant


def test_an_instant_includes_events_recorded_at_it_and_excludes_later_ones(
    api: Api, db_url: str
) -> None:
    a, h = build(api)
    earlier, later = h.moments[4], h.moments[5]  # two consecutive writes
    first_of_later = earlier.position + 1
    boundary = _recorded_at(db_url, later.position)
    assert _recorded_at(db_url, first_of_later) > _recorded_at(db_url, earlier.position)

    at_boundary = expect(as_of(a.auditor, "/v1/talents/T-1", as_of=rfc3339(boundary)), 200)
    assert at_boundary == later.talents["T-1"]
    just_before = _recorded_at(db_url, first_of_later) - timedelta(microseconds=1)
    before = expect(as_of(a.auditor, "/v1/talents/T-1", as_of=rfc3339(just_before)), 200)
    assert before == earlier.talents["T-1"]
    assert before != at_boundary


def test_an_instant_in_another_time_zone_means_the_same_moment(api: Api) -> None:
    a, h = build(api)
    m = h.moments[6]
    text = m.instant.astimezone(CHINA).isoformat()
    assert text.endswith("+08:00")
    assert expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", as_of=text), 200) == m.fund_year
    assert expect(as_of(a.auditor, "/v1/talents/T-2", as_of=text), 200) == m.talents["T-2"]


def test_a_fund_year_as_of_before_its_first_appropriation_has_no_lines(api: Api) -> None:
    a = Actors.of(api)
    r = a.admin.post("/v1/fund-years", json=fund_year_body(YEAR))
    created(r)
    body = appropriation_body("AP-1", "settling_in", "cash", "1000.00")
    created(a.admin.post(f"/v1/fund-years/{YEAR}/appropriations", json=body))
    fund_year = expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", as_of_position=position(r)), 200)
    assert fund_year["lines"] == []
    assert set(fund_year["totals"].values()) == {"0.00"}


def test_as_of_before_the_fund_year_or_talent_existed_is_not_found(api: Api) -> None:
    before_anything = datetime.now(UTC)
    a = Actors.of(api)
    open_year(a)
    year_opened = datetime.now(UTC)
    r = a.clerk.post("/v1/talents", json=talent_body("T-9"))
    created(r)
    registered = position(r)
    after_talent = datetime.now(UTC)
    expect(a.auditor.get("/v1/talents/T-9", params={"min_position": registered}), 200)

    for params in ({"as_of": rfc3339(before_anything)}, {"as_of_position": 0}):
        r = as_of(a.auditor, f"/v1/fund-years/{YEAR}", **params)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
    for params in (
        {"as_of": rfc3339(before_anything)},
        {"as_of": rfc3339(year_opened)},
        {"as_of_position": registered - 1},
    ):
        r = as_of(a.auditor, "/v1/talents/T-9", **params)
        assert r.status_code == 404, (params, r.text)
        assert r.json()["code"] == "not_found"
    # and exists from that moment on
    assert expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", as_of=rfc3339(year_opened)), 200)
    talent = expect(as_of(a.auditor, "/v1/talents/T-9", as_of=rfc3339(after_talent)), 200)
    assert talent["talent_id"] == "T-9"
    assert talent["balances"] == []


def test_as_of_and_as_of_position_together_count_the_events_that_meet_both(api: Api) -> None:
    """Both bound the events counted, so the earlier of the two answers (docs/api.md)."""
    a, h = build(api)
    early, late = h.moments[2], h.moments[-2]
    for instant, at in ((late.instant, early.position), (early.instant, late.position)):
        params = {"as_of": rfc3339(instant), "as_of_position": at}
        assert expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", **params), 200) == early.fund_year
        for t in TALENTS:
            assert expect(as_of(a.auditor, f"/v1/talents/{t}", **params), 200) == early.talents[t]


@pytest.mark.parametrize("path", [f"/v1/fund-years/{YEAR}", "/v1/talents/T-1"])
@pytest.mark.parametrize(
    "instant",
    [
        "2024-05-01T08:00:00",  # naive: which zone?
        "2024-05-01 08:00:00",
        "2024-05-01",
        "yesterday",
        "2024-13-01T08:00:00Z",
        "1714550400",  # a number is not an instant (pydantic would read it as Unix time)
        "0.0",
    ],
)
def test_an_instant_without_a_zone_or_malformed_is_refused(
    api: Api, path: str, instant: str
) -> None:
    a = funded(api)
    assert_validation_error(a.auditor.get(path, params={"as_of": instant}), "as_of")


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_a_malformed_as_of_position_is_refused(api: Api, value: str) -> None:
    a = funded(api)
    r = a.auditor.get(f"/v1/fund-years/{YEAR}", params={"as_of_position": value})
    assert_validation_error(r, "as_of_position")


def test_as_of_reads_answer_after_the_line_changes_shape(api: Api) -> None:
    """A line appropriated later does not appear as of a moment before it existed."""
    a = funded(api)
    r = a.admin.post(
        f"/v1/fund-years/{YEAR}/appropriations",
        json={
            "appropriation_id": "AP-late",
            "programme": "project_support",
            "kind": "cash",
            "amount": "5000",
            "reference": "追加预算",
        },
    )
    created(r)
    late = position(r)
    now = expect(a.auditor.get(f"/v1/fund-years/{YEAR}", params={"min_position": late}), 200)
    before = expect(as_of(a.auditor, f"/v1/fund-years/{YEAR}", as_of_position=late - 1), 200)
    assert "project_support" in {line["programme"] for line in now["lines"]}
    assert "project_support" not in {line["programme"] for line in before["lines"]}
    assert before["totals"]["appropriated"] == "150000.00"
    assert now["totals"]["appropriated"] == "155000.00"
