"""The examples of `/openapi.json` (and so of `/docs`, `/redoc` and docs/api.md's
reference): each operation's request and answer as the story of `tests/story.py` told
them to a fresh ledger. `make examples` records them into `examples.json`;
`tests/integration/test_examples.py` tells the story again and fails when an answer
no longer matches what is documented here."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent / "examples.json"


@cache
def recorded() -> dict[str, dict[str, Any]]:
    """operationId -> {"path", "query", "body", "status", "answer"}."""
    examples: dict[str, dict[str, Any]] = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    return examples


def with_examples(openapi: dict[str, Any]) -> dict[str, Any]:
    """Each operation's parameters, body and success answer with their examples."""
    examples = recorded()
    for template, item in openapi["paths"].items():
        for operation in item.values():
            example = examples.get(operation["operationId"])
            if example is None:
                continue
            ids = _path_ids(template, example["path"])
            for parameter in operation.get("parameters", []):
                given = {**ids, **example["query"]}
                if parameter["name"] in given:
                    parameter["example"] = given[parameter["name"]]
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():  # unless a route shows a format of its own
                media.setdefault("example", example["body"])
            answer = operation["responses"].get(str(example["status"]), {})
            for media in answer.get("content", {}).values():
                media["example"] = example["answer"]
    return openapi


def _path_ids(template: str, path: str) -> dict[str, str]:
    names = template.split("/")
    values = path.split("/")
    return {
        name[1:-1]: value for name, value in zip(names, values, strict=True) if name.startswith("{")
    }
