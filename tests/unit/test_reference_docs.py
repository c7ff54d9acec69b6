"""`docs/api.md` and `docs/cli.md` end with a reference made from the code (`make docs`):
a route or a command changed without it shows here."""

from __future__ import annotations

from api.reference import documents


def test_the_reference_documents_say_what_the_code_answers() -> None:
    for path, text in documents().items():
        assert path.read_text() == text, f"{path.name} lags the code: run `make docs`"
