"""Bank statements in the formats banks send (CONTRACT §6, second edition), for tests:
the fixtures of `tests/fixtures/statements/`, and small camt.053.001.08 and MT940
statements made to order (valid against the published schema, and adding up unless
told otherwise)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: a month of the city fund's account at a bank, as the bank's systems write it
CAMT053 = (FIXTURES / "statements" / "camt.053.001.08.xml").read_bytes()
MT940 = (FIXTURES / "statements" / "mt940.sta").read_bytes()
CAMT053_XSD = FIXTURES / "iso20022" / "camt.053.001.08.xsd"
ACCOUNT = "31050161373600001234"
# hostile XML: entities that expand to gigabytes, and one that reads a local file
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">&lol9;</Document>
"""
XXE = CAMT053.replace(
    b"<Document ",
    b'<!DOCTYPE Document [<!ENTITY acct SYSTEM "file:///etc/passwd">]>\n<Document ',
).replace(b"<Id>31050161373600001234</Id>", b"<Id>&acct;</Id>")


class Entry(NamedTuple):
    value_date: str
    reference: str
    amount: str
    direction: str  # debit or credit
    counterparty: str = "张伟"


def _closing(opening: str, entries: list[Entry]) -> Decimal:
    moved = sum(Decimal(e.amount) * (1 if e.direction == "credit" else -1) for e in entries)
    return Decimal(opening) + moved


def _camt_balance(code: str, amount: Decimal, on: str) -> str:
    indicator = "DBIT" if amount < 0 else "CRDT"
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="CNY">{abs(amount):.2f}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        f"<Dt><Dt>{on}</Dt></Dt></Bal>"
    )


def _camt_entry(entry: Entry) -> str:
    indicator, party = ("DBIT", "Cdtr") if entry.direction == "debit" else ("CRDT", "Dbtr")
    return (
        f'<Ntry><Amt Ccy="CNY">{entry.amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        f"<Sts><Cd>BOOK</Cd></Sts><ValDt><Dt>{entry.value_date}</Dt></ValDt>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly>"
        "</Domn></BkTxCd><NtryDtls><TxDtls>"
        f"<Refs><EndToEndId>{escape(entry.reference)}</EndToEndId></Refs>"
        f"<RltdPties><{party}><Pty><Nm>{escape(entry.counterparty)}</Nm></Pty></{party}>"
        "</RltdPties></TxDtls></NtryDtls></Ntry>"
    )


def camt053(
    entries: list[Entry],
    *,
    opening: str = "100000.00",
    opened_on: str = "2024-03-01",
    closed_on: str = "2024-03-31",
    closing: str | None = None,
    account: str = ACCOUNT,
) -> bytes:
    """A camt.053.001.08 of one statement of `account`; `closing` by default what the
    opening balance and the entries make."""
    closed = Decimal(closing) if closing is not None else _closing(opening, entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>TEST-1</MsgId><CreDtTm>2024-04-01T06:30:00+08:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>TEST-{closed_on}</Id>"
        f"<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>"
        + _camt_balance("OPBD", Decimal(opening), opened_on)
        + _camt_balance("CLBD", closed, closed_on)
        + "".join(map(_camt_entry, entries))
        + "</Stmt></BkToCstmrStmt></Document>\n"
    ).encode()


def _swift_date(day: str) -> str:
    return date.fromisoformat(day).strftime("%y%m%d")


def _swift_amount(amount: Decimal) -> str:
    return f"{abs(amount):.2f}".replace(".", ",")


def _mt940_balance(tag: str, amount: Decimal, on: str) -> str:
    mark = "D" if amount < 0 else "C"
    return f":{tag}:{mark}{_swift_date(on)}CNY{_swift_amount(amount)}"


def mt940(
    entries: list[Entry],
    *,
    opening: str = "100000.00",
    opened_on: str = "2024-03-01",
    closed_on: str = "2024-03-31",
    closing: str | None = None,
    account: str = ACCOUNT,
) -> bytes:
    """An MT940 of one statement of `account`, each line with its `:86:` details."""
    closed = Decimal(closing) if closing is not None else _closing(opening, entries)
    lines = [
        ":20:TEST",
        f":25:{account}",
        ":28C:1/1",
        _mt940_balance("60F", Decimal(opening), opened_on),
    ]
    for e in entries:
        mark = "D" if e.direction == "debit" else "C"
        day = _swift_date(e.value_date)
        amount = _swift_amount(Decimal(e.amount))
        lines += [f":61:{day}{mark}{amount}NTRF{e.reference}", f":86:/NAME/{e.counterparty}"]
    lines.append(_mt940_balance("62F", closed, closed_on))
    return "".join(line + "\r\n" for line in lines).encode()
