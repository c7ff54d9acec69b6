"""The `ledger` subcommands that work on the read models: `projections`, `export`,
`reconcile`, `audit bundle` (added to the command through the entry-point group
`ledger.commands`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.adapters.postgres import datastore_of
from ledger.adapters.spreadsheets import write_csv
from ledger.adapters.statement_csv import parse_statement
from ledger.adapters.statement_formats import PARSERS
from ledger.domain.context import acting_as
from ledger.domain.errors import StatementRejected
from ledger.domain.reconciliation import BUCKETS
from ledger.domain.vocabulary import LANGS
from ledger.entrypoints import output
from ledger.entrypoints.runtime import Settings, opened
from ledger.usecases.progress import PROGRESS_EVERY, Progress
from projections.bundle import write_bundle
from projections.exports import At, Extract, export
from projections.reads import movements, previous_statement
from projections.schema import ensure_schema, grant_read_models
from projections.worker import ProjectionWorker, settle

if TYPE_CHECKING:
    from ledger.entrypoints.cli import Subcommands


def _projections_run(_: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger, suppress(KeyboardInterrupt):
        ProjectionWorker(ledger).run_forever()
    return 0


def _projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    output.confirm(
        args,
        "Empty every read model and apply every event again? Reads answer from the "
        "rebuilt models only as they fill.",
    )
    with opened(settings) as ledger:
        with output.progress(args, "rebuilding", "positions") as bar:
            applied = ProjectionWorker(ledger).rebuild(bar)
        settle(datastore_of(ledger))
    output.report(args, f"rebuilt the read models from {applied} events", {"events": applied})
    return 0


def _export_audit_trail(args: argparse.Namespace, settings: Settings) -> int:
    def write(extract: Extract, at: At) -> None:
        with (
            open(args.out, "wb") if args.out else nullcontext(sys.stdout.buffer) as out,
            output.progress(args, "exporting", "rows") as bar,
        ):
            write_csv(extract.columns, _counted(extract, bar), args.lang, out, bom=args.bom)

    with opened(settings) as ledger:
        ProjectionWorker(ledger).catch_up()
        filters = {"fund_year": args.fund_year, "talent_id": None}
        export(datastore_of(ledger), "audit-trail", filters, write)
    return 0


def _counted(extract: Extract, bar: Progress) -> Iterator[Any]:
    """The extract's rows, telling `bar` how many have gone."""
    for n, row in enumerate(extract.rows, 1):
        if not n % PROGRESS_EVERY:
            bar(n, extract.count)
        yield row
    bar(extract.count, extract.count)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    data = Path(args.file).read_bytes()
    try:
        with output.progress(args, "reading", "lines") as bar:
            statement = (
                parse_statement(data, progress=bar)
                if args.profile == "ledger"
                else PARSERS[args.profile](data)
            )
    except StatementRejected as e:
        print(f"refused: {e.detail}", file=sys.stderr)
        return 2
    with (
        opened(settings) as ledger,
        acting_as(output.actor(args), f"cli-reconcile-{statement.sha256[:12]}"),
    ):
        ProjectionWorker(ledger).catch_up()
        datastore = datastore_of(ledger)
        outcome = ledger.import_statement(
            statement,
            lambda s: movements(datastore, s),
            lambda s: previous_statement(datastore, s),
        )
    found = outcome.value.report
    counts = ", ".join(f"{bucket} {len(found[bucket])}" for bucket in BUCKETS)
    output.report(
        args,
        f"{found['reconciliation_id']}: {counts}"
        + (" (already imported)" if outcome.replayed else ""),
        {**found, "replayed": outcome.replayed},
    )
    if args.out:
        Path(args.out).write_text(json.dumps(found, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def _audit_bundle(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger, output.progress(args, "writing", "events") as bar:
        ProjectionWorker(ledger).catch_up()
        checkpoint, events = write_bundle(ledger, args.out, args.checkpoint, args.fund_year, bar)
    output.report(
        args,
        f"wrote {args.out}: {events} events up to checkpoint {checkpoint.checkpoint_id} "
        f"(position {checkpoint.head_position})",
        {
            "file": str(args.out),
            "events": events,
            "checkpoint_id": checkpoint.checkpoint_id,
            "head_position": checkpoint.head_position,
        },
    )
    return 0


def _db_init(args: argparse.Namespace, settings: Settings) -> int:
    with opened(settings) as ledger:  # opening it creates or upgrades the ledger's schema
        ensure_schema(datastore_of(ledger))
        if args.app_role:
            grant_read_models(datastore_of(ledger), args.app_role)
    output.report(
        args,
        "the schema is up to date"
        + (f"; {args.app_role} may append to the ledger, never change it" if args.app_role else ""),
        {"schema": "up to date", "app_role": args.app_role},
    )
    return 0


def add_commands(commands: Subcommands, groups: dict[str, Subcommands]) -> None:
    db = commands.add_parser("db", help="the database's schema and roles").add_subparsers(
        dest="db_command", required=True
    )
    init = output.reporting(
        db.add_parser(
            "init",
            help="create or upgrade the schema (as its owner), and grant an application role",
        )
    )
    init.add_argument(
        "--app-role",
        default=None,
        metavar="NAME",
        help="the role `serve` and `projections run` connect as: created if missing",
    )
    init.set_defaults(run=_db_init)

    bundle = output.reporting(
        groups["audit"].add_parser(
            "bundle", help="write the events up to a checkpoint, for `ledger-verify`"
        )
    )
    bundle.add_argument(
        "--checkpoint", type=int, default=None, metavar="ID", help="default: the latest"
    )
    bundle.add_argument(
        "--fund-year", type=int, default=None, help="also the fund year as of the checkpoint"
    )
    bundle.add_argument("--out", type=Path, required=True, help="the zip file to write")
    bundle.set_defaults(run=_audit_bundle)

    projections = commands.add_parser("projections", help="read-model workers").add_subparsers(
        dest="projections_command", required=True
    )
    run = projections.add_parser("run", help="run projection workers in this process only")
    run.set_defaults(run=_projections_run)
    rebuild = output.reporting(
        projections.add_parser("rebuild", help="drop and rebuild every read model")
    )
    output.confirmable(rebuild)
    rebuild.set_defaults(run=_projections_rebuild)

    rec = output.reporting(
        commands.add_parser("reconcile", help="reconcile a bank statement and record it")
    )
    rec.add_argument("file", help="the statement: CSV, camt.053 or MT940")
    rec.add_argument(
        "--profile",
        choices=tuple(PARSERS),
        default="ledger",
        help="the statement's format: the ledger's own CSV, a Chinese online-banking export "
        "(CSV), ISO 20022 camt.053.001.08 (XML) or SWIFT MT940",
    )
    output.acting(rec, "imports it")
    rec.add_argument("--out", default=None, help="also write the report as JSON to this file")
    rec.set_defaults(run=_reconcile)

    export = commands.add_parser("export", help="exports").add_subparsers(
        dest="export_command", required=True
    )
    trail = export.add_parser("audit-trail", help="the audit trail as CSV (RFC 4180)")
    trail.add_argument("--fund-year", type=int, default=None, help="only this fund year")
    trail.add_argument("--out", default=None, help="a file instead of standard output")
    trail.add_argument(
        "--lang", choices=LANGS, default="zh", help="headers and code labels in this language"
    )
    trail.add_argument("--bom", action="store_true", help="start with a byte-order mark")
    trail.set_defaults(run=_export_audit_trail)
