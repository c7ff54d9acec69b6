"""Every command, under one name for the tests (`c.ProposeGrant`): the ledger keeps each
beside its use case (`ledger.usecases.<resource>`)."""

from __future__ import annotations

from ledger.usecases.clawbacks import AssessClawback, RecordRecovery
from ledger.usecases.fund_years import Appropriate, CloseFundYear, OpenFundYear
from ledger.usecases.grants import ApproveGrant, ProposeGrant, RejectGrant, RevokeGrant
from ledger.usecases.keys import IssueKey, RevokeKey
from ledger.usecases.payments import RecordPayment, ReturnPayment
from ledger.usecases.talents import DepartTalent, RegisterTalent
from ledger.usecases.waivers import EndWaiver, GrantWaiver

__all__ = [
    "Appropriate",
    "ApproveGrant",
    "AssessClawback",
    "CloseFundYear",
    "DepartTalent",
    "EndWaiver",
    "GrantWaiver",
    "IssueKey",
    "OpenFundYear",
    "ProposeGrant",
    "RecordPayment",
    "RecordRecovery",
    "RegisterTalent",
    "RejectGrant",
    "ReturnPayment",
    "RevokeGrant",
    "RevokeKey",
]
