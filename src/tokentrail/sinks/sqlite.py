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
from pathlib import Path
from typing import Any, Sequence

from ..errors import RecordsRejected, StoreError
from ..record import FIELDS, LLMCall, Outcome, Span, ToolCall
from .query import QueryBuilder, percentile
from .schema import DIALECTS, SCHEMA_VERSION, STATS_COLUMNS, STATS_TABLE, TABLES, TableCodec, codecs, migrations

__all__ = ["SQLiteStore", "SCHEMA_VERSION"]

_DIALECT = DIALECTS["sqlite"]
MIGRATIONS = migrations(_DIALECT)
_TABLES = codecs(_DIALECT)


def path_of(url: str) -> str:
    """The file path in a `sqlite:///path` URL (`:memory:` stays as it is)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    path = rest[1:] if rest.startswith("/") else rest
    if path in ("", ":memory:"):
        return ":memory:"
    return str(Path(path).expanduser())


_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                OverflowError, ValueError, TypeError)


def _is_data_error(exc: BaseException) -> bool:
    """A batch refused for what is in it (retrying it whole would fail again), not for the database's state."""
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc).lower():
        return False
    return isinstance(exc, _DATA_ERRORS)


class SQLiteStore:
    """A tokentrail store in one SQLite file: a sink (`export`) and the read side (`calls`, `summary`)."""

    kind = "sqlite"

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

    def schema_version(self) -> int:
        return self._read("SELECT MAX(version) FROM schema_version")[0][0]

    # -- the sink side -----------------------------------------------------------------------------

    def export(self, records: Sequence[Any]) -> None:
        """Write a batch in one transaction; retried while another process holds the lock. A batch refused
        for a bad value is split until only the bad records are left out (`RecordsRejected` counts them)."""
        try:
            self._write_batch(records)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if not _is_data_error(exc):
                raise
            rejected, cause = self._bisect(list(records), exc)
            if rejected:
                raise RecordsRejected(rejected, cause) from None

    def _bisect(self, records: list[Any], cause: BaseException) -> tuple[int, BaseException]:
        """Write what can be written of a refused batch, in halves; (records refused, one of the errors)."""
        if len(records) <= 1:
            return len(records), cause
        rejected = 0
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            try:
                self._write_batch(half)
            except Exception as exc:  # noqa: BLE001
                if not _is_data_error(exc):
                    raise  # locked, disk full, closed: the pipeline retries the whole batch (INSERT OR IGNORE)
                n, cause = self._bisect(half, exc)
                rejected += n
        return rejected, cause

    def _write_batch(self, records: Sequence[Any]) -> None:
        by_table: dict[TableCodec, list[Any]] = {}
        for record in records:
            table = _TABLES.get(type(record))
            if table is not None:
                by_table.setdefault(table, []).append(record)
        statements = [batch for table, items in by_table.items() for batch in table.batches(items)]
        for attempt in range(5):
            try:
                with self._guard:
                    conn = self._connection()
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for sql, rows in statements:
                            conn.executemany(sql, rows)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if attempt == 4 or not ("locked" in text or "busy" in text):
                    raise
                time.sleep(0.05 * 2**attempt)

    def write_stats(self, rows: Sequence[dict[str, Any]]) -> None:
        """Note losses: rows of `STATS_COLUMNS` (without `updated_at`), upserted by (run_id, sink)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        values = [[now if c == "updated_at" else row.get(c) for c in STATS_COLUMNS] for row in rows]
        sql = (f"INSERT OR REPLACE INTO {STATS_TABLE} ({', '.join(STATS_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(STATS_COLUMNS))})")
        with self._guard:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def losses(self) -> list[dict[str, Any]]:
        """Records lost on their way to each sink, as the processes that lost them noted (newest first):
        `[{sink, processes, written, dropped, failed, rejected, last}]`."""
        try:
            rows = self._read(
                f"SELECT sink, COUNT(*), SUM(written), SUM(dropped), SUM(failed), SUM(rejected), MAX(updated_at) "
                f"FROM {STATS_TABLE} GROUP BY sink ORDER BY MAX(updated_at) DESC")
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # a store from before losses were noted, opened read-only
            raise
        keys = ("sink", "processes", "written", "dropped", "failed", "rejected", "last")
        return [dict(zip(keys, row)) for row in rows]

    def after_fork(self) -> None:
        self._local = threading.local()
        if self.path == ":memory:":
            self._guard = threading.RLock()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
            self._local = threading.local()
        if self._memory_conn is not None:
            self._memory_conn.close()
            self._memory_conn = None

    # -- the read side -----------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard:
            return self._connection().execute(sql, params).fetchall()

    def _select(self, cls: type, since: Any, until: Any, where: Any, limit: int | None, order: str) -> list[Any]:
        table = _TABLES[cls]
        query = QueryBuilder(table.columns, table.time_column, style="qmark")
        clause, params = query.where(since=since, until=until, where=where)
        sql = f"SELECT {', '.join(table.columns)} FROM {table.name}{clause} {query.order(order)}"
        if limit is not None:
            sql += f" LIMIT {query.limit(limit)}"
        return [table.record(row) for row in self._read(sql, params)]

    def calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[LLMCall]:
        """Recorded LLM calls, newest first by default. `where={"customer_id": "acme", "model": ["a", "b"]}`."""
        return self._select(LLMCall, since, until, where, limit, order)

    def tool_calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[ToolCall]:
        return self._select(ToolCall, since, until, where, limit, order)

    def outcomes(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Outcome]:
        return self._select(Outcome, since, until, where, limit, order)

    def spans(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Span]:
        """Workflow runs and framework chains/agents (the parents of calls)."""
        return self._select(Span, since, until, where, limit, order)

    def calls_after(self, cursor: int = 0, where: Any = None, limit: int = 1000) -> tuple[list[LLMCall], int]:
        """Calls stored after `cursor` (in insertion order, so a call that started earlier but was
        written later is not missed), and the cursor to pass next time. `cursor=-1`: from now on."""
        table = _TABLES[LLMCall]
        if cursor < 0:
            return [], self._read("SELECT COALESCE(MAX(rowid), 0) FROM llm_calls")[0][0]
        query = QueryBuilder(table.columns, table.time_column, style="qmark")
        clause, params = query.where(where=where)
        clause = (clause + " AND" if clause else " WHERE") + " rowid > ?"
        rows = self._read(f"SELECT rowid, {', '.join(table.columns)} FROM llm_calls{clause} ORDER BY rowid LIMIT {query.limit(limit)}",
                          [*params, cursor])
        if not rows:
            return [], cursor
        return [table.record(row[1:]) for row in rows], rows[-1][0]

    def summary(self, group_by: Sequence[str] | str = ("model",), since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
        """Per group: calls, tokens, cost, unpriced calls, errors, error rate, p50/p95 latency, p50 TTFT."""
        query = QueryBuilder(FIELDS[LLMCall], "started_at", style="qmark")
        sql, params, keys = query.summary_sql("llm_calls", group_by, since=since, until=until, where=where)
        return query.summary_rows(self._read(sql, params), keys)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

