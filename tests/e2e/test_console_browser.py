"""The console in a real browser (CONTRACT §16): Debian's Chromium driven by Playwright
against a real `ledger serve --demo`, signed in as each role.

`make test` installs Chromium if it is missing (`make browser`: `apt-get install
chromium fonts-wqy-microhei`); axe-core is vendored in `tests/e2e/axe`. With
`LEDGER_RECORD_SCREENSHOTS=1` (`make screenshots`), each page is also saved per language
into `docs/console/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from ledger.entrypoints.runtime import Settings
from tests.conftest import new_database
from tests.e2e.conftest import ROOT, Server, environment, run_ledger

CHROMIUM = "/usr/lib/chromium/chromium"
AXE = ROOT / "tests" / "e2e" / "axe" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "console"
RECORD = os.environ.get("LEDGER_RECORD_SCREENSHOTS") == "1"
# the business date, as the demo server has it (from 16:00 UTC Shanghai is a day ahead)
TODAY = Settings(database_url=None, data_dir=Path()).today().isoformat()

STATUS_REPORT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>
<GrpHdr><MsgId>STS-{run}</MsgId><CreDtTm>2026-01-31T18:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>{run}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>
</OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>{run}</OrgnlPmtInfId>
<TxInfAndSts><OrgnlEndToEndId>{run}-1</OrgnlEndToEndId><TxSts>ACSC</TxSts>
<AcctSvcrRef>{reference}</AcctSvcrRef></TxInfAndSts>
</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>
"""


def _statement(reference: str, amount: str) -> bytes:
    return (
        "value_date,bank_reference,amount,direction,counterparty\r\n"
        f"{TODAY},{reference},{amount},debit,陈晨\r\n"
    ).encode()


class Demo:
    """The demo ledger behind one `ledger serve --demo`, its keys, and what a test added."""

    def __init__(self, server: Server, env: dict[str, str], keys: dict[str, str]) -> None:
        self.server = server
        self.env = env
        self.url = server.url
        self.keys = keys

    def api(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}", **kw.pop("headers", {})}
        answer = httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)
        assert answer.status_code < 300, answer.text
        return answer


@pytest.fixture(scope="module")
def demo(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`ledger serve --demo` on a database of this module's, with a year of 2026 added:
    a talent with a bank account, two approved grants due today, one paid in run DR-C1
    (settled from a pain.002), its bank statement reconciled, a checkpoint signed."""
    tmp = tmp_path_factory.mktemp("console")
    with new_database(server_url) as url:
        env = environment(url, tmp / "var")
        server = Server(env, tmp / "server.log", "--demo")
        try:
            keys = dict(
                line.split("=", 1) for line in (tmp / "var" / "demo-keys.sh").read_text().split()
            )
            world = Demo(server, env, {role.lower(): key for role, key in keys.items()})
            _add_2026(world)
            yield world
        finally:
            server.stop()


def _add_2026(d: Demo) -> None:
    d.api("admin", "POST", "/v1/fund-years", json={"year": 2026, "currency": "CNY"})
    for n, programme in enumerate(("project_support", "rent_subsidy"), 1):
        d.api(
            "admin",
            "POST",
            "/v1/fund-years/2026/appropriations",
            json={
                "appropriation_id": f"A-C{n}",
                "programme": programme,
                "kind": "cash",
                "amount": "100000",
                "reference": "嘉财预〔2026〕9号",
            },
        )
    d.api(
        "clerk",
        "POST",
        "/v1/talents",
        json={
            "talent_id": "T-C1",
            "name": "陈晨",
            "category": "doctorate",
            "employer": "嘉兴学院",
            "arrived_on": "2026-01-05",
            "service_commitment_until": "2031-01-04",
            "bank_account": "6222020200112233",
        },
    )
    for grant_id, programme, amount in (
        ("G-C1", "project_support", "5000.00"),
        ("G-C2", "rent_subsidy", "3000.00"),
    ):
        d.api(
            "clerk",
            "POST",
            "/v1/grants",
            json={
                "grant_id": grant_id,
                "talent_id": "T-C1",
                "fund_year": 2026,
                "programme": programme,
                "amount": amount,
                "policy_reference": "嘉人才〔2021〕2号",
                "reason": "控制台测试",
            },
        )
        d.api("approver", "POST", f"/v1/grants/{grant_id}/approve", json={})
    run = {"run_id": "DR-C1", "due_on": TODAY, "value_date": TODAY, "programme": "project_support"}
    d.api("treasury", "POST", "/v1/disbursement-runs", json=run)
    d.api(
        "treasury",
        "POST",
        "/v1/disbursement-runs/DR-C1/settle",
        content=STATUS_REPORT.format(run="DR-C1", reference="BKC1").encode(),
        headers={"Content-Type": "application/xml"},
    )
    d.api(
        "treasury",
        "POST",
        "/v1/reconciliations",
        content=_statement("BKC1", "5000.00"),
        headers={"Content-Type": "text/csv"},
    )
    d.api("auditor", "POST", "/v1/audit/checkpoints", json={})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        yield _launch(playwright)


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # axe is injected as a script: the console's own policy allows none
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def sign_in(context: BrowserContext, demo: Demo, role: str) -> Page:
    page = context.new_page()
    page.goto(demo.url + "/console/")
    assert page.url.endswith("/console/sign-in?next=%2Fconsole%2Ffund-years")
    page.get_by_label("API 密钥").fill(demo.keys[role])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/console/fund-years")
    return page


def axe_violations(page: Page) -> list[str]:
    """The serious and critical accessibility violations axe-core finds on the page."""
    if "axe" not in page.evaluate("Object.keys(window)"):
        source = AXE.read_bytes()
        digest = (AXE.parent / "SHA256SUMS").read_text().split()[0]
        assert hashlib.sha256(source).hexdigest() == digest
        page.add_script_tag(content=source.decode())
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def checked(page: Page, name: str) -> None:
    """No serious or critical violation on the page; its screenshot when recording."""
    assert axe_violations(page) == [], name
    if RECORD:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def pages_of(demo: Demo) -> list[tuple[str, str]]:
    """Every page of §16, with ids from the demo and from the 2026 the fixture added."""
    talent = demo.api("auditor", "GET", "/v1/talents", params={"limit": 1}).json()["items"][0]
    reconciliation = demo.api("auditor", "GET", "/v1/reconciliations").json()["items"][0]
    return [
        ("fund-years", "/console/fund-years"),
        ("fund-year", "/console/fund-years/2023"),
        ("talents", "/console/talents"),
        ("talent", f"/console/talents/{talent['talent_id']}"),
        ("grants", "/console/grants?fund_year=2023"),
        ("grant", "/console/grants/G-C1"),
        ("payments", "/console/payments?fund_year=2026"),
        ("payment", "/console/payments/DR-C1-1"),
        ("exceptions", "/console/exceptions"),
        ("reconciliations", "/console/reconciliations"),
        ("reconciliation", f"/console/reconciliations/{reconciliation['reconciliation_id']}"),
        ("disbursement-runs", "/console/disbursement-runs"),
        ("disbursement-run", "/console/disbursement-runs/DR-C1"),
        ("checkpoints", "/console/checkpoints"),
    ]


def test_a_newcomer_finds_the_demos_net_paid_with_the_printed_auditor_key(
    demo: Demo, context: BrowserContext
) -> None:
    printed = demo.server.log.read_text()
    assert re.search(r"the console: http://127\.0\.0\.1:\d+/console/", printed)
    auditor = re.search(r"auditor: (\S+)", printed)
    assert auditor is not None and auditor.group(1) == demo.keys["auditor"]
    first = context.new_page()
    first.goto(demo.url + "/console/")
    checked(first, "sign-in-zh")
    page = sign_in(context, demo, "auditor")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    # the demo's settling-in allowances and rent subsidies over 2019-2023, summed on screen
    page.get_by_label("选择: 安家补贴").check()
    page.get_by_label("选择: 租房补贴").check()
    page.get_by_role("button", name="合计所选项目").click()
    assert page.locator("#ticked [data-field=net_paid]").inner_text() == "¥3,030,000.00"
    assert page.locator("#net-paid-all").inner_text() == "¥11,035,000.00"  # 2026's 5,000 too
    if RECORD:
        page.screenshot(path=str(SCREENSHOTS / "fund-years-ticked-zh.png"), full_page=True)


def test_every_page_in_both_languages_draws_and_has_no_serious_accessibility_fault(
    demo: Demo, context: BrowserContext
) -> None:
    page = sign_in(context, demo, "auditor")
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(demo.url) else outside.append(r.url),
    )
    for lang, switch in (("zh", "English"), ("en", "中文")):
        for name, path in pages_of(demo):
            answer = page.goto(demo.url + path)
            assert answer is not None and answer.status == 200, (path, answer)
            csp = answer.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "http" not in csp
            assert page.locator("h1").count() == 1
            checked(page, f"{name}-{lang}")
        page.get_by_role("button", name=re.compile(switch)).click()
    assert page.locator("html").get_attribute("lang") == "zh-CN"  # switched twice
    assert outside == []


def test_the_fund_years_charts_draw_their_figures(demo: Demo, context: BrowserContext) -> None:
    page = sign_in(context, demo, "auditor")
    page.goto(demo.url + "/console/fund-years/2023?on=2023-12-31")
    bars = page.locator("svg.chart rect.bar[data-value]")
    values = [bars.nth(i).get_attribute("data-value") for i in range(bars.count())]
    lines = demo.api("auditor", "GET", "/v1/fund-years/2023").json()["lines"]
    assert len(values) == 3 * len(lines)
    assert values[0] == lines[0]["appropriated"]
    assert all(bars.nth(i).bounding_box()["height"] > 0 for i in range(3))  # type: ignore[index]
    points = page.locator("svg.chart circle.executed")
    assert points.count() == 12
    rate = demo.api(
        "auditor", "GET", "/v1/fund-years/2023/execution", params={"on": "2023-12-31"}
    ).json()["totals"]["execution_rate"]
    assert abs(float(points.nth(11).get_attribute("data-value") or 0) - float(rate)) < 0.0001
    assert page.locator("svg.chart polyline.elapsed").bounding_box() is not None
    assert page.locator("#execution-rate").inner_text() == f"{float(rate) * 100:.2f}%"


def test_treasury_runs_a_disbursement_and_reconciles_its_statement(
    demo: Demo, context: BrowserContext
) -> None:
    page = sign_in(context, demo, "treasury")
    page.goto(demo.url + "/console/disbursement-runs")
    checked(page, "disbursement-runs-treasury-zh")  # with the form to prepare a run
    form = page.locator("form", has_text="生成代发批次")
    form.get_by_label("批次编号").fill("DR-C2")
    form.get_by_label("应付日期").fill(TODAY)
    form.get_by_label("起息日").fill(TODAY)
    form.get_by_label("项目").select_option("rent_subsidy")
    form.get_by_role("button", name="生成").click()
    page.wait_for_url("**/console/disbursement-runs/DR-C2*")
    assert page.locator("#run-status").inner_text() == "已生成"
    checked(page, "disbursement-run-treasury-zh")  # with the file and the upload
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("pain.001")).click()
    payment_file = Path(download.value.path()).read_text()
    assert "<EndToEndId>DR-C2-1</EndToEndId>" in payment_file
    assert "3000.00" in payment_file
    page.locator("input[name=file]").set_input_files(
        files=[
            {
                "name": "DR-C2.pain.002.xml",
                "mimeType": "application/xml",
                "buffer": STATUS_REPORT.format(run="DR-C2", reference="BKC2").encode(),
            }
        ]
    )
    page.get_by_role("button", name="结算").click()
    page.wait_for_url("**/console/disbursement-runs/DR-C2*")
    assert page.locator("#run-status").inner_text() == "已结算"
    assert demo.api("auditor", "GET", "/v1/payments/DR-C2-1").json()["bank_reference"] == "BKC2"

    page.goto(demo.url + "/console/reconciliations")
    checked(page, "reconciliations-treasury-zh")  # with the upload
    page.get_by_label("格式").select_option("csv")
    page.locator("input[name=file]").set_input_files(
        files=[
            {
                "name": "statement.csv",
                "mimeType": "text/csv",
                "buffer": _statement("BKC2", "3000.00"),
            }
        ]
    )
    page.get_by_role("button", name="上传").click()
    page.wait_for_url("**/console/reconciliations/R-*")
    assert page.locator("[data-bucket=matched]").inner_text() == "1"
    assert page.locator("[data-bucket=unknown_in_ledger]").inner_text() == "0"
    assert page.get_by_role("link", name="DR-C2-1").count() == 1


def test_an_auditor_signs_a_checkpoint_downloads_a_bundle_and_sees_what_it_covers(
    demo: Demo, context: BrowserContext
) -> None:
    body = {
        "grant_id": "G-C3",
        "talent_id": "T-C1",
        "fund_year": 2026,
        "programme": "rent_subsidy",
        "amount": "100.00",
        "policy_reference": "嘉人才〔2021〕2号",
        "reason": "控制台测试",
    }
    demo.api("clerk", "POST", "/v1/grants", json=body)  # an event no checkpoint covers yet
    page = sign_in(context, demo, "auditor")
    page.goto(demo.url + "/console/grants/G-C3")
    before = page.locator("td[data-covered]")
    assert before.count() == 1 and before.get_attribute("data-covered") == "no"
    page.goto(demo.url + "/console/checkpoints")
    page.get_by_role("button", name="签署检查点").click()
    page.wait_for_url("**/console/checkpoints*")
    with page.expect_download() as download:
        page.get_by_role("link", name="下载审计包").first.click()
    with zipfile.ZipFile(download.value.path()) as bundle:
        assert {"events.jsonl", "checkpoint.note", "public-key", "manifest.json"} <= set(
            bundle.namelist()
        )
    page.goto(demo.url + "/console/grants/G-C3")
    covered = page.locator("td[data-covered]")
    assert {covered.nth(i).get_attribute("data-covered") for i in range(covered.count())} == {"yes"}
    page.goto(demo.url + "/console/checkpoints?verify=1")
    assert page.locator("#verification").inner_text().startswith("验证通过")


def test_each_role_sees_what_the_api_allows_it_and_nothing_more(
    demo: Demo, browser: Browser
) -> None:
    for role in ("admin", "clerk", "approver", "treasury", "auditor"):
        context = browser.new_context(bypass_csp=True)
        page = sign_in(context, demo, role)
        page.goto(demo.url + "/console/reconciliations")
        upload = page.locator("form[method=post][action='/console/reconciliations']").count()
        assert upload == (1 if role == "treasury" else 0), role
        page.goto(demo.url + "/console/checkpoints")
        sign = page.get_by_role("button", name="签署检查点").count()
        assert sign == (1 if role in ("admin", "auditor") else 0), role
        page.goto(demo.url + "/console/disbursement-runs/DR-C1")
        offered = page.get_by_role("link", name=re.compile("pain.001")).count()
        assert offered == (1 if role == "treasury" else 0), role
        # asked for all the same (the browser's cookies, not the page's links), the API says no
        path = "/console/files/v1/disbursement-runs/DR-C1/pain.001.xml"
        answer = context.request.get(demo.url + path)
        assert answer.status == (200 if role == "treasury" else 403), role
        if role != "treasury":
            assert "您的角色不能查看或执行此操作" in answer.text()
        if role == "auditor":
            page.goto(demo.url + path)
            checked(page, "refused-zh")
        context.close()


def test_a_session_is_an_httponly_strict_cookie_that_sign_out_and_revocation_end(
    demo: Demo, context: BrowserContext
) -> None:
    key = run_ledger(
        demo.env,
        "keys",
        "create",
        "--actor",
        "test-admin",
        "--name",
        "console-short",
        "--role",
        "auditor",
    )
    assert key.returncode == 0, key.stderr
    demo.keys["short"] = key.stdout.strip().splitlines()[-1]
    page = sign_in(context, demo, "short")
    session = next(c for c in context.cookies() if c["name"] == "ledger_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert demo.keys["short"] not in session["value"]  # sealed, not the key in clear
    assert page.evaluate("document.cookie") == ""  # no script reads any console cookie
    demo.api("admin", "POST", "/v1/keys/console-short/revoke", json={})
    page.wait_for_timeout(2000)
    page.goto(demo.url + "/console/talents?status=active")
    assert page.url.endswith("/console/sign-in?ended=1&next=%2Fconsole%2Ftalents%3Fstatus%3Dactive")
    assert "会话已结束" in page.content()

    page = sign_in(context, demo, "auditor")
    page.get_by_role("button", name="退出").click()
    page.wait_for_url("**/console/sign-in")
    page.goto(demo.url + "/console/talents?status=active")
    assert "/console/sign-in?next=" in page.url
    # signing in again lands on the page asked for, not the first one
    page.get_by_label("API 密钥").fill(demo.keys["auditor"])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/console/talents?status=active")


def test_the_browser_runs_no_script_the_page_did_not_come_with(
    demo: Demo, browser: Browser
) -> None:
    context = browser.new_context()  # the console's policy as served, not bypassed
    page = context.new_page()
    page.goto(demo.url + "/console/sign-in")
    with pytest.raises(PlaywrightError, match="Content Security Policy"):
        page.add_script_tag(content="document.title = 'injected'")
    assert page.title() != "injected"
    context.close()


def test_a_form_posted_from_elsewhere_is_refused(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url) as client:
        form = client.get("/console/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        # a page of another site can post the form, but has no token for this browser
        refused = client.post("/console/sign-in", data={"api_key": demo.keys["auditor"]})
        assert refused.status_code == 403
        planted = httpx.post(
            demo.url + "/console/sign-in",
            data={"api_key": demo.keys["auditor"], "csrf": token.group(1)},
            cookies={"ledger_console_csrf": "planted"},
        )
        assert planted.status_code == 403
        signed = client.post(
            "/console/sign-in", data={"api_key": demo.keys["auditor"], "csrf": token.group(1)}
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console/fund-years"
