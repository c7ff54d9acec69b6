"""Schemathesis fuzzes every operation of the app's own `/openapi.json` against a real
database: no 5xx, every error an RFC 9457 problem with a stable `code`, and every
answer (status, body, headers) as the document declares it. A static test first makes
sure the document says enough for that to mean something.

Bounded and reproducible: derandomized generation, no example database, a few valid
and invalid requests per operation. They carry a key holding every role, so that they
reach validation and the domain; a seeded world (a funded fund year, talents, grants,
a payment, a waiver, a clawback and a reconciliation) lets valid requests name existing
resources some of the time. Another pass sends no key: every guarded operation answers
a 401 problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from ledger.adapters.postgres import datastore_of
from ledger.domain.roles import ROLES
from ledger.entrypoints.runtime import Settings
from tests.conftest import install_key
from tests.integration.scenario import (
    PROBLEM_FIELDS,
    Api,
    approved_grant,
    clawback_body,
    created,
    depart,
    funded,
    grant_body,
    pay,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)
from tests.schemathesis_hooks import refusals_are_rules

EXAMPLES_PER_OPERATION = 15
EXAMPLES_WITHOUT_KEY = 2
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WAITING_PARAMETERS = {"min_position", "as_of", "as_of_position"}
STATEMENT = (
    "value_date,bank_reference,amount,direction,counterparty\n"
    "2024-03-01,BR-1,20000.00,debit,市第一人民医院\n"
    "2024-11-01,RB-1,1000.00,credit,张伟\n"
    "2024-11-02,BR-404,5.00,debit,某公司\n"
)


# --- the document -----------------------------------------------------------------


def _document() -> dict[str, Any]:
    """The document `/openapi.json` serves, built from the app's own routes."""
    settings = Settings(database_url="unused", data_dir=Settings.from_env().data_dir)
    return create_app(settings).openapi()


# A batch operation's body is checked against the model of that operation's single
# call (which this test does check), so the batch schema leaves it open.
FREE_FORM = {"BatchOperation.body"}
STRING_BOUNDS = {"pattern", "format", "enum", "const", "maxLength"}


def _loose(schema: dict[str, Any], schemas: dict[str, Any], at: str) -> list[str]:
    """Where a request schema accepts more than the service does: an open object, an
    unbounded array or integer, a string with no pattern, format, enum or length."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _loose(schemas[name], schemas, name)
    if "anyOf" in schema:
        return [found for option in schema["anyOf"] for found in _loose(option, schemas, at)]
    kind = schema.get("type")
    if kind == "object":
        closed = schema.get("additionalProperties") is False or at in FREE_FORM
        return ([] if closed else [f"{at}: open object"]) + [
            found
            for name, item in schema.get("properties", {}).items()
            for found in _loose(item, schemas, f"{at}.{name}")
        ]
    if kind == "array":
        bounded = "maxItems" in schema
        return ([] if bounded else [f"{at}: unbounded array"]) + _loose(
            schema["items"], schemas, f"{at}[]"
        )
    unbounded = (kind == "string" and not schema.keys() & STRING_BOUNDS) or (
        kind == "integer" and not {"minimum", "maximum"} <= schema.keys()
    )
    return [f"{at}: any {kind}"] if unbounded else []


def _undeclared(where: str, operation: dict[str, Any]) -> list[str]:
    """What `operation` answers without declaring it."""
    responses: dict[str, Any] = operation["responses"]
    guarded = bool(operation.get("x-roles"))
    write = where.startswith("POST ")
    expected = {"401", "422"} if guarded else set()
    if guarded and write:
        expected |= {"403", "413", "415"}
    if WAITING_PARAMETERS & {p["name"] for p in operation.get("parameters", [])}:
        expected.add("503")
    found = [f"{where}: no {status}" for status in sorted(expected - responses.keys())]
    if not any(status.startswith("2") for status in responses):
        found.append(f"{where}: no success")
    required_headers = {"401": "WWW-Authenticate", "503": "Retry-After"}
    for status, response in responses.items():
        headers = response.get("headers", {})
        names = {"X-Request-Id", required_headers.get(status, "X-Request-Id")}
        if write and status.startswith("2"):
            names.add("Ledger-Position")
        found += [
            f"{where} {status}: no {name} header"
            for name in sorted(names)
            if not headers.get(name, {}).get("required")
        ]
        content = response.get("content", {})
        if status >= "400":
            schema = content.get(PROBLEM_MEDIA_TYPE, {}).get("schema", {})
            problem, codes = schema.get("allOf", [{}, {}])
            enum = codes.get("properties", {}).get("code", {}).get("enum")
            if content.keys() != {PROBLEM_MEDIA_TYPE} or problem != PROBLEM_REF or not enum:
                found.append(f"{where} {status}: not a problem with its codes ({content})")
        elif not content:
            found.append(f"{where} {status}: no content")
    return found


def test_the_document_declares_every_answer_and_constrains_every_input() -> None:
    document = _document()
    schemas = document["components"]["schemas"]
    found: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            found += _undeclared(where, operation)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    found += _loose(parameter["schema"], schemas, f"{where} {parameter['name']}")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                found += _loose(body["schema"], schemas, f"{where} body")
    assert found == []


# --- the app under fuzz -----------------------------------------------------------


class WithoutLifespan:
    """The app as schemathesis reaches it. The test's own client runs the app's lifespan
    (it opens the ledger on the test database); a second one, started by schemathesis's
    ASGI transport, would open another ledger over `app.state`. Refusing the lifespan
    scope before receiving anything is how the ASGI spec says "no lifespan here"."""

    def __init__(self, app: FastAPI) -> None:
        self.app: ASGIApp = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("the test's client runs this app's lifespan")
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class World:
    app: FastAPI
    key: str  # holds every role
    known: dict[str, list[Any]]  # parameter or field name -> ids of seeded resources
    head: int  # the last position the seeding wrote


@pytest.fixture
def app(api: Api) -> FastAPI:
    """The app of the `api` fixture: its lifespan runs on a fresh database."""
    app = api(None).app
    assert isinstance(app, FastAPI)
    return app


@pytest.fixture
def world(api: Api, app: FastAPI) -> World:
    a = funded(api)  # fund year 2024 (settling_in cash, housing in kind), talent T-1
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    created(a.clerk.post("/v1/rent-waivers", json=waiver_body("W-1")))
    approved_grant(a, "G-1")
    pay(a, "P-1", amount="20000")
    created(a.clerk.post("/v1/grants", json=grant_body("G-2", talent_id="T-2", amount="1000")))
    depart(a, "T-1")
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", amount="12000")))
    created(a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery_body("R-1")))
    response = a.treasury.post(
        "/v1/reconciliations", content=STATEMENT.encode(), headers={"Content-Type": "text/csv"}
    )
    report = created(response)
    known: dict[str, list[Any]] = {
        "year": [2024],
        "fund_year": [2024],
        "programme": ["settling_in", "housing"],
        "talent_id": ["T-1", "T-2"],
        "grant_id": ["G-1", "G-2"],
        "payment_id": ["P-1"],
        "waiver_id": ["W-1"],
        "clawback_id": ["C-1"],
        "reconciliation_id": [report["reconciliation_id"]],
    }
    # every role but approver: no key may hold approver and treasury
    roles = [role for role in ROLES if role != "approver"]
    key = install_key(datastore_of(app.state.ledger), "fuzzer", roles)
    return World(app=app, key=key, known=known, head=position(response))


def _schema(app: FastAPI) -> OpenApiSchema:
    config = schemathesis.Config.from_dict(
        {
            "generation": {
                "database": "none",  # nothing carried over from earlier runs
                # the tests set Authorization themselves: a key with every role, or none
                "with-security-parameters": False,
            },
            "checks": {
                # The API answers 422 to well-formed bodies that the domain refuses:
                # a talent, grant or fund year that does not exist, an unknown programme,
                # a line of the wrong kind, dates outside the fund year, a zero amount, a
                # blank text (docs/api.md, "Choices the ledger made").
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                },
            },
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(app), config=config)


def _operations(schema: OpenApiSchema) -> list[APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool:
    """Every error is an RFC 9457 problem with the service's stable `code`, whether
    the document declares that answer or not."""
    if response.status_code < 400:
        return True
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM_MEDIA_TYPE, f"{response.status_code} answered {media_type!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == response.status_code, body
    assert isinstance(body["code"], str), body
    assert body["code"], body
    if response.status_code == 422:
        assert body["code"] == "validation_error", body
        assert body.get("errors"), body
    return True


def _aim(case: Case, data: st.DataObject, world: World) -> None:
    """Now and then make a valid request name seeded resources instead of random ids
    (an invalid one is refused by validation before any lookup).

    A `min_position` or `as_of_position` past the head is a position no write has
    answered yet, refused with a 422 (test_api_resources shows it). Such positions are
    folded into the seeded history, so that the fuzz reads instead.
    """
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive:
        for name in list(case.path_parameters or {}):
            if name in world.known and data.draw(st.booleans(), label=f"known {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(world.known[name]))
        if isinstance(case.body, dict):
            for name in [n for n in case.body if n in world.known]:
                if data.draw(st.booleans(), label=f"known {name} in body"):
                    case.body[name] = data.draw(st.sampled_from(world.known[name]))
    for name in ("min_position", "as_of_position"):
        value = (case.query or {}).get(name)
        # a whole number may come as a float (30.0), which the server reads as 30
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if whole and value > world.head:
            case.query[name] = int(value) % (world.head + 1)


def _fuzz(
    operation: APIOperation, examples: int, send: Callable[[Case, st.DataObject], None]
) -> None:
    """`examples` valid and invalid requests of `operation`, the same ones every run.

    Schemathesis's Python API rather than `schema.parametrize()`: a module-level schema
    would need an app at import time and a database per operation, and the fixture-based
    `schemathesis.pytest.from_fixture` fails on pytest 9 (it sets `node._nodeid`)."""
    strategy = st.one_of([operation.as_strategy(mode) for mode in GenerationMode])

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        # they judge how fast and how directly data is generated, not the service
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        send(case, data)

    run()


# --- the fuzz ---------------------------------------------------------------------


def test_fuzz_with_every_role(world: World, subtests: pytest.Subtests) -> None:
    def send(case: Case, data: st.DataObject) -> None:
        _aim(case, data, world)
        case.call_and_validate(
            headers={"Authorization": f"Bearer {world.key}"},
            additional_checks=[problem_details, refusals_are_rules],
        )

    operations = _operations(_schema(world.app))
    assert len(operations) >= 33
    for operation in operations:
        with subtests.test(operation.label):
            _fuzz(operation, EXAMPLES_PER_OPERATION, send)


def test_without_a_key(api: Api, app: FastAPI, subtests: pytest.Subtests) -> None:
    """Every guarded operation answers a 401 problem to a request without a key, and
    any path answers an undeclared method with a 405 problem naming the allowed ones."""

    def send(case: Case, data: st.DataObject) -> None:
        response = case.call_and_validate(additional_checks=[problem_details])
        if case.operation.definition.raw.get("x-roles"):
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "unauthenticated"

    for operation in _operations(_schema(app)):
        with subtests.test(operation.label):
            _fuzz(operation, EXAMPLES_WITHOUT_KEY, send)

    client = api(None)
    for path, item in _document()["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: "2024" if m.group(1) == "year" else "X-1", path)
        response = client.request("PUT", url)
        assert response.status_code == 405, (url, response.text)
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.json()["code"] == "method_not_allowed"
        allowed = set(response.headers["allow"].split(", "))
        assert allowed >= {method.upper() for method in item}, (url, allowed)
