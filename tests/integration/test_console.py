"""The console over HTTP, without a browser (its pages in one are
`tests/e2e/test_console_browser.py`): sessions, forms, refusals, and the audit bundle
route it downloads."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.integration.scenario import Actors, open_year

Api = Callable[[str | None], TestClient]


def _key(client: TestClient) -> str:
    return client.headers["Authorization"].split()[1]


def _signed_in(api: Api, role: str, base_url: str = "http://testserver") -> TestClient:
    key = _key(api(role))
    browser = api(None)
    browser.base_url = base_url  # type: ignore[assignment]
    form = browser.get("/console/sign-in")
    token = _token(form.text)
    answer = browser.post(
        "/console/sign-in", data={"api_key": key, "csrf": token}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return browser


def _token(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_the_session_cookie_is_secure_over_https_and_holds_no_key_in_clear(api: Api) -> None:
    browser = _signed_in(api, "auditor", "https://testserver")
    cookie = next(c for c in browser.cookies.jar if c.name == "ledger_console")
    assert cookie.secure and cookie.path == "/console"
    assert _key(api("auditor")) not in (cookie.value or "")
    plain = _signed_in(api, "auditor")
    assert not next(c for c in plain.cookies.jar if c.name == "ledger_console").secure
    page = plain.get("/console/fund-years")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_an_unknown_key_signs_nobody_in(api: Api) -> None:
    browser = api(None)
    token = _token(browser.get("/console/sign-in").text)
    answer = browser.post("/console/sign-in", data={"api_key": "tl_nobody", "csrf": token})
    assert answer.status_code == 401
    assert "密钥无效" in answer.text
    assert "ledger_console" not in browser.cookies
    assert browser.get("/console/grants", follow_redirects=False).headers["location"] == (
        "/console/sign-in?next=%2Fconsole%2Fgrants"
    )


def test_the_language_switch_goes_back_only_to_the_console(api: Api) -> None:
    browser = _signed_in(api, "auditor")
    token = _token(browser.get("/console/fund-years").text)
    for target, back in (
        ("/console/talents?status=active", "/console/talents?status=active"),
        ("https://elsewhere.example/console/", "/console/fund-years"),
        ("//elsewhere.example/console/", "/console/fund-years"),
        ("/v1/grants", "/console/fund-years"),
    ):
        answer = browser.post(
            "/console/language",
            data={"csrf": token, "lang": "en", "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == back
    assert '<html lang="en">' in browser.get("/console/fund-years").text


def test_a_refusal_of_the_api_is_shown_as_it_is_and_records_nothing(
    api: Api, count_events: Callable[[], int]
) -> None:
    a = Actors.of(api)
    open_year(a, 2024)
    treasury = _signed_in(api, "treasury")
    token = _token(treasury.get("/console/disbursement-runs").text)
    before = count_events()
    bad_date = treasury.post(
        "/console/disbursement-runs",
        data={"csrf": token, "run_id": "DR-1", "due_on": "31/01/2024", "value_date": "2024-01-31"},
    )
    assert bad_date.status_code == 422
    assert "validation_error" in bad_date.text and "due_on" in bad_date.text
    # a clerk forcing treasury's form is refused by the API, which keeps the evidence
    clerk = _signed_in(api, "clerk")
    token = _token(clerk.get("/console/reconciliations").text)
    forced = clerk.post(
        "/console/reconciliations",
        data={"csrf": token, "format": "csv"},
        files={"file": ("s.csv", b"value_date,bank_reference,amount,direction\r\n")},
    )
    assert forced.status_code == 403
    assert count_events() == before
    refusals = api("auditor").get("/v1/audit/refusals").json()["items"]
    assert [(r["actor"], r["code"], r["path"]) for r in refusals] == [
        ("clerk", "forbidden", "/v1/reconciliations")
    ]


def test_a_form_without_its_token_changes_nothing(
    api: Api, count_events: Callable[[], int]
) -> None:
    auditor = _signed_in(api, "auditor")
    before = count_events()
    answer = auditor.post("/console/checkpoints", data={"csrf": "forged"})
    assert answer.status_code == 403
    assert api("auditor").get("/v1/audit/checkpoints").json()["items"] == []
    assert count_events() == before


def test_the_bundle_route_answers_what_ledger_audit_bundle_writes(api: Api) -> None:
    a = Actors.of(api)
    auditor = api("auditor")
    assert auditor.get("/v1/audit/bundle.zip").status_code == 404
    open_year(a, 2024)
    signed = auditor.post("/v1/audit/checkpoints", json={}).json()
    answer = api("clerk").get("/v1/audit/bundle.zip", params={"fund_year": 2024})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["ledger-position"] == str(signed["head_position"])
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        assert bundle.read("checkpoint.note").decode() == signed["note"]
        events = bundle.read("events.jsonl").decode().splitlines()
        assert len(events) == signed["tree_size"]
        assert json.loads(bundle.read("fund-year.json"))["year"] == 2024
    assert auditor.get("/v1/audit/bundle.zip", params={"checkpoint_id": 9}).status_code == 404


def test_only_the_apis_files_are_fetched_through_the_console(api: Api) -> None:
    auditor = _signed_in(api, "auditor")
    grants = auditor.get("/console/files/v1/exports/grants.csv", params={"lang": "en"})
    assert grants.status_code == 200 and grants.text.startswith("Grant ID,")
    assert "default-src 'none'" in grants.headers["content-security-policy"]
    for path in (
        "v1/keys",
        "v1/exports/../keys",
        "v1/exports/%2e%2e/keys",
        "v1/disbursement-runs/%3F",
        "v1/disbursement-runs/R-1/items",
        "v1/audit/verify",
    ):
        answer = auditor.get("/console/files/" + path)
        assert answer.status_code == 404, path
        assert "text/html" in answer.headers["content-type"], path


def test_a_sign_in_goes_back_to_the_page_asked_for_and_only_within_the_console(
    api: Api,
) -> None:
    key = _key(api("auditor"))
    for asked, lands in (
        ("/console/talents?status=active", "/console/talents?status=active"),
        ("https://elsewhere.example/", "/console/fund-years"),
    ):
        browser = api(None)
        form = browser.get("/console/sign-in", params={"next": asked})
        answer = browser.post(
            "/console/sign-in",
            data={"api_key": key, "csrf": _token(form.text), "next": asked},
            follow_redirects=False,
        )
        assert answer.headers["location"] == lands


def test_a_token_taken_from_a_page_of_ones_own_is_refused_in_a_signed_in_browser(
    api: Api,
) -> None:
    attacker = api(None)
    planted = _token(attacker.get("/console/sign-in").text)
    csrf_cookie = attacker.cookies["ledger_console_csrf"]
    victim = _signed_in(api, "auditor")
    victim.cookies.set("ledger_console_csrf", csrf_cookie, path="/console")
    answer = victim.post("/console/checkpoints", data={"csrf": planted})
    assert answer.status_code == 403
    assert "表单已过期" in answer.text
