"""`ledger audit bundle` (CONTRACT §12): everything an auditor needs to check the ledger
up to a signed checkpoint on a machine of their own, with `ledger-verify` alone.

events.jsonl     every event up to the checkpoint: its stored bytes and chain hash
checkpoint.note  the signed note
public-key       the key that signed it (check it against the one you kept!)
manifest.json    what the bundle holds
fund-year.json   with --fund-year: the fund year (§5) as of the checkpoint
"""

from __future__ import annotations

import base64
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from psycopg import sql

from ledger.adapters.postgres import EVENTS_TABLE, datastore_of, snapshot
from ledger.domain.chain import instant_text
from ledger.domain.errors import NotFound
from ledger.usecases.checkpoints import Checkpoint
from ledger.usecases.ledger import Ledger
from ledger.usecases.progress import PROGRESS_EVERY, Progress
from projections.reads import fund_year

FORMAT = "talent-ledger-bundle/1"

_EVENTS = sql.SQL(
    "SELECT notification_id, originator_id, originator_version, topic, state, recorded_at, "
    "hash FROM {} WHERE notification_id <= %s ORDER BY notification_id"
).format(sql.Identifier(EVENTS_TABLE))


def _event_lines(ledger: Ledger, head_position: int) -> Iterator[bytes]:
    """Each event up to `head_position` as a JSON line, streamed from one snapshot."""
    with (
        snapshot(datastore_of(ledger)) as curs,
        curs.connection.cursor(name="bundle_events") as rows,
    ):
        rows.itersize = 5000
        rows.execute(_EVENTS, (head_position,))
        for row in rows:
            record = {
                "position": row["notification_id"],
                "originator_id": str(row["originator_id"]),
                "originator_version": row["originator_version"],
                "topic": row["topic"],
                "recorded_at": instant_text(row["recorded_at"]),
                "state": base64.b64encode(bytes(row["state"])).decode(),
                "hash": bytes(row["hash"]).hex(),
            }
            yield json.dumps(record, ensure_ascii=False).encode() + b"\n"


def write_bundle(
    ledger: Ledger,
    out: Path | IO[bytes],
    checkpoint_id: int | None,
    year: int | None,
    progress: Progress | None = None,
) -> tuple[Checkpoint, int]:
    """Write the bundle of a checkpoint (default: the latest) to `out` (a path or an
    open file); the checkpoint
    and how many events it holds. The read models must have reached it (for
    `fund-year.json`)."""
    checkpoint = ledger.notary.find(checkpoint_id)
    if checkpoint is None:
        raise NotFound(
            f"no checkpoint {checkpoint_id}"
            if checkpoint_id is not None
            else "no checkpoint has been signed yet: run `ledger audit checkpoint` first"
        )
    figures: dict[str, Any] | None = None
    if year is not None:
        figures = fund_year(datastore_of(ledger), year, checkpoint.head_position)
    events = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        with bundle.open("events.jsonl", "w") as lines:
            for line in _event_lines(ledger, checkpoint.head_position):
                lines.write(line)
                events += 1
                if progress and not events % PROGRESS_EVERY:
                    progress(events, checkpoint.tree_size)
        if progress:
            progress(events, checkpoint.tree_size)
        bundle.writestr("checkpoint.note", checkpoint.note)
        bundle.writestr("public-key", ledger.notary.signer.public_key_text + "\n")
        if figures is not None:
            bundle.writestr("fund-year.json", json.dumps(figures, ensure_ascii=False, default=str))
        manifest = {
            "format": FORMAT,
            "checkpoint_id": checkpoint.checkpoint_id,
            "tree_size": checkpoint.tree_size,
            "head_position": checkpoint.head_position,
            "root": base64.b64encode(checkpoint.root).decode(),
            "head": checkpoint.head.hex(),
            "signed_at": checkpoint.signed_at.isoformat(),
            "events": events,
            "fund_year": year,
            "written_at": datetime.now(UTC).isoformat(),
        }
        bundle.writestr("manifest.json", json.dumps(manifest, indent=2))
    return checkpoint, events
