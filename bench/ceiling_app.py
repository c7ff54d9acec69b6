"""The framework's own ceiling for W1: a FastAPI app that validates a grant proposal's
body (the ledger's fields and limits, in a pydantic model) and echoes it. Nothing else:
no key, no database. Served as the ledger is (uvicorn, httptools, uvloop, 2 workers)
and measured by the same load generator, it says what any FastAPI service could answer
on this machine, which the ledger's own work is a share of.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from ledger.domain.values import ID_PATTERN

ID = Field(pattern=ID_PATTERN, min_length=1, max_length=64)
TEXT = Field(min_length=1, max_length=500)


class Proposal(BaseModel):
    grant_id: str = ID
    talent_id: str = ID
    fund_year: int = Field(ge=2000, le=2100)
    programme: str = Field(pattern=r"^[a-z_]{1,40}$")
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    policy_reference: str = TEXT
    reason: str = TEXT


app = FastAPI()


@app.post("/v1/grants", status_code=201)
async def propose(proposal: Proposal) -> Proposal:
    return proposal
