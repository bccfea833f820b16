"""A throwaway PostgreSQL server for tests — ours and yours: `initdb` into a temp dir, a free port.

    from tokentrail.testing.postgres import postgres_server

    with postgres_server() as url:            # postgresql://tokentrail@127.0.0.1:PORT/tokentrail
        tokentrail.init(store=url)

- The binaries are found on PATH or in `/usr/lib/postgresql/<version>/bin`
  (Debian's `postgresql` package); `find_binaries()` is None when there are none.
- `initdb` and `postgres` refuse to run as root: as root they run as the
  `postgres` system user (`runuser -u postgres`), in a temp dir chowned to it.
- The server listens on 127.0.0.1 only, trusts local connections (no
  password), keeps its unix socket in the temp dir, and runs with `fsync=off`
  (a test server: speed over durability). `stop()` / `start()` restart it on
  the same port and data (what a server restart looks like to clients);
  `create_database()` gives each test a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

__all__ = ["PostgresServer", "postgres_server", "find_binaries"]


def find_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (the newest Debian version first), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; see the module docstring."""

    def __init__(self, bin_dir: Path | str | None = None, *, user: str = "tokentrail", database: str = "tokentrail") -> None:
        found = Path(bin_dir) if bin_dir else find_binaries()
        if found is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found on PATH or in /usr/lib/postgresql/*/bin; "
                               "install them with `apt-get install -y postgresql`")
        self.bin = found
        self.user = user
        self.database = database
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tokentrail-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.running = False

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "LC_ALL": "C", "LANG": "C"})
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def init(self) -> PostgresServer:
        self.socket_dir.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
                       "shared_buffers = 128MB\nmax_wal_size = 2GB\n")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.running = True
        if not getattr(self, "_created", False):
            self._created = True
            self.create_database(self.database)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: disconnect clients; `immediate`: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
            self.running = False

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.url_for(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@contextlib.contextmanager
def postgres_server(bin_dir: Path | str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL server for the block; yields its URL. Stopped and deleted afterwards."""
    with PostgresServer(bin_dir) as server:
        yield server.url


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    """Block until the server at `url` accepts connections (used after a restart)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
