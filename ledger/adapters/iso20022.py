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
from ledger.domain.money import ZERO, format_money
from ledger.domain.runs import DisbursementRun

PAIN_001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
PAIN_002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
#: transaction statuses that are final: settled, or rejected
SETTLED_STATUSES = frozenset({"ACSC", "ACCC"})
REJECTED_STATUS = "RJCT"
#: ISO 20022's other transaction statuses (ExternalPaymentTransactionStatus1Code): on
#: the way, the item stays pending; a code outside the list is refused
PENDING_STATUSES = frozenset(
    {"ACCP", "ACFC", "ACSP", "ACTC", "ACWC", "ACWP", "BLCK", "CANC", "PATC", "PDNG", "RCVD"}
)


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
    """The run's items as one payment information block, but those the bank already
    rejected: `creditors` are each talent's name and account, opened from its sealed
    data for this file only."""
    items = [item for item in run.items if item.payment_id not in run.rejected]
    count = str(len(items))
    total = format_money(sum((item.amount for item in items), ZERO))
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
    for item in items:
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
    and rejected (with its reason), by payment id; or, with `all_rejected`, that the
    bank rejected the whole file. Items still pending are left out."""

    settled: dict[str, str]
    rejected: dict[str, str]
    all_rejected: str | None = None


def _refused(where: str, detail: str) -> StatementRejected:
    return StatementRejected(None, where, detail)


def _text(element: ET.Element, path: str, where: str) -> str:
    found = element.find(path, {"p": PAIN_002})
    if found is None or not (found.text or "").strip():
        raise _refused(where, "missing")
    return (found.text or "").strip()


def _reason(element: ET.Element) -> str:
    code = element.find("p:StsRsnInf/p:Rsn/p:Cd", {"p": PAIN_002})
    info = element.find("p:StsRsnInf/p:AddtlInf", {"p": PAIN_002})
    reason = " ".join((e.text or "").strip() for e in (code, info) if e is not None and e.text)
    return reason or "rejected by the bank"


def _report(data: bytes) -> ET.Element:
    """The report's `CstmrPmtStsRpt`, parsed without a DTD, an entity or anything
    fetched."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise _refused("Document", f"refused: {type(e).__name__}") from None
    except ET.ParseError as e:
        line, column = e.position
        raise _refused("Document", f"not well-formed XML at line {line}, column {column}") from None
    except (ValueError, LookupError) as e:  # an encoding the parser cannot read
        raise _refused("Document", f"unreadable encoding: {e}") from None
    if root.tag != f"{{{PAIN_002}}}Document":
        raise _refused("Document", f"the document must be a {PAIN_002} Document")
    report: ET.Element | None = root.find("p:CstmrPmtStsRpt", {"p": PAIN_002})
    if report is None:
        raise _refused("CstmrPmtStsRpt", "missing")
    return report


def parse_status_report(data: bytes, run_id: str) -> StatusReport:
    """Read a `pain.002.001.10` about run `run_id`, or refuse it naming the element."""
    report = _report(data)
    original = _text(report, "p:OrgnlGrpInfAndSts/p:OrgnlMsgId", "OrgnlGrpInfAndSts/OrgnlMsgId")
    if original != run_id:
        raise _refused(
            "OrgnlGrpInfAndSts/OrgnlMsgId", f"the report is about {original}, not run {run_id}"
        )
    settled: dict[str, str] = {}
    rejected: dict[str, str] = {}
    transactions = report.findall("p:OrgnlPmtInfAndSts/p:TxInfAndSts", {"p": PAIN_002})
    if not transactions:
        group = report.find("p:OrgnlGrpInfAndSts", {"p": PAIN_002})
        assert group is not None  # its OrgnlMsgId was read
        status = _text(group, "p:GrpSts", "OrgnlGrpInfAndSts/GrpSts")
        if status != REJECTED_STATUS:
            raise _refused("OrgnlGrpInfAndSts/GrpSts", f"{status}: the report answers for no item")
        return StatusReport({}, {}, all_rejected=_reason(group))
    for n, transaction in enumerate(transactions, start=1):
        where = f"OrgnlPmtInfAndSts/TxInfAndSts[{n}]"
        payment_id = _text(transaction, "p:OrgnlEndToEndId", f"{where}/OrgnlEndToEndId")
        status = _text(transaction, "p:TxSts", f"{where}/TxSts")
        if payment_id in settled or payment_id in rejected:
            raise _refused(f"{where}/OrgnlEndToEndId", f"{payment_id} is reported twice")
        if status in SETTLED_STATUSES:
            settled[payment_id] = _text(transaction, "p:AcctSvcrRef", f"{where}/AcctSvcrRef")
        elif status == REJECTED_STATUS:
            rejected[payment_id] = _reason(transaction)
        elif status not in PENDING_STATUSES:
            raise _refused(f"{where}/TxSts", f"{status} is no ISO 20022 transaction status")
    return StatusReport(settled, rejected)
