"""The `ledger` command (CONTRACT §8)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from api.keys import ROLES, create_key
from ledger.audit import verify_chain
from ledger.context import acting_as
from ledger.errors import NotFound
from ledger.logs import configure_logging
from ledger.personal import MasterKeyMismatch
from ledger.reconciliation import BUCKETS
from ledger.runtime import (
    ConfigurationError,
    Settings,
    database_url,
    master_key,
    open_ledger,
    tune_collector,
)
from ledger.statements import StatementRejected, parse_statement
from ledger.store import datastore_of
from projections.export import audit_csv
from projections.reads import audit_rows, movements
from projections.worker import ProjectionWorker, settle

log = structlog.get_logger("ledger")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    url = database_url(settings)
    ledger = open_ledger(url, settings)
    try:
        if args.demo:
            from ledger.demo import load_demo  # noqa: PLC0415 - demo only

            datastore = datastore_of(ledger)
            if ledger.recorder.max_notification_id() is None:
                load_demo(ledger)
            for role in ROLES:
                key = create_key(datastore, f"demo-{role}", [role])
                print(f"{role:>9}: {key}", flush=True)
    finally:
        ledger.close()
    # Worker processes find the database the parent resolved (and keeps running),
    # and the master key that opens it.
    os.environ["LEDGER_DATABASE_URL"] = url
    os.environ["LEDGER_MASTER_KEY"] = base64.b64encode(master_key(settings)).decode()
    # uvicorn re-raises SIGTERM once shut down; exiting instead lets atexit stop an
    # embedded PostgreSQL this process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
    )
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    try:
        key = create_key(datastore_of(ledger), args.name, args.role)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    print(f"created key for {args.name} with roles {', '.join(sorted(set(args.role)))}:")
    print(key)
    return 0


def _projections_run(_: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    worker = ProjectionWorker(ledger)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        ledger.close()
    return 0


def _projections_rebuild(_: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    try:
        applied = ProjectionWorker(ledger).rebuild()
        print(f"rebuilt the read models from {applied} events", flush=True)
        settle(datastore_of(ledger))
    finally:
        ledger.close()
    return 0


def _audit_verify(_: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    try:
        result = verify_chain(datastore_of(ledger))
    finally:
        ledger.close()
    if result.ok:
        print(f"intact: {result.events_checked} events, head {result.head}")
        return 0
    print(
        f"TAMPERED: the hash chain breaks at position {result.first_bad_position} "
        f"({result.events_checked} events before it are intact)"
    )
    return 1


def _export_audit_trail(args: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    try:
        ProjectionWorker(ledger).catch_up()
        lines = audit_csv(audit_rows(datastore_of(ledger), args.fund_year))
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as out:
                out.writelines(lines)
        else:
            sys.stdout.writelines(lines)
    finally:
        ledger.close()
    return 0


def _talents_forget(args: argparse.Namespace, settings: Settings) -> int:
    ledger = open_ledger(database_url(settings), settings)
    try:
        with acting_as(args.actor, f"cli-forget-{args.talent_id}"):
            outcome = ledger.forget_talent(args.talent_id)
    except NotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    log.info("personal data erased", talent_id=args.talent_id, position=outcome.position)
    print(f"erased the personal data of talent {args.talent_id}")
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    data = Path(args.file).read_bytes()

    def bar(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        print(
            f"\rreading  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} lines",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        statement = parse_statement(data, progress=bar)
    except StatementRejected as e:
        print(f"\nrefused: {e.detail}", file=sys.stderr)
        return 2
    print(f"\rreading  [{'#' * 30}] {len(statement.lines)} lines{' ' * 10}", file=sys.stderr)
    ledger = open_ledger(database_url(settings), settings)
    try:
        with acting_as(args.actor, f"cli-reconcile-{statement.sha256[:12]}"):
            ProjectionWorker(ledger).catch_up()
            print("matching against the ledger...", file=sys.stderr, flush=True)
            outcome = ledger.import_statement(
                statement, lambda s: movements(datastore_of(ledger), s)
            )
    finally:
        ledger.close()
    report = outcome.value.report
    counts = ", ".join(f"{bucket} {len(report[bucket])}" for bucket in BUCKETS)
    print(
        f"{report['reconciliation_id']}: {counts}"
        + (" (already imported)" if outcome.replayed else "")
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API and the projection workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.add_argument("--demo", action="store_true", help="load demo data into an empty ledger")
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; the key is the last line printed")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, action="append", choices=ROLES)
    create.set_defaults(run=_keys_create)

    projections = commands.add_parser("projections", help="read-model workers").add_subparsers(
        dest="projections_command", required=True
    )
    run = projections.add_parser("run", help="run projection workers in this process only")
    run.set_defaults(run=_projections_run)
    rebuild = projections.add_parser("rebuild", help="drop and rebuild every read model")
    rebuild.set_defaults(run=_projections_rebuild)

    audit = commands.add_parser("audit", help="auditor tools").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="check the hash chain over all events")
    verify.set_defaults(run=_audit_verify)

    talents = commands.add_parser("talents", help="talents' personal data").add_subparsers(
        dest="talents_command", required=True
    )
    forget = talents.add_parser(
        "forget", help="destroy a talent's data key: its name reads as erased everywhere"
    )
    forget.add_argument("talent_id")
    forget.add_argument("--actor", default="cli-admin", help="recorded as who erased it")
    forget.set_defaults(run=_talents_forget)

    rec = commands.add_parser("reconcile", help="reconcile a bank statement (CSV) and record it")
    rec.add_argument("file")
    rec.add_argument("--actor", default="cli-treasury", help="recorded as who imported it")
    rec.add_argument("--out", default=None, help="also write the report as JSON to this file")
    rec.set_defaults(run=_reconcile)

    export = commands.add_parser("export", help="exports").add_subparsers(
        dest="export_command", required=True
    )
    trail = export.add_parser("audit-trail", help="the audit trail as CSV (RFC 4180)")
    trail.add_argument("--fund-year", type=int, default=None)
    trail.add_argument("--out", default=None, help="a file instead of standard output")
    trail.set_defaults(run=_export_audit_trail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    tune_collector()
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args, Settings.from_env())
    except (ConfigurationError, MasterKeyMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
