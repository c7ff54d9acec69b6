"""`ledger-verify BUNDLE.zip --public-key FILE`: check an audit bundle (CONTRACT §12)
without trusting the server that wrote it.

This one file is all an auditor needs besides Python and `cryptography`: it imports
nothing else of the project, so it can be copied to a machine that has never seen the
ledger and read line by line. It is also the one definition of the proof's formats
(the chain digest, the RFC 9162 Merkle tree, the signed note): the server imports them
from here, so what it signs is exactly what this checks.

Exit 0 with a summary when every check holds; 1 naming the first that failed (and the
position, where there is one); 2 on a usage error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# --- the hash chain --------------------------------------------------------------

GENESIS = bytes(32)  # the "previous hash" of the first event


def chain_digest(
    prev: bytes,
    position: int,
    originator_id: str,
    version: int,
    topic: str,
    state: bytes,
    instant: str,
) -> bytes:
    """sha256(previous hash | position | stream id | version | topic | | stored bytes |
    | recorded_at), `instant` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`: what the database's
    trigger hashes when it appends an event."""
    head = f"{position}|{originator_id}|{version}|{topic}|".encode()
    return hashlib.sha256(prev + head + state + f"|{instant}".encode()).digest()


# --- the Merkle tree (RFC 9162 §2.1) ---------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256()


@dataclass
class Frontier:
    """A tree being grown leaf by leaf, kept as the roots of its perfect subtrees, largest
    first (one per set bit of its size): appending is O(log n) and the root of any size
    comes without holding the leaves."""

    size: int = 0
    peaks: list[bytes] = field(default_factory=list)

    def append(self, entry: bytes) -> None:
        self.append_hash(leaf_hash(entry))

    def append_hash(self, hashed: bytes) -> None:
        self.peaks.append(hashed)
        self.size += 1
        merges, size = 0, self.size
        while size % 2 == 0:  # each trailing zero bit closes one pair of equal subtrees
            merges += 1
            size //= 2
        for _ in range(merges):
            right = self.peaks.pop()
            self.peaks[-1] = node_hash(self.peaks[-1], right)

    def root(self) -> bytes:
        """MTH of the leaves so far: the peaks folded from the right, which is RFC 9162's
        split at the largest power of two below the size, applied again and again."""
        if not self.peaks:
            return EMPTY_ROOT
        result = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            result = node_hash(peak, result)
        return result


# --- signed notes (C2SP signed-note) ---------------------------------------------

NOTE_ORIGIN = "talent-ledger"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space begin each signature line


class NoteError(Exception):
    """A note that is malformed, or not signed by the key given."""


def note_text(tree_size: int, root: bytes) -> str:
    """The signed text: origin, tree size, base64 root, each on its own line."""
    return f"{NOTE_ORIGIN}\n{tree_size}\n{base64.b64encode(root).decode()}\n"


def key_id(public_key: bytes) -> bytes:
    """The key's 4-byte id: SHA-256(origin ‖ 0x0A ‖ 0x01 (Ed25519) ‖ key), first 4 bytes."""
    return hashlib.sha256(NOTE_ORIGIN.encode() + b"\n\x01" + public_key).digest()[:4]


def signature_line(public_key: bytes, signature: bytes) -> str:
    return (
        f"{SIGNATURE_PREFIX}{NOTE_ORIGIN} "
        + base64.b64encode(key_id(public_key) + signature).decode()
        + "\n"
    )


def read_public_key(text: str) -> Ed25519PublicKey:
    """A public key as `ledger audit public-key` prints it: base64 of 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise NoteError("the public key is not base64 of 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Note:
    tree_size: int
    root: bytes


def verify_note(note: str, public_key: Ed25519PublicKey) -> Note:
    """The tree size and root a note states, once its signature by `public_key` holds."""
    text, blank, signatures = note.partition("\n\n")
    if not blank:
        raise NoteError("the note has no blank line before its signature")
    text += "\n"
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != NOTE_ORIGIN or not lines[1].isdigit():
        raise NoteError(f"the note's text is not `{NOTE_ORIGIN}`, a tree size and a root")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        root = b""
    if len(root) != 32:
        raise NoteError("the note's root is not base64 of 32 bytes")
    raw_key = public_key.public_bytes_raw()
    prefix = f"{SIGNATURE_PREFIX}{NOTE_ORIGIN} "
    for line in signatures.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            blob = base64.b64decode(line[len(prefix) :], validate=True)
        except binascii.Error:
            continue
        if len(blob) == 68 and blob[:4] == key_id(raw_key):
            try:
                public_key.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise NoteError("the note's signature does not verify with this key") from None
            return Note(int(lines[1]), root)
    raise NoteError("the note carries no signature by this key")


# --- the bundle ------------------------------------------------------------------


class Failed(Exception):
    """The first check that did not hold; `position` where an event is to blame."""

    def __init__(self, check: str, detail: str, position: int | None = None) -> None:
        super().__init__(detail)
        self.check, self.detail, self.position = check, detail, position

    def __str__(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"FAILED {self.check}{where}: {self.detail}"


@dataclass(frozen=True)
class Event:
    position: int
    originator_id: str
    topic: str
    state: bytes

    def kind(self) -> str:
        """The class part of the topic (`Grant.Proposed`): stable across module moves."""
        return self.topic.rpartition(":")[2]

    def fields(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.state)
        return decoded


def _events(lines: Iterator[bytes]) -> Iterator[tuple[Event, str]]:
    """Each line of `events.jsonl` as an event, checked to follow the one before."""
    prev, last_position = GENESIS, 0
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            event = Event(
                int(record["position"]),
                record["originator_id"],
                record["topic"],
                base64.b64decode(record["state"], validate=True),
            )
            stated = bytes.fromhex(record["hash"])
            digest = chain_digest(
                prev,
                event.position,
                event.originator_id,
                int(record["originator_version"]),
                event.topic,
                event.state,
                record["recorded_at"],
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise Failed("events.jsonl", f"line {number} is not an event record ({e})") from None
        if event.position <= last_position:
            raise Failed(
                "order", f"line {number} comes after position {last_position}", event.position
            )
        if digest != stated:
            raise Failed("chain", "the stored bytes do not give the event's hash", event.position)
        prev, last_position = digest, event.position
        yield event, stated.hex()


@dataclass
class Line:
    kind: str = ""
    appropriated: Decimal = Decimal(0)
    committed: Decimal = Decimal(0)
    paid: Decimal = Decimal(0)
    returned: Decimal = Decimal(0)
    in_kind_value: Decimal = Decimal(0)

    def figures(self) -> dict[str, Decimal]:
        return {
            "appropriated": self.appropriated,
            "committed": self.committed,
            "net_paid": self.paid - self.returned,
            "in_kind_value": self.in_kind_value,
        }


def _amount(value: Any) -> Decimal:
    """An amount as the event store encodes a Decimal: `{"_type_": "decimal_str", ...}`."""
    return Decimal(value["_data_"] if isinstance(value, dict) else value)


BUDGET_MOVES = ("FundYear.Appropriated", "FundYear.Reserved", "FundYear.Released")
FIGURES = ("appropriated", "committed", "net_paid", "in_kind_value")


class FundYearFigures:
    """Each programme line's figures, folded from the events alone: the independent
    second computation the bundle's `fund-year.json` must agree with."""

    def __init__(self, year: int) -> None:
        self.year = year
        self.lines: dict[str, Line] = {}
        self._years: dict[str, int] = {}  # fund-year stream -> its year
        self._charged: dict[str, tuple[str, Decimal]] = {}  # payment/waiver -> line, amount

    def fold(self, event: Event) -> None:
        kind, originator_id = event.kind(), event.originator_id
        if not kind.startswith(("FundYear.", "Payment.", "RentWaiver.")):
            return
        f = event.fields()
        if kind == "FundYear.Opened":
            self._years[originator_id] = f["year"]
        elif kind in BUDGET_MOVES and self._years.get(originator_id) == self.year:
            line = self.lines.setdefault(f["programme"], Line())
            if kind == "FundYear.Appropriated":
                line.kind = f["kind"]
                line.appropriated += _amount(f["amount"])
            elif kind == "FundYear.Reserved":
                line.committed += _amount(f["amount"])
            else:
                line.committed -= _amount(f["amount"])
        elif kind in ("Payment.Recorded", "RentWaiver.Granted") and f["fund_year"] == self.year:
            amount = _amount(f["amount"] if kind == "Payment.Recorded" else f["value"])
            self._charged[originator_id] = (f["programme"], amount)
            line = self.lines.setdefault(f["programme"], Line())
            if kind == "Payment.Recorded":
                line.paid += amount
            else:
                line.in_kind_value += amount
        elif originator_id in self._charged:
            programme, amount = self._charged[originator_id]
            if kind == "Payment.Returned":
                self.lines[programme].returned += amount
            elif kind == "RentWaiver.Ended":
                self.lines[programme].in_kind_value -= _amount(f["released"])

    def compare(self, stated: Any) -> None:
        """Hold the server's figures (`fund-year.json`) to the events': each line once,
        every line the events give and no other, each figure and each total."""
        lines = stated.get("lines") if isinstance(stated, dict) else None
        if not isinstance(lines, list) or not all(isinstance(x, dict) for x in lines):
            raise Failed("fund-year.json", "it holds no list of lines")
        programmes = [line.get("programme") for line in lines]
        if len(set(programmes)) != len(programmes):
            raise Failed("fund-year.json", "it states a line twice")
        if set(programmes) != set(self.lines):
            raise Failed(
                "fund-year.json",
                f"its lines {sorted(map(str, programmes))} are not those the events give "
                f"{sorted(self.lines)}",
            )
        stated_lines = dict(zip(programmes, lines, strict=True))
        totals = {name: Decimal(0) for name in FIGURES}
        for programme, line in sorted(self.lines.items()):
            for name, value in line.figures().items():
                _agree(f"line {programme}: {name}", stated_lines[programme].get(name), value)
                totals[name] += value
        stated_totals = stated.get("totals")
        for name, value in totals.items():
            given = stated_totals.get(name) if isinstance(stated_totals, dict) else None
            _agree(f"totals: {name}", given, value)


def _agree(what: str, stated: Any, computed: Decimal) -> None:
    try:
        agrees = Decimal(str(stated)) == computed
    except ArithmeticError:
        agrees = False
    if not agrees:
        raise Failed("fund-year.json", f"{what} is {stated}, the events give {computed}")


@dataclass(frozen=True)
class Summary:
    events: int
    tree_size: int
    root: str
    head: str
    fund_year: int | None


def verify_bundle(path: Path, public_key: Ed25519PublicKey) -> Summary:
    """Every check of the bundle at `path`, in order; raises `Failed` at the first that
    does not hold. Whatever else goes wrong reading it is a failure of the bundle: a
    file an attacker made must never crash the check into passing or a traceback."""
    try:
        return _verify_bundle(path, public_key)
    except Failed:
        raise
    except NoteError as e:
        raise Failed("signature", str(e)) from None
    except Exception as e:
        raise Failed(
            "bundle", f"a file is missing or unreadable ({type(e).__name__}: {e})"
        ) from None


def _verify_bundle(path: Path, public_key: Ed25519PublicKey) -> Summary:
    with zipfile.ZipFile(path) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        if not isinstance(manifest, dict):
            raise Failed("manifest", "it is not an object")
        note = verify_note(bundle.read("checkpoint.note").decode(), public_key)
        stated = (
            json.loads(bundle.read("fund-year.json"))
            if "fund-year.json" in bundle.namelist()
            else None
        )
        year = manifest.get("fund_year")
        if (stated is None) != (year is None):
            raise Failed("manifest", "its fund_year and the bundle's fund-year.json disagree")
        if stated is not None and (not isinstance(stated, dict) or stated.get("year") != year):
            raise Failed("fund-year.json", "it is not the fund year the manifest names")
        figures = FundYearFigures(int(year)) if year is not None else None
        frontier, head = Frontier(), GENESIS.hex()
        with bundle.open("events.jsonl") as lines:
            for event, head in _events(lines):
                frontier.append(bytes.fromhex(head))
                if figures is not None:
                    figures.fold(event)
    if frontier.size != note.tree_size:
        raise Failed(
            "tree size", f"the note signs {note.tree_size} events, the bundle holds {frontier.size}"
        )
    if frontier.root() != note.root:
        raise Failed("root", "the events' Merkle root is not the one the note signs")
    signed = (base64.b64encode(note.root).decode(), note.tree_size, head)
    if (manifest.get("root"), manifest.get("tree_size"), manifest.get("head")) != signed:
        raise Failed("manifest", "its root, tree size or head are not the note's and the events'")
    if figures is not None:
        figures.compare(stated)
    return Summary(
        frontier.size,
        note.tree_size,
        base64.b64encode(note.root).decode(),
        head,
        figures.year if figures else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ledger-verify", description="Check a talent ledger audit bundle."
    )
    parser.add_argument("bundle", type=Path, help="the zip `ledger audit bundle` wrote")
    parser.add_argument(
        "--public-key", required=True, type=Path, help="a file holding the base64 public key"
    )
    args = parser.parse_args(argv)
    try:
        public_key = read_public_key(args.public_key.read_text())
    except (OSError, UnicodeError, NoteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        summary = verify_bundle(args.bundle, public_key)
    except Failed as failure:
        print(failure)
        return 1
    print(
        f"verified: {summary.events} events, chain head {summary.head}, "
        f"Merkle root {summary.root} signed for {summary.tree_size} events"
        + (f", fund year {summary.fund_year} recomputed" if summary.fund_year else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
