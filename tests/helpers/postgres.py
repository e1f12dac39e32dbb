"""A real PostgreSQL for the store tests: a throwaway cluster (``initdb`` +
``pg_ctl`` from Debian's ``postgresql`` package) on a free loopback port,
its socket and data in a temp dir, stopped at the end of the session.
fsync is off (nothing here must survive a power cut); synchronous_commit
stays on, so a commit that returned survives the server's own crash
(``halt``: ``pg_ctl stop -m immediate``), as the store's contract says.

``initdb`` refuses to run as root: as root the cluster runs as the
``postgres`` user the package creates (``runuser``).  A missing binary
fails the test (never skips), naming the package.  Each test gets a
database of its own, copied from a migrated template (``fresh_database``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from realtime.config.settings import Settings, StoreSettings
from realtime.store.postgres import migrate
from tests.helpers.redis import free_port

PACKAGE = "postgresql"
TEMPLATE = "realtime_template"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        pytest.fail(
            f"initdb/pg_ctl are not installed: the PostgreSQL store tests need the Debian package {PACKAGE!r} "
            f"(apt-get install {PACKAGE}; tools/test.sh installs it)",
            pytrace=False,
        )
    return Path(found[-1]).parent


class PostgresCluster:
    """One ``initdb``'d cluster, started with ``pg_ctl -w`` (which returns once it accepts connections)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="realtime-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "realtime"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb: "cannot be run as root"
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(f"running as root needs the 'postgres' user that the Debian package {PACKAGE!r} creates",
                            pytrace=False)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._numbers = itertools.count(1)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True)
        if done.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self.resume()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
            migrate(conn)

    def resume(self) -> None:
        """Start the server (again, on the same port and data)."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
                   " -c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def halt(self) -> None:
        """Stop the server at once (an outage), keeping its data for :meth:`resume`."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self, *, migrated: bool = True) -> str:
        """A new database (migrated, from the template, or empty); its URL."""
        name = f"t{next(self._numbers)}"
        template = TEMPLATE if migrated else "template0"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)


def write_store_key(directory: Path) -> Path:
    """The ``[store] key_file`` every node of a test shares (32 bytes, 0600)."""
    key_file = directory / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    return key_file


def pg_node_settings(base: Settings, url: str, key_file: Path, state_dir: Path, **store: Any) -> Settings:
    """``base`` as one node on the database at ``url``, with a state dir of its own."""
    return attrs.evolve(base, server=attrs.evolve(base.server, state_dir=state_dir),
                        store=StoreSettings(url=url, key_file=key_file, **store))


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started throwaway cluster, stopped and removed afterwards whatever happens."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
