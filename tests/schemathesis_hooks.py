"""Schemathesis's hook for this API (`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks`):
a 422 to a request the schema allows must be a rule's refusal, never a shape the
schema forgot to forbid (docs/api.md, "Errors")."""

from __future__ import annotations

import schemathesis
from schemathesis import Case

# What refuses well-formed requests: a rule of the ledger, a bad statement line or
# status report element (a file from the bank is any bytes to the schema), and a
# batch operation's body (the schema leaves it open: each is checked as its single
# call's body, and answered as that call would).
ALLOWED = {"rule", "statement", "pain.002"}


@schemathesis.check
def refusals_are_rules(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    meta = case.meta
    if response.status_code != 422 or meta is None or not meta.generation.mode.is_positive:
        return None
    for error in response.json().get("errors", []):
        in_batch = error["loc"][:1] == ["operations"]
        assert error.get("type") in ALLOWED or in_batch, f"a schema-valid request refused: {error}"
    return None
