"""The console's pieces that need no server: its formats, its charts' figures, its
sealed sessions and form tokens."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from api.console.charts import bars_chart, cumulative_rates, execution_chart
from api.console.session import Sessions
from api.console.words import WORDS, Words
from ledger.domain.vocabulary import CODES

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZH, EN = Words("zh", SHANGHAI), Words("en", SHANGHAI)


def test_money_is_yuan_with_thousands_separators_to_the_fen() -> None:
    assert ZH.money("3030000.00") == "¥3,030,000.00"
    assert EN.money(Decimal("-1234.5")) == "-¥1,234.50"
    assert ZH.money(None) == "—"


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=2))
def test_money_shown_reads_back_as_the_same_amount(amount: Decimal) -> None:
    shown = ZH.money(amount)
    assert Decimal(shown.replace("¥", "").replace(",", "")) == amount


def test_dates_instants_and_shares_in_each_language() -> None:
    assert ZH.date("2024-03-05") == "2024年3月5日"
    assert EN.date("2024-03-05") == "5 Mar 2024"
    # an instant is shown in the business time zone
    assert ZH.instant("2024-03-04T16:30:00Z") == "2024年3月5日 00:30"
    assert EN.share("0.5014") == "50.14%"
    assert ZH.share("-0.0210") == "-2.10%"


def test_every_word_and_code_has_both_languages_and_codes_come_from_the_shared_table() -> None:
    assert all(len(pair) == 2 and all(pair) for pair in WORDS.values())
    assert ZH.code("programme", "settling_in") == CODES["programme"]["settling_in"][0]
    assert EN.code("event_type", "Grant.Paid") == "Grant paid"
    assert EN.code("bucket", "missing_in_bank") == "Missing in the bank"
    assert ZH.code("programme", "coined_by_someone") == "coined_by_someone"


LINE = {"programme": "settling_in", "kind": "cash", "appropriated": "1000.00"}


def _execution(on: str, monthly: list[str]) -> dict[str, object]:
    months = [
        {"month": f"2024-{m:02d}", "net_paid": amount, "in_kind_value": "0.00"}
        for m, amount in enumerate(monthly, 1)
    ]
    return {
        "year": 2024,
        "on": on,
        "lines": [{**LINE, "months": months}],
        "totals": {"appropriated": "1000.00"},
    }


def test_the_execution_curve_is_cumulative_against_the_days_elapsed() -> None:
    rates = cumulative_rates(_execution("2024-12-31", ["100.00", "0.00", "50.00"] + ["0.00"] * 9))
    assert rates[0] == ("2024-01", Decimal("0.1"), Decimal(31) / 366)
    assert rates[2][1] == Decimal("0.15")
    assert rates[11] == ("2024-12", Decimal("0.15"), Decimal(1))


def test_the_execution_chart_stops_at_the_reports_month() -> None:
    execution = _execution("2024-03-15", ["100.00"] + ["0.00"] * 11)
    svg = execution_chart(execution, cumulative_rates(execution), EN)
    assert svg.count('<circle class="executed"') == 3
    assert '<polyline class="elapsed"' in svg


def test_a_chart_escapes_what_it_is_given() -> None:
    line = {
        **LINE,
        "programme": "<script>",
        "committed": "0",
        "net_paid": "0",
        "in_kind_value": "0",
    }
    svg = bars_chart([(line["programme"], line)], "<title>", ZH)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<title><title>" not in svg


def test_a_session_opens_only_as_sealed_and_only_for_its_hours() -> None:
    sessions = Sessions(b"k" * 32)
    cookie = sessions.seal("tl_secret", now=1_000_000)
    assert "tl_secret" not in cookie
    assert sessions.open(cookie, now=1_000_000 + 3600) == "tl_secret"
    assert sessions.open(cookie, now=1_000_000 + 9 * 3600) is None
    tampered = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    assert sessions.open(tampered, now=1_000_000) is None
    assert Sessions(b"x" * 32).open(cookie, now=1_000_000) is None  # another master key
    assert sessions.open("not base64 at all!", now=1_000_000) is None


def test_a_form_token_holds_only_for_its_browsers_cookies() -> None:
    sessions = Sessions(b"k" * 32)
    token = sessions.token("cookie-a", "session-a")
    assert sessions.token_holds("cookie-a", "session-a", token)
    assert not sessions.token_holds("cookie-b", "session-a", token)
    assert not sessions.token_holds("cookie-a", "session-b", token)  # someone else's session
    assert not sessions.token_holds("cookie-a", None, token)
    assert not sessions.token_holds(None, "session-a", token)
    assert not sessions.token_holds("cookie-a", "session-a", "")
