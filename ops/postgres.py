"""A throwaway PostgreSQL server for the migration tests and bench: Debian's `postgresql` package
(the Makefile installs it), a data folder of its own, a free loopback port, stopped and removed
afterwards. No Docker.

PostgreSQL refuses to run as root: under root (CI, a fresh container) the server runs as the
`postgres` user that Debian's package creates, through `runuser`; under any other user, as that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ops.kafka.broker import free_port

SERVER_USER = "postgres"  # Debian's postgresql package creates this user
FAST_UNSAFE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")  # throwaway data


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no user to run them as): the message says what to install."""


def server_bin_dir() -> Path:
    """The newest installed server's bin folder (/usr/lib/postgresql/<version>/bin on Debian)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise PostgresUnavailable("no PostgreSQL server found: install Debian's `postgresql` package (`make setup` does)")


class LocalPostgres:
    """initdb + pg_ctl in a temporary folder; `dsn` connects as the superuser `postgres`, no password."""

    def __init__(self) -> None:
        self.bin = server_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hmas-postgres-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                shutil.chown(self.root, SERVER_USER, SERVER_USER)
            except LookupError:
                raise PostgresUnavailable(f"running as root needs the `{SERVER_USER}` user that Debian's "
                                          "`postgresql` package creates") from None

    def _run(self, *args: str, timeout_s: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")

    def start(self) -> "LocalPostgres":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = " ".join(("-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                            *FAST_UNSAFE))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        return self

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
