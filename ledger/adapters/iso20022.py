"""ISO 20022 files exchanged with the agent bank: the `pain.001.001.09` credit transfer
a disbursement run is paid by, and the `pain.002.001.10` status report it is settled
by.

Written with the standard library's ElementTree (what no library does better for one
fixed message) and read with `defusedxml`, which refuses DTDs, entities and external
references outright: a report from outside may not make the parser fetch or expand
anything. A report wrong anywhere is refused whole, naming the element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ledger.domain.errors import StatementRejected
from ledger.domain.money import format_money
from ledger.domain.runs import DisbursementRun

PAIN_001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
PAIN_002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
#: transaction statuses that are final: settled, or rejected
SETTLED_STATUSES = frozenset({"ACSC", "ACCC"})
REJECTED_STATUS = "RJCT"


@dataclass(frozen=True)
class Payer:
    """The fund's own account at the agent bank, which every run is paid from."""

    name: str
    account: str
    agent_bic: str | None = None


def _sub(parent: ET.Element, path: str, text: str | None = None, **attrs: str) -> ET.Element:
    """Append `path` (tags separated by `/`) under `parent`; the last gets `text`."""
    element = parent
    for tag in path.split("/"):
        element = ET.SubElement(element, tag)
    element.attrib.update(attrs)
    if text is not None:
        element.text = text
    return element


def _account(parent: ET.Element, tag: str, account: str) -> None:
    _sub(parent, f"{tag}/Id/Othr/Id", account)


def credit_transfer(
    run: DisbursementRun,
    creditors: Mapping[str, tuple[str, str]],
    payer: Payer,
    created_at: datetime,
) -> bytes:
    """The run's items as one payment information block: `creditors` are each talent's
    name and account, opened from its sealed data for this file only."""
    ET.register_namespace("", PAIN_001)
    count, total = str(len(run.items)), format_money(run.total)
    document = ET.Element("Document", xmlns=PAIN_001)
    initiation = _sub(document, "CstmrCdtTrfInitn")
    header = _sub(initiation, "GrpHdr")
    _sub(header, "MsgId", run.run_id)
    _sub(header, "CreDtTm", created_at.replace(microsecond=0).isoformat())
    _sub(header, "NbOfTxs", count)
    _sub(header, "CtrlSum", total)
    _sub(header, "InitgPty/Nm", payer.name)
    block = _sub(initiation, "PmtInf")
    _sub(block, "PmtInfId", run.run_id)
    _sub(block, "PmtMtd", "TRF")
    _sub(block, "NbOfTxs", count)
    _sub(block, "CtrlSum", total)
    _sub(block, "ReqdExctnDt/Dt", run.value_date.isoformat())
    _sub(block, "Dbtr/Nm", payer.name)
    _account(block, "DbtrAcct", payer.account)
    if payer.agent_bic:
        _sub(block, "DbtrAgt/FinInstnId/BICFI", payer.agent_bic)
    else:
        _sub(block, "DbtrAgt/FinInstnId/Othr/Id", "NOTPROVIDED")
    for item in run.items:
        name, account = creditors[item.talent_id]
        transfer = _sub(block, "CdtTrfTxInf")
        _sub(transfer, "PmtId/EndToEndId", item.payment_id)
        _sub(transfer, "Amt/InstdAmt", format_money(item.amount), Ccy="CNY")
        _sub(transfer, "Cdtr/Nm", name[:140])
        _account(transfer, "CdtrAcct", account)
        _sub(transfer, "RmtInf/Ustrd", f"{item.grant_id} #{item.instalment}")
    ET.indent(document)
    body: bytes = ET.tostring(document, encoding="UTF-8", xml_declaration=True)
    return body


@dataclass(frozen=True)
class StatusReport:
    """What a `pain.002` says of a run's items: settled (with the bank's reference)
    and rejected (with its reason), by payment id. Items still pending are left out."""

    settled: dict[str, str]
    rejected: dict[str, str]


def _text(element: ET.Element, path: str, where: str) -> str:
    found = element.find(path, {"p": PAIN_002})
    if found is None or not (found.text or "").strip():
        raise StatementRejected(0, where, f"{where} is missing")
    return (found.text or "").strip()


def parse_status_report(data: bytes, run_id: str) -> StatusReport:
    """Read a `pain.002.001.10` about run `run_id`, or refuse it naming the element."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise StatementRejected(0, "Document", f"refused: {type(e).__name__}") from None
    except ET.ParseError as e:
        line = e.position[0]
        raise StatementRejected(line, "Document", f"not well-formed XML: {e}") from None
    if root.tag != f"{{{PAIN_002}}}Document":
        raise StatementRejected(0, "Document", f"the document must be a {PAIN_002} Document")
    report = root.find("p:CstmrPmtStsRpt", {"p": PAIN_002})
    if report is None:
        raise StatementRejected(0, "CstmrPmtStsRpt", "CstmrPmtStsRpt is missing")
    original = _text(report, "p:OrgnlGrpInfAndSts/p:OrgnlMsgId", "OrgnlGrpInfAndSts/OrgnlMsgId")
    if original != run_id:
        raise StatementRejected(
            0, "OrgnlGrpInfAndSts/OrgnlMsgId", f"the report is about {original}, not run {run_id}"
        )
    settled: dict[str, str] = {}
    rejected: dict[str, str] = {}
    transactions = report.findall("p:OrgnlPmtInfAndSts/p:TxInfAndSts", {"p": PAIN_002})
    for n, transaction in enumerate(transactions, start=1):
        where = f"OrgnlPmtInfAndSts/TxInfAndSts[{n}]"
        payment_id = _text(transaction, "p:OrgnlEndToEndId", f"{where}/OrgnlEndToEndId")
        status = _text(transaction, "p:TxSts", f"{where}/TxSts")
        if payment_id in settled or payment_id in rejected:
            raise StatementRejected(0, where, f"{payment_id} is reported twice")
        if status in SETTLED_STATUSES:
            settled[payment_id] = _text(transaction, "p:AcctSvcrRef", f"{where}/AcctSvcrRef")
        elif status == REJECTED_STATUS:
            code = transaction.find("p:StsRsnInf/p:Rsn/p:Cd", {"p": PAIN_002})
            info = transaction.find("p:StsRsnInf/p:AddtlInf", {"p": PAIN_002})
            reason = " ".join(
                (e.text or "").strip() for e in (code, info) if e is not None and e.text
            )
            rejected[payment_id] = reason or "rejected by the bank"
    return StatusReport(settled, rejected)
