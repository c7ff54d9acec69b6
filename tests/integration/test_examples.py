"""The API's examples (`api/examples.py`) are what the service answers: the story of
`tests/story.py` is told to a fresh ledger and each answer compared with the one
documented. `LEDGER_RECORD_EXAMPLES=1` (`make examples`) records them instead."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.examples import EXAMPLES, recorded
from ledger.adapters.postgres import datastore_of
from ledger.entrypoints.runtime import Settings
from tests.conftest import install_key
from tests.story import KEYS, tell

RECORD = os.environ.get("LEDGER_RECORD_EXAMPLES") == "1"


@pytest.fixture
def told(test_settings: Settings) -> Iterator[dict[str, dict[str, object]]]:
    app = create_app(test_settings)
    with TestClient(app) as base:
        datastore = datastore_of(app.state.ledger)
        keys = {role: install_key(datastore, name, [role]) for role, name in KEYS.items()}
        clients: dict[str, TestClient] = {}

        def client(role: str) -> TestClient:
            if role not in clients:
                clients[role] = TestClient(app, headers={"Authorization": f"Bearer {keys[role]}"})
            return clients[role]

        yield tell(client)
        assert base is not None


def test_every_example_is_what_the_service_answers(told: dict[str, dict[str, object]]) -> None:
    if RECORD:
        EXAMPLES.write_text(json.dumps(told, ensure_ascii=False, indent=2) + "\n")
        recorded.cache_clear()
    for operation, example in recorded().items():
        assert told[operation] == example, f"{operation}: run `make examples` if this is meant"
    assert told.keys() == recorded().keys()


def test_every_operation_but_the_files_has_its_examples(test_settings: Settings) -> None:
    document = create_app(test_settings).openapi()
    missing = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/exports/") or path.endswith(".xml"):
                continue  # files: a spreadsheet, a bank's payment file
            where = f"{method.upper()} {path}"
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if "example" not in media:
                    missing.append(f"{where}: request body")
            answers = [
                media
                for status, response in operation["responses"].items()
                if status.startswith("2")
                for media_type, media in response.get("content", {}).items()
                if media_type == "application/json"
            ]
            if answers and not any("example" in media for media in answers):
                missing.append(f"{where}: its answer")
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and "example" not in parameter:
                    missing.append(f"{where}: {parameter['name']}")
    assert missing == []
