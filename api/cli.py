"""`ledger serve`: the HTTP API (added to the command through the entry-point group
`ledger.commands`)."""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg.conninfo import make_conninfo

from ledger.adapters.api_keys import issue_key
from ledger.adapters.postgres import datastore_of
from ledger.demo import load_demo
from ledger.domain.context import acting_as
from ledger.domain.roles import ROLES
from ledger.entrypoints.runtime import (
    Settings,
    database_url,
    master_key,
    open_ledger,
    signing_key,
)
from ledger.usecases.ledger import Ledger
from projections.schema import ensure_schema, grant_read_models
from projections.worker import ProjectionWorker

if TYPE_CHECKING:
    from ledger.entrypoints.cli import Subcommands


# the embedded server's application role: the owner (the server's superuser) sets up and
# upgrades the schema; the API and its workers append as this role, which cannot change
# the history (docs/deployment.md, "Database roles")
EMBEDDED_APP_ROLE = "ledger_app"


def _demo_keys(ledger: Ledger, data_dir: Path) -> None:
    """A new key per role, printed, and kept as shell variables (ADMIN=tl_..., one per
    role) in `data_dir/demo-keys.sh`, readable by its owner only."""
    keys = {role: issue_key(ledger, f"demo-{role}", [role]).key for role in ROLES}
    for role, key in keys.items():
        print(f"{role:>9}: {key}", flush=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo-keys.sh"
    path.touch(mode=0o600)
    path.write_text("".join(f"{role.upper()}={key}\n" for role, key in keys.items()))
    print(f"the keys, as shell variables: . {path}", flush=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from api.children import Child, run_projections  # noqa: PLC0415 - likewise
    from api.protocol import HEAD_TIMEOUT_VARIABLE, HeadTimedProtocol  # noqa: PLC0415 - likewise
    from api.writer import SOCKET_VARIABLE  # noqa: PLC0415 - likewise
    from api.writer_process import WriterProcess  # noqa: PLC0415 - likewise

    url = database_url(settings)
    ledger = open_ledger(url, settings)
    try:
        if settings.database_url is None:  # embedded: set up, then serve as the app role
            ensure_schema(datastore_of(ledger))
            grant_read_models(datastore_of(ledger), EMBEDDED_APP_ROLE)
            url = make_conninfo(url, user=EMBEDDED_APP_ROLE)
        if args.demo and ledger.store.max_notification_id() is None:
            # into an empty ledger only: a restart keeps the keys it made then
            load_demo(ledger)
            with acting_as("demo", "demo-keys"):
                _demo_keys(ledger, settings.data_dir)
        elif args.demo:
            print(
                "the ledger holds events already: no demo data or keys were added "
                f"(the keys made with the demo, if any: {settings.data_dir / 'demo-keys.sh'})",
                flush=True,
            )
        if args.demo:  # the walk-through's first read comes as soon as the server answers
            ProjectionWorker(ledger).catch_up()
    finally:
        ledger.close()
    # Worker processes find the database the parent resolved (and keeps running),
    # and the master and signing keys.
    os.environ["LEDGER_DATABASE_URL"] = url
    os.environ["LEDGER_MASTER_KEY"] = base64.b64encode(master_key(settings)).decode()
    os.environ["LEDGER_SIGNING_KEY"] = base64.b64encode(signing_key(settings)).decode()
    # each worker process writes its metrics into one fresh directory; a scrape of any
    # of them adds them up (`api.metrics`)
    metrics_dir = settings.data_dir / f"metrics-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ[HEAD_TIMEOUT_VARIABLE] = str(args.timeout_header)
    atexit.register(shutil.rmtree, metrics_dir, True)
    # uvicorn re-raises SIGTERM once shut down; exiting instead lets atexit stop an
    # embedded PostgreSQL this process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # one process writes, the API processes hand it their writes (`api.writer`)
    writer = WriterProcess()
    writer.start()
    atexit.register(writer.stop)  # after uvicorn stopped the API processes
    os.environ[SOCKET_VARIABLE] = writer.path
    if settings.projections_in_process:  # in a process of its own (`api.children`)
        projections = Child("projections", run_projections)
        projections.start()
        atexit.register(projections.stop)
        os.environ["LEDGER_PROJECTIONS"] = "separate"  # none in the API processes
    print(f"the console: http://{args.host}:{args.port}/console/", flush=True)
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=args.timeout_keep_alive,
        http=HeadTimedProtocol,
        access_log=False,
        log_config=None,
    )
    return 0


def add_commands(commands: Subcommands, _: dict[str, Subcommands]) -> None:
    serve = commands.add_parser(
        "serve", help="run the HTTP API, its writing process and the projection workers"
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes (and one writing process besides)"
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=512,
        help="connections and requests each process serves at once; past it, a 503 at once",
    )
    serve.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=5,
        help="seconds an idle connection is kept open",
    )
    serve.add_argument(
        "--timeout-header",
        type=float,
        default=10.0,
        help="seconds a client has to send a request's line and headers; then a 408",
    )
    serve.add_argument("--demo", action="store_true", help="load demo data into an empty ledger")
    serve.set_defaults(run=_serve)
