"""The default store: one SQLite file, no setup.

- Schema created on first use and versioned in `schema_version`; each later
  change is a migration that adds, never drops (`MIGRATIONS`).
- WAL mode, `synchronous=NORMAL`: readers (the CLI, the dashboard) never block
  the writer, and a batch is one transaction.
- Several processes may write one file: SQLite's busy timeout waits for the
  lock, a batch that still finds it locked is retried, and `INSERT OR IGNORE`
  on the record id makes a retry harmless.
- A batch SQLite refuses for a bad value (IntegrityError, OverflowError, a
  value it cannot bind, …) is split in halves, recursively, so only the bad
  record(s) are lost: the rest is written and `RecordsRejected` tells the
  pipeline how many were not (counted `rejected` for this store).
- `write_stats(rows)` notes this process's losses per sink in
  `tokentrail_stats` (one row per process and sink, upserted); `losses()`
  reads them back for `tokentrail doctor`.
- A file that is not a SQLite database, or a newer tokentrail's, is reported
  and left untouched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Any, Sequence

from ..errors import StoreError
from ..record import LLMCall
from . import aggregates
from .query import percentile
from .schema import DIALECTS, SCHEMA_VERSION, TABLES, codecs, migrations
from .sqlstore import SQLStore

__all__ = ["SQLiteStore", "SCHEMA_VERSION"]

_DIALECT = DIALECTS["sqlite"]
MIGRATIONS = migrations(_DIALECT)
_TABLES = codecs(_DIALECT)


# SQLite's limit on bound values: 999 before 3.32, 32,766 since.
_MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
# Rows per statement, at most. Many: each statement releases the GIL around SQLite and must take it back,
# which costs up to the interpreter's switch interval (5 ms) while an application thread computes flat
# out — at 32 rows a statement, a 2,000-call batch took ~70 of those waits and the store's thread fell
# to ~4,000 calls/s (its buffer filled, calls were dropped); at 256, ten statements. (1,024 rows made
# fewer still but cost ≈ 1–2 µs a call more CPU than 32 or 256 in alternated runs.)
_MAX_ROWS = 256
_multi: dict[tuple[str, int], str] = {}
_flat = chain.from_iterable


def _many_rows(sql: str, rows: list[list[Any]]) -> list[tuple[str, list[Any], bool]]:
    """`INSERT … VALUES (…)` for each row, as a few `INSERT … VALUES (…), (…), …` of 2**k rows each:
    one statement step for many rows costs less than a step and a reset per row (≈ 7k instructions a
    call on a 20-call batch). Powers of two keep the distinct statements, which the driver caches, few."""
    width = len(rows[0]) if rows else 1
    cap = 1
    while cap * 2 <= min(_MAX_ROWS, _MAX_PARAMS // max(width, 1)):
        cap *= 2
    out = []
    at = 0
    while at < len(rows):
        size = cap
        while size > len(rows) - at:
            size //= 2
        text = _multi.get((sql, size))
        if text is None:
            if len(_multi) >= 512:  # records of ever new shapes: keep the memo small
                _multi.clear()
            head, values = sql.split(" VALUES ", 1)
            text = _multi[(sql, size)] = f"{head} VALUES {', '.join([values] * size)}"
        out.append((text, list(_flat(rows[at:at + size])), False))  # in C: half a comprehension's cost
        at += size
    return out


def _aggregates_after(since: int, inserted: int) -> list[tuple[str, Any, bool]]:
    """What keeps the aggregates after an insert of `inserted` calls above rowid `since`: nothing while
    the store is below `aggregates.KEPT_FROM` calls, all of them made afresh by the insert that reaches
    it, the batch's own after (aggregates.py's docstring says why and why each call counts once)."""
    live_from = min(aggregates.KEPT_FROM, aggregates.MIN_CALLS)  # never past where reads start using them
    if inserted <= 0 or since + inserted < live_from:
        return []
    if since < live_from:
        return aggregates.full_rebuild_sql("qmark")
    return aggregates.batch_sql("qmark", since)


def path_of(url: str) -> str:
    """The file path in a `sqlite:///path` URL (`:memory:` stays as it is)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    path = rest[1:] if rest.startswith("/") else rest
    if path in ("", ":memory:"):
        return ":memory:"
    return str(Path(path).expanduser())


_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                OverflowError, ValueError, TypeError)


class SQLiteStore(SQLStore):
    """A tokentrail store in one SQLite file: a sink (`export`) and the read side (`calls`, `summary`);
    what it shares with the other SQL stores (reads, retention, loss notes, shared budgets) is in `sqlstore`."""

    kind = "sqlite"
    dialect = _DIALECT
    style = "qmark"
    codecs = _TABLES

    def __init__(self, url: str = "sqlite:///tokentrail.db", *, busy_timeout_s: float = 10.0) -> None:
        self.url = url
        self.path = path_of(url)
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._memory_conn: sqlite3.Connection | None = None
        # One shared connection serves an in-memory store, so its users take turns; a file store
        # gives each thread its own connection and needs no lock.
        self._guard: Any = threading.RLock() if self.path == ":memory:" else contextlib.nullcontext()
        self._ready = False
        self._connection()  # fail now, with a clear message, if the file is unusable

    # -- connections -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"tokentrail: cannot create the folder for the store {self.path}: {exc.strerror or exc}") from None
            if Path(self.path).exists() and not os.access(self.path, os.W_OK):
                raise StoreError(f"tokentrail: the store {self.path} is not writable")
            if not os.access(parent, os.W_OK):
                raise StoreError(f"tokentrail: cannot write the store {self.path}: folder {parent} is not writable")
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_aggregate("tt_percentile", 2, percentile)
            if not self._ready:
                self._migrate(conn)
                self._ready = True
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                raise StoreError(f"tokentrail: the store {self.path} stayed locked by another process ({exc})") from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(
                    f"tokentrail: {self.path} is not a usable SQLite database ({exc}); it was left untouched — "
                    "move it away or point `store` at another file"
                ) from None
            raise
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            if self._memory_conn is None:
                self._memory_conn = self._connect()
            return self._memory_conn
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # A connection must not cross fork(): the child opens its own and
            # leaves the parent's alone (closing it could disturb the parent's locks).
            local.conn, local.pid = self._connect(), os.getpid()
        return local.conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # A store already at this version needs no write lock: another process may hold it for long
        # (a writer, or a backup), and opening the store should not wait for it.
        try:
            if conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION:
                return
        except sqlite3.OperationalError:
            pass  # no schema_version yet: create it below
        conn.execute("BEGIN IMMEDIATE")
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = 0
            if "schema_version" in names:
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                version = row[0] or 0
            elif names & set(TABLES.values()):
                raise StoreError(
                    f"tokentrail: {self.path} has tokentrail-named tables but no schema_version; "
                    "it was left untouched"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"tokentrail: {self.path} is at schema version {version}, newer than this tokentrail "
                    f"({SCHEMA_VERSION}); upgrade tokentrail to write to it"
                )
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?)",
                    (target, datetime.now(timezone.utc).isoformat(timespec="seconds")),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- the sink side -----------------------------------------------------------------------------

    def _is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc).lower():
            return False
        return isinstance(exc, _DATA_ERRORS)

    def _write_batch(self, records: Sequence[Any]) -> None:
        by_table = self.records_by_table(records)
        calls = by_table.pop(_TABLES[LLMCall], [])
        inserts = [statement for sql, rows in _TABLES[LLMCall].batches(calls) for statement in _many_rows(sql, rows)]
        self._write(inserts + [(sql, rows, True) for table, items in by_table.items() for sql, rows in table.batches(items)],
                    then=(lambda counts, since: _aggregates_after(since, sum(counts[:len(inserts)]))) if inserts else None)

    def _write(self, statements: Sequence[tuple[str, Any, bool]], then: Any = None) -> list[int]:
        """Run `(sql, params, many)` statements in one transaction (retried while another process holds
        the lock), and then those `then(counts, since)` gives (the aggregates of the calls inserted: those
        whose rowid is above `since`, the largest before the statements ran); the counts."""
        for attempt in range(5):
            try:
                with self._guard:
                    conn = self._connection()
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        since = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM llm_calls").fetchone()[0] \
                            if then is not None else None
                        counts = [(conn.executemany if many else conn.execute)(sql, params).rowcount
                                  for sql, params, many in statements]
                        for sql, params, many in (then(counts, since) if then is not None else ()):
                            (conn.executemany if many else conn.execute)(sql, params)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                return counts
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if attempt == 4 or not ("locked" in text or "busy" in text):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def after_fork(self) -> None:
        self._local = threading.local()
        if self.path == ":memory:":
            self._guard = threading.RLock()

    def close(self) -> None:
        self.run_close_hooks()
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
            self._local = threading.local()
        if self._memory_conn is not None:
            self._memory_conn.close()
            self._memory_conn = None

    # -- the read side: `sqlstore.SQLStore` ---------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard:
            return self._connection().execute(sql, params).fetchall()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

