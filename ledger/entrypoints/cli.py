"""The `ledger` command: its core subcommands, and those other packages add.

The ledger itself knows nothing of the HTTP API or the read models; they add their
subcommands (`serve`; `projections`, `export`, `reconcile`, `audit bundle`) through the
entry-point group `ledger.commands` (see `pyproject.toml`): each entry is a function
given the subcommands' parser and the core's groups of subcommands by name. Every
subcommand reads the same settings (`runtime.Settings`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool
import structlog
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError

from ledger.adapters.api_keys import KeyRecord, issue_key, list_keys, revoke_key
from ledger.adapters.postgres import datastore_of
from ledger.domain.context import acting_as
from ledger.domain.errors import LedgerError, NotFound
from ledger.domain.roles import ROLES
from ledger.entrypoints.logs import configure_logging
from ledger.entrypoints.output import (
    NotConfirmed,
    acting,
    actor,
    confirm,
    confirmable,
    progress,
    report,
    reporting,
    with_help_defaults,
)
from ledger.entrypoints.runtime import (
    ConfigurationError,
    Settings,
    opened,
    signing_key,
    tune_collector,
)
from ledger.usecases.checkpoints import Signer
from ledger.usecases.personal import MasterKeyMismatch

log = structlog.get_logger("ledger")

COMMANDS_GROUP = "ledger.commands"
#: exit statuses of sysexits.h, what service managers and scripts test for
EX_UNAVAILABLE = 69  # the database cannot be reached
EX_CONFIG = 78  # a setting is missing or wrong
UNREACHABLE = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    StoreOperationalError,
    StoreInterfaceError,
)


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger, acting_as(actor(args), f"cli-keys-create-{args.name}"):
        issued = issue_key(ledger, args.name, args.role, args.expires_in_days)
    record = issued.record
    until = f", until {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    report(
        args,
        f"created key {record.name} with roles {', '.join(record.roles)}{until}:\n{issued.key}",
        {**_key(record), "key": issued.key},
    )
    return 0


def _key(record: KeyRecord) -> dict[str, Any]:
    """A key as `--json` shows it (its number in the table is nobody's business)."""
    return {name: value for name, value in asdict(record).items() if name != "seq"}


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger:
        records, _next = list_keys(datastore_of(ledger))
    if args.json:
        report(args, "", {"keys": [_key(r) for r in records]})
        return 0

    def instant(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    print("name\troles\tcreated_at\texpires_at\trevoked_at\tlast_used_at (UTC)")
    for r in records:
        print(
            "\t".join(
                [r.name, ",".join(r.roles)]
                + [instant(v) for v in (r.created_at, r.expires_at, r.revoked_at, r.last_used_at)]
            )
        )
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger, acting_as(actor(args), f"cli-keys-revoke-{args.name}"):
        record, _position = revoke_key(ledger, args.name)
    report(
        args,
        f"revoked key {record.name} at {record.revoked_at:%Y-%m-%d %H:%M:%S} UTC",
        _key(record),
    )
    return 0


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        note = args.checkpoint.read_text() if args.checkpoint else None
    except (OSError, UnicodeError) as e:
        print(f"error: cannot read the note: {e}", file=sys.stderr)
        return 2
    with opened(settings) as ledger, progress(args, "verifying", "positions") as bar:
        result = ledger.notary.verify(note, bar)
    data = asdict(result)
    if result.ok:
        kept = ", and the note given" if note is not None else ""
        report(
            args,
            f"intact: {result.events_checked} events, head {result.head}; "
            f"{result.checkpoints_checked} signed checkpoints hold{kept}",
            data,
        )
        return 0
    report(
        args,
        f"TAMPERED: {result.detail} ({result.events_checked} events before it are intact)",
        data,
    )
    return 1


def _audit_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger:
        checkpoint = ledger.notary.sign()
    if args.json:
        report(
            args,
            "",
            {
                "checkpoint_id": checkpoint.checkpoint_id,
                "tree_size": checkpoint.tree_size,
                "head_position": checkpoint.head_position,
                "note": checkpoint.note,
            },
        )
        return 0
    print(
        f"checkpoint {checkpoint.checkpoint_id}: {checkpoint.tree_size} events up to "
        f"position {checkpoint.head_position}; keep this note:",
        file=sys.stderr,
    )
    print(checkpoint.note, end="")
    return 0


def _audit_public_key(args: argparse.Namespace, settings: Settings) -> int:
    key = Signer(signing_key(settings)).public_key_text
    report(args, key, {"public_key": key})
    return 0


def _talents_forget(args: argparse.Namespace, settings: Settings) -> int:
    confirm(
        args,
        f"Erase the name, account and apartment of talent {args.talent_id} for good? "
        "Amounts and history stay; nothing can bring the data back.",
    )
    with opened(settings) as ledger, acting_as(actor(args), f"cli-forget-{args.talent_id}"):
        outcome = ledger.forget_talent(args.talent_id)
    log.info("personal data erased", talent_id=args.talent_id, position=outcome.position)
    report(
        args,
        f"erased the personal data of talent {args.talent_id}",
        {"talent_id": args.talent_id, "erased": True, "position": outcome.position},
    )
    return 0


if TYPE_CHECKING:  # not subscriptable at run time before Python 3.12
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def _add_core_commands(commands: Subcommands) -> dict[str, Subcommands]:
    """The core's subcommands; answers its groups (`audit`), which others extend."""
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = reporting(
        keys.add_parser("create", help="create a key; the key is the last line printed")
    )
    create.add_argument(
        "--name", required=True, help="who holds it: the actor recorded on what it does"
    )
    create.add_argument(
        "--role", required=True, action="append", choices=ROLES, help="repeat for several"
    )
    create.add_argument(
        "--expires-in-days", type=int, default=None, help="refused after this many days"
    )
    acting(create, "issues it")
    create.set_defaults(run=_keys_create)
    listing = reporting(
        keys.add_parser("list", help="every key: roles, dates, last use; never a secret")
    )
    listing.set_defaults(run=_keys_list)
    revoke = reporting(keys.add_parser("revoke", help="refuse a key from now on, in every process"))
    revoke.add_argument("name", help="the key's name")
    acting(revoke, "revokes it")
    revoke.set_defaults(run=_keys_revoke)

    audit = commands.add_parser("audit", help="auditor tools").add_subparsers(
        dest="audit_command", required=True
    )
    verify = reporting(
        audit.add_parser(
            "verify", help="check the hash chain over all events, and every signed checkpoint"
        )
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="NOTE_FILE",
        help="also check the ledger against a signed note kept outside it",
    )
    verify.set_defaults(run=_audit_verify)
    checkpoint = reporting(
        audit.add_parser("checkpoint", help="sign the ledger as it stands; prints the signed note")
    )
    checkpoint.set_defaults(run=_audit_checkpoint)
    public_key = reporting(
        audit.add_parser(
            "public-key", help="print the signing key's public half (base64), for auditors to keep"
        )
    )
    public_key.set_defaults(run=_audit_public_key)

    talents = commands.add_parser("talents", help="talents' personal data").add_subparsers(
        dest="talents_command", required=True
    )
    forget = reporting(
        talents.add_parser(
            "forget", help="destroy a talent's data key: its name reads as erased everywhere"
        )
    )
    forget.add_argument("talent_id", help="the talent whose name and key go")
    acting(forget, "erases it")
    confirmable(forget)
    forget.set_defaults(run=_talents_forget)
    return {"audit": audit}


def parser() -> argparse.ArgumentParser:
    """The whole command line: the core subcommands and every package's additions."""
    top = argparse.ArgumentParser(prog="ledger", description="The talent benefits ledger.")
    top.add_argument("--version", action="version", version=f"ledger {version('talent-ledger')}")
    commands = top.add_subparsers(dest="command", required=True)
    groups = _add_core_commands(commands)
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(commands, groups)
    with_help_defaults(top)
    return top


def _where(settings: Settings) -> str:
    """The database a setting names, without its password."""
    if settings.database_url is None:
        return f"the embedded server under {settings.data_dir}"
    try:
        params = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    except psycopg.ProgrammingError:
        return "LEDGER_DATABASE_URL (malformed)"
    return "{}:{}/{}".format(
        params.get("host", "localhost"), params.get("port", 5432), params.get("dbname", "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand: a refusal or a problem of set-up is one line on stderr and an
    exit status a script can test (1 not found, 2 refused, 69 no database, 78 a setting
    wrong), never a traceback."""
    configure_logging()
    tune_collector()
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as e:
        print(f"error: {e}", file=sys.stderr)
        return EX_CONFIG
    try:
        code: int = args.run(args, settings)
    except NotFound as e:  # what was asked for is not so
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConfigurationError, MasterKeyMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return EX_CONFIG
    except (LedgerError, NotConfirmed) as e:  # nor may it be, or the user said no
        print(f"error: {e}", file=sys.stderr)
        return 2
    except UNREACHABLE as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: cannot reach the database at {_where(settings)}: {reason}", file=sys.stderr)
        return EX_UNAVAILABLE
    return code


if __name__ == "__main__":
    sys.exit(main())
