"""The console's pages (CONTRACT §16): what a page shows is what the API answers the
signed-in key (`api.console.client`), rendered with Jinja2 templates in the user's
language. No page decides who may see or do what: a refusal of the API is shown as it
is, and an action the roles do not allow is not offered (nor would the API take it).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.console import charts
from api.console.client import Api, ApiRefused
from api.console.session import (
    CSRF_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    Sessions,
    new_csrf_cookie,
)
from api.console.words import Words
from api.routing import add_routes
from ledger.adapters.api_keys import KeyCache
from ledger.domain.context import request_id_cvar
from ledger.domain.roles import Principal
from ledger.domain.vocabulary import LANGS, Lang

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")

#: nothing from outside the service, no script at all, no framing, forms only to itself
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: a statement's format, as the console offers it -> the media type the API reads it as
STATEMENT_FORMATS = {
    "csv": "text/csv",
    "cn-bank": "text/csv; profile=cn-bank",
    "camt.053": "application/xml",
    "mt940": "text/plain",
}
#: the API's files a page links to, downloaded through the console (the key stays in
#: the session cookie: a link cannot carry it); these routes and no other
FILES = re.compile(
    r"v1/exports/[a-z-]+\.(csv|xlsx)|v1/audit/bundle\.zip"
    r"|v1/disbursement-runs/[A-Za-z0-9][A-Za-z0-9._:-]{0,63}/pain\.001\.xml"
)
PAGE_SIZE = 50


class SignedOut(Exception):
    """No session, or one whose key no longer authenticates."""

    def __init__(self, ended: bool) -> None:
        super().__init__("signed out")
        self.ended = ended

    def sign_in(self, request: Request) -> RedirectResponse:
        """To the sign-in page, and after it back to the page asked for."""
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        wanted = asked if request.method == "GET" else None
        return _redirect(_url("/console/sign-in", ended=1 if self.ended else None, next=wanted))


class FormRefused(Exception):
    """A form without a valid CSRF token."""


def _lang(request: Request) -> Lang:
    chosen = request.cookies.get(LANG_COOKIE)
    return next((lang for lang in LANGS if lang == chosen), "zh")


def _words(request: Request) -> Words:
    return Words(_lang(request), request.app.state.settings.timezone)


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("words", _words(request))
    context.setdefault("visit", None)
    token = _sessions(request).token(request.state.csrf, request.cookies.get(SESSION_COOKIE))
    return TEMPLATES.TemplateResponse(
        request, template, {"csrf": token, "status": status, **context}, status_code=status
    )


def _url(path: str, **params: Any) -> str:
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(given) if given else "")


def _console_page(asked: str | None) -> str:
    """`asked` if it is a page of the console, else the first page: never elsewhere."""
    parts = urlsplit(asked or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return "/console/fund-years"
    return asked or "/console/fund-years"


def _cookie(response: Response, request: Request, name: str, value: str, **kw: Any) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=secure, path="/console", **kw
    )


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class ConsoleRoute(APIRoute):
    """A console page: security headers on every answer, a CSRF cookie for its forms,
    a sign-in page for a visitor without a session, and the API's refusals as pages."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            given = request.cookies.get(CSRF_COOKIE)
            request.state.csrf = given or new_csrf_cookie()
            try:
                response = await handler(request)
            except SignedOut as out:
                response = out.sign_in(request)
                response.delete_cookie(SESSION_COOKIE, path="/console")
            except ApiRefused as refused:
                if refused.status == 401:  # revoked or expired since signing in
                    response = SignedOut(ended=True).sign_in(request)
                    response.delete_cookie(SESSION_COOKIE, path="/console")
                else:
                    response = _render(
                        request,
                        "error.html",
                        refused.status,
                        visit=getattr(request.state, "visit", None),
                        problem=refused.problem,
                    )
            except FormRefused:
                words = _words(request)
                problem = {"title": words.word("form_expired"), "code": "forbidden"}
                response = _render(request, "error.html", 403, problem=problem)
            if given is None:
                _cookie(response, request, CSRF_COOKIE, request.state.csrf)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@dataclass
class Visit:
    """A signed-in user's request: who, in which language, and the API as they see it."""

    request: Request
    principal: Principal
    words: Words
    api: Api

    def may(self, method: str, path: str) -> bool:
        """Whether to offer an action: the roles the API's route declares (`x-roles`, as
        its OpenAPI document gives them) allow it to this key. The API checks again."""
        operation = self.request.app.openapi()["paths"][path][method.lower()]
        return bool(self.principal.roles & set(operation["x-roles"]))

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A read, waiting for the position a write of this user answered (if any)."""
        wait = self.request.query_params.get("min_position")
        return await self.api.get(path, {"min_position": wait, **(params or {})})

    def render(self, template: str, **context: Any) -> HTMLResponse:
        return _render(self.request, template, words=self.words, visit=self, **context)

    url = staticmethod(_url)


async def _visit(request: Request) -> AsyncIterator[Visit]:
    key = _sessions(request).open(request.cookies.get(SESSION_COOKIE))
    if key is None:
        raise SignedOut(ended=SESSION_COOKIE in request.cookies)
    keys: KeyCache = request.app.state.keys
    principal = keys.known(key) or await run_in_threadpool(keys.authenticate, key)
    if principal is None:
        raise SignedOut(ended=True)
    request.state.principal = principal  # the request's log line names its actor
    async with Api(request.app, key, request_id_cvar.get()) as api:
        visit = request.state.visit = Visit(request, principal, _words(request), api)
        yield visit


VisitDep = Annotated[Visit, Depends(_visit)]


Form = dict[str, str | bytes]


async def _form(request: Request) -> Form:
    """A posted form's fields (a file's as its bytes), once its token holds."""
    async with request.form() as form:
        token = form.get("csrf")
        cookies = request.cookies
        if not isinstance(token, str) or not _sessions(request).token_holds(
            cookies.get(CSRF_COOKIE), cookies.get(SESSION_COOKIE), token
        ):
            raise FormRefused
        return {
            name: await value.read() if isinstance(value, UploadFile) else value
            for name, value in form.multi_items()
        }


def _text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _file(form: Form, name: str) -> bytes:
    value = form.get(name)
    return value if isinstance(value, bytes) else b""


def _query(request: Request, *names: str) -> dict[str, str]:
    return {n: request.query_params[n] for n in names if request.query_params.get(n)}


# --- signing in and out, the language --------------------------------------------------


@router.get("/")
async def home() -> Response:
    return _redirect("/console/fund-years")


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    message = "session_ended" if request.query_params.get("ended") else None
    asked = _console_page(request.query_params.get("next"))
    return _render(request, "sign_in.html", message=message, next=asked)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    key = _text(form, "api_key")
    keys: KeyCache = request.app.state.keys
    principal = await run_in_threadpool(keys.authenticate, key) if key else None
    asked = _console_page(_text(form, "next"))
    if principal is None:
        return _render(request, "sign_in.html", 401, message="bad_key", next=asked)
    response = _redirect(asked)
    _cookie(response, request, SESSION_COOKIE, _sessions(request).seal(key))
    _cookie(response, request, CSRF_COOKIE, new_csrf_cookie())  # a new pair per session
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await _form(request)
    response = _redirect("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@router.post("/language")
async def language(request: Request) -> Response:
    form = await _form(request)
    lang = _text(form, "lang")
    response = _redirect(_console_page(_text(form, "next")))
    if lang in LANGS:
        _cookie(response, request, LANG_COOKIE, lang, max_age=365 * 24 * 3600)
    return response


# --- fund years ------------------------------------------------------------------------


def _sum(items: list[dict[str, Any]], field: str) -> Decimal:
    return sum((Decimal(item[field]) for item in items), Decimal(0))


@router.get("/fund-years")
async def fund_years(visit: VisitDep) -> Response:
    """The fund years, and their lines summed by programme over all years; the
    programmes a user ticks are summed too (say, the cash paid to talents themselves)."""
    chosen = _query(visit.request, "status")
    listed = await visit.api.all_items("/v1/fund-years", chosen)
    years = sorted(listed, key=lambda y: y["year"])
    fields = ("appropriated", "committed", "net_paid", "in_kind_value", "available")
    totals = {f: _sum([y["totals"] for y in years], f) for f in fields}
    programmes: dict[tuple[str, str], dict[str, Decimal]] = {}
    for year in years:
        for line in year["lines"]:
            sums = programmes.setdefault(
                (line["programme"], line["kind"]), dict.fromkeys(fields, Decimal(0))
            )
            for f in fields:
                sums[f] += Decimal(line[f])
    ticked = set(visit.request.query_params.getlist("programme"))
    ticked_sums = [sums for (programme, _), sums in programmes.items() if programme in ticked]
    return visit.render(
        "fund_years.html",
        years=years,
        years_chart=charts.bars_chart(
            [(str(y["year"]), y["totals"]) for y in years],
            visit.words.word("years_chart"),
            visit.words,
        ),
        totals=totals,
        programmes=sorted(programmes.items()),
        ticked=ticked,
        ticked_totals={f: _sum(ticked_sums, f) for f in fields} if ticked_sums else None,
        chosen=chosen,
        fields=fields,
    )


@router.get("/fund-years/{year}")
async def fund_year(visit: VisitDep, year: str) -> Response:  # the API judges it
    on = visit.request.query_params.get("on")
    found, execution, year_end = await asyncio.gather(
        visit.get(f"/v1/fund-years/{year}"),
        visit.get(f"/v1/fund-years/{year}/execution", {"on": on}),
        visit.get(f"/v1/fund-years/{year}/year-end"),
    )
    cumulative = charts.cumulative_rates(execution)
    return visit.render(
        "fund_year.html",
        year=found,
        execution=execution,
        year_end=year_end,
        lines_chart=charts.bars_chart(
            [(visit.words.code("programme", line["programme"]), line) for line in found["lines"]],
            visit.words.word("lines_chart"),
            visit.words,
        ),
        execution_chart=charts.execution_chart(execution, cumulative, visit.words),
        cumulative=cumulative,
    )


# --- lists -----------------------------------------------------------------------------

#: a list page -> the API's list and the filters it takes (CONTRACT §9)
LISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "talents": (
        "/v1/talents",
        ("category", "employer", "status", "arrived_from", "arrived_to"),
    ),
    "grants": ("/v1/grants", ("fund_year", "programme", "talent_id", "status")),
    "payments": (
        "/v1/payments",
        (
            "fund_year",
            "programme",
            "talent_id",
            "grant_id",
            "status",
            "value_date_from",
            "value_date_to",
        ),
    ),
    "reconciliations": ("/v1/reconciliations", ("value_date_from", "value_date_to")),
    "disbursement-runs": ("/v1/disbursement-runs", ("fund_year", "status")),
    "checkpoints": ("/v1/audit/checkpoints", ()),
}


async def _list_page(visit: Visit, name: str, **context: Any) -> Response:
    """A page of a list, with its filters as the user chose them and links to the next
    page and back to the first."""
    path, filters = LISTS[name]
    chosen = _query(visit.request, *filters)
    after = visit.request.query_params.get("after")
    page = await visit.get(path, {**chosen, "after": after, "limit": PAGE_SIZE})
    base = f"/console/{name}"
    return visit.render(
        f"{name}.html",
        items=page["items"],
        filters=filters,
        chosen=chosen,
        next_url=visit.url(base, **chosen, after=page["next"]) if page["next"] else None,
        first_url=visit.url(base, **chosen) if after else None,
        **context,
    )


def _after_write(visit: Visit, path: str, answer: httpx.Response) -> Response:
    """To the page of what a write made, which waits for the read models to show it."""
    return _redirect(visit.url(path, min_position=answer.headers.get("ledger-position")))


@router.get("/talents")
async def talents(visit: VisitDep) -> Response:
    return await _list_page(visit, "talents")


@router.get("/grants")
async def grants(visit: VisitDep) -> Response:
    return await _list_page(visit, "grants")


@router.get("/payments")
async def payments(visit: VisitDep) -> Response:
    return await _list_page(visit, "payments")


# --- a talent, a grant, a payment ------------------------------------------------------


async def _latest_checkpoint(visit: Visit) -> dict[str, Any] | None:
    try:
        latest: dict[str, Any] = await visit.get("/v1/audit/checkpoints/latest")
    except ApiRefused as refused:
        if refused.status == 404:  # none signed yet
            return None
        raise
    return latest


@router.get("/talents/{talent_id}")
async def talent(visit: VisitDep, talent_id: str) -> Response:
    found, history, grants, latest = await asyncio.gather(
        visit.get(f"/v1/talents/{talent_id}"),
        visit.api.all_items(f"/v1/talents/{talent_id}/history"),
        visit.api.all_items("/v1/grants", {"talent_id": talent_id}),
        _latest_checkpoint(visit),
    )
    return visit.render(
        "talent.html", talent=found, history=history, grants=grants, checkpoint=latest
    )


async def _events(visit: Visit, talent_id: str, field: str, value: str) -> list[dict[str, Any]]:
    """The audit-trail entries of one grant or payment (from its talent's history)."""
    history = await visit.api.all_items(f"/v1/talents/{talent_id}/history")
    return [entry for entry in history if entry[field] == value]


@router.get("/grants/{grant_id}")
async def grant(visit: VisitDep, grant_id: str) -> Response:
    found = await visit.get(f"/v1/grants/{grant_id}")
    events, paid, latest = await asyncio.gather(
        _events(visit, found["talent_id"], "grant_id", grant_id),
        visit.api.all_items("/v1/payments", {"grant_id": grant_id}),
        _latest_checkpoint(visit),
    )
    return visit.render("grant.html", grant=found, events=events, payments=paid, checkpoint=latest)


@router.get("/payments/{payment_id}")
async def payment(visit: VisitDep, payment_id: str) -> Response:
    found = await visit.get(f"/v1/payments/{payment_id}")
    events, latest = await asyncio.gather(
        _events(visit, found["talent_id"], "payment_id", payment_id), _latest_checkpoint(visit)
    )
    return visit.render("payment.html", payment=found, events=events, checkpoint=latest)


# --- exceptions, reconciliations, disbursement runs ------------------------------------


@router.get("/exceptions")
async def exceptions(visit: VisitDep) -> Response:
    chosen = _query(visit.request, "fund_year", "on")
    report = await visit.get("/v1/reports/exceptions", chosen)
    return visit.render("exceptions.html", report=report, chosen=chosen)


@router.get("/reconciliations")
async def reconciliations(visit: VisitDep) -> Response:
    return await _list_page(visit, "reconciliations", formats=STATEMENT_FORMATS)


@router.post("/reconciliations")
async def upload_statement(visit: VisitDep) -> Response:
    form = await _form(visit.request)
    media_type = STATEMENT_FORMATS.get(_text(form, "format"), "application/octet-stream")
    answer = await visit.api.post("/v1/reconciliations", _file(form, "file"), media_type)
    report = answer.json()
    return _after_write(visit, f"/console/reconciliations/{report['reconciliation_id']}", answer)


@router.get("/reconciliations/{reconciliation_id}")
async def reconciliation(visit: VisitDep, reconciliation_id: str) -> Response:
    report = await visit.get(f"/v1/reconciliations/{reconciliation_id}")
    return visit.render("reconciliation.html", report=report)


@router.get("/disbursement-runs")
async def disbursement_runs(visit: VisitDep) -> Response:
    return await _list_page(visit, "disbursement-runs")


@router.post("/disbursement-runs")
async def prepare_run(visit: VisitDep) -> Response:
    form = await _form(visit.request)
    body: dict[str, Any] = {
        name: _text(form, name) for name in ("run_id", "due_on", "value_date", "programme")
    }
    year = _text(form, "fund_year")
    body["fund_year"] = int(year) if year.isdigit() else year  # else the API refuses it
    body = {k: v for k, v in body.items() if v not in ("", None)}
    answer = await visit.api.post(
        "/v1/disbursement-runs", json.dumps(body).encode(), "application/json"
    )
    return _after_write(visit, f"/console/disbursement-runs/{answer.json()['run_id']}", answer)


@router.get("/disbursement-runs/{run_id}")
async def disbursement_run(visit: VisitDep, run_id: str) -> Response:
    after = visit.request.query_params.get("after")
    run, items = await asyncio.gather(
        visit.get(f"/v1/disbursement-runs/{run_id}"),
        visit.get(f"/v1/disbursement-runs/{run_id}/items", {"after": after, "limit": PAGE_SIZE}),
    )
    return visit.render(
        "run.html",
        run=run,
        items=items["items"],
        next_url=visit.url(f"/console/disbursement-runs/{run_id}", after=items["next"])
        if items["next"]
        else None,
        first_url=visit.url(f"/console/disbursement-runs/{run_id}") if after else None,
    )


@router.post("/disbursement-runs/{run_id}/settle")
async def settle_run(visit: VisitDep, run_id: str) -> Response:
    form = await _form(visit.request)
    answer = await visit.api.post(
        f"/v1/disbursement-runs/{run_id}/settle", _file(form, "file"), "application/xml"
    )
    return _after_write(visit, f"/console/disbursement-runs/{run_id}", answer)


# --- checkpoints and files -------------------------------------------------------------


@router.get("/checkpoints")
async def checkpoints(visit: VisitDep) -> Response:
    verify = visit.request.query_params.get("verify")
    verification = await visit.get("/v1/audit/verify") if verify else None
    return await _list_page(visit, "checkpoints", verification=verification)


@router.post("/checkpoints")
async def sign_checkpoint(visit: VisitDep) -> Response:
    await _form(visit.request)
    answer = await visit.api.post("/v1/audit/checkpoints", b"{}", "application/json")
    return _after_write(visit, "/console/checkpoints", answer)


@router.get("/files/{path:path}")
async def download(visit: VisitDep, path: str) -> Response:
    """A file of the API (an export, a payment file, a bundle), fetched with the
    session's key."""
    if not FILES.fullmatch(path):
        raise ApiRefused(404, {"title": "Not Found", "detail": "no such file"})
    answer = await visit.api.call("GET", "/" + path, dict(visit.request.query_params))
    passed = ("content-type", "content-disposition", "ledger-position")
    return Response(
        answer.content, headers={k: answer.headers[k] for k in passed if k in answer.headers}
    )


def install(app: FastAPI) -> None:
    """Serve the console at `/console/`, its stylesheet at `/console/static/`."""
    add_routes(app, router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
