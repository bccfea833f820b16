"""The store for many hosts: one PostgreSQL database (`postgresql://user:pass@host:5432/db`).

Needs psycopg 3 and its pool: `pip install 'tokentrail[postgres]'`; without
them, asking for a `postgresql://` store fails at `init()` / `open_store()`
with that command in the message.

- Same schema, codec and queries as SQLite (`schema.py`, `query.py`,
  `sqlstore.py`: one query layer, two dialects). The schema is versioned in
  `schema_version` and migrated on open, under an advisory lock, so many
  processes may start at once.
- Record tables are partitioned by month on their time column (partitions are
  created as records for a month first arrive); `prune` drops whole months
  and deletes only in the month the cut falls in.
- A batch is written with `COPY` into a temporary table and moved into the
  table in the same transaction: as a plain `INSERT` in a savepoint, and only
  when an id is already stored with `INSERT … ON CONFLICT DO NOTHING`, so a
  batch retried after a lost connection is never written (or summed) twice.
  A record without a start time is stored at the time it is written (the
  partition key cannot be NULL).
- Connections come from a `psycopg_pool.ConnectionPool` (checked before use,
  so a server restart costs no failed batch more than the one in flight).
  While the server is down `export` raises: the store's lane keeps the
  records in its bounded buffer, retries with backoff, and counts what it
  cannot write (`failed`, or `dropped` once the buffer is full); the
  application never waits. A server that is down when the store opens is
  not an error: the schema is created at the first write or read that
  reaches it.
- Each connection sets `jit = off` and `work_mem = 64MB` for its own session
  (nothing server-wide): the reports are short statements over many rows, for
  which JIT compiling took longer than running (0.6 s of a 1 s dashboard
  answer at 10,000,000 calls), and the breakdowns' sorts spilled to disk at
  the default 4 MB (1.2 s → 0.5 s). An `options=` in the URL comes after them
  and wins (`?options=-c%20work_mem%3D16MB`), except for `timezone` and
  `datestyle`, which the store needs as it sets them.
- `calls_after` (`tokentrail tail`) follows the `seq` column (insertion
  order). Two writers' transactions can commit out of `seq` order, so a tail
  that reads between them may skip a call of the slower one; `calls()` and
  the reports always see every call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from datetime import date, datetime, timezone
from typing import Any, Iterator, Sequence

from .. import log
from ..errors import ConfigError, StoreError
from ..record import LLMCall
from .aggregates import NEEDED, NEW_CALLS, batch_sql
from .schema import DIALECTS, SCHEMA_VERSION, codecs, migrations, partition_name
from .sqlstore import SQLStore

__all__ = ["PostgresStore", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'tokentrail[postgres]'"
_DIALECT = DIALECTS["postgresql"]
MIGRATIONS = migrations(_DIALECT)
_TUNING = "-c jit=off -c work_mem=64MB"  # see the module docstring
_REQUIRED = "-c timezone=UTC -c datestyle=ISO"  # how times are read back
_LOCK_KEY = 0x746F6B74  # pg_advisory_xact_lock key for migrations and partitions ("tokt")

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in an environment without the extra
    psycopg = None
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None


def _session_options(url: str) -> str:
    """The connection's `options`: our tuning, then the URL's own `options` (which may change it), then
    what the store cannot do without."""
    try:
        own = psycopg.conninfo.conninfo_to_dict(url).get("options") or ""
    except psycopg.ProgrammingError:
        own = ""  # a URL psycopg cannot read fails at connect, with its own message
    return " ".join(part for part in (_TUNING, own, _REQUIRED) if part)


def _close_in_background(pool: Any, pid: int) -> None:
    if pid == os.getpid() and not pool.closed:  # never a parent's pool from a forked child: its sockets are shared
        threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, name="tokentrail-pool-close", daemon=True).start()


def _month(moment: datetime) -> tuple[int, int]:
    moment = moment.astimezone(timezone.utc)
    return moment.year, moment.month


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


class PostgresStore(SQLStore):
    """A tokentrail store in PostgreSQL; see the module docstring."""

    kind = "postgresql"
    dialect = _DIALECT
    style = "format"

    def __init__(self, url: str, *, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        if psycopg is None:
            raise ConfigError(f"tokentrail: the PostgreSQL store ({url.split('@')[-1]}) needs psycopg 3 and psycopg_pool: "
                              f"{INSTALL_HINT} ({_IMPORT_ERROR})")
        self.url = url
        self.codecs = codecs(_DIALECT, placeholder="%s")  # rows for COPY: JSON as its text
        self._pool_size = max(pool_size, 1)
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._pool_obj: Any = None
        self._pid = os.getpid()
        self._ready = False
        self._partitions: set[tuple[str, int, int]] = set()
        try:
            self._ensure_ready()
        except StoreError as exc:
            if exc.__cause__ is None:
                raise  # a newer schema: not a server that is down
            log.warn_once(f"postgres.down.{self._where}", "tokentrail: the store %s is not reachable now (%s); "
                          "records wait in its buffer and are written when it is", self._where, exc)

    @property
    def _where(self) -> str:
        return self.url.split("@")[-1]  # host:port/db, no password

    # -- connections -------------------------------------------------------------------------------

    def _pool(self) -> Any:
        with self._lock:
            if self._pool_obj is None or self._pid != os.getpid():
                # A pool must not cross fork(): the child opens its own and leaves the parent's alone.
                self._pid = os.getpid()
                self._pool_obj = ConnectionPool(
                    self.url, min_size=1, max_size=self._pool_size, timeout=self._timeout, open=False,
                    kwargs={"autocommit": True, "connect_timeout": max(int(self._timeout), 1), "options": _session_options(self.url)},
                    check=ConnectionPool.check_connection, name="tokentrail")
                self._pool_obj.open(wait=False)
                # A store dropped without close(): its pool is closed off the thread that collects it (psycopg's
                # own __del__ would join the pool's threads there — seconds, or an error on one of them).
                weakref.finalize(self, _close_in_background, self._pool_obj, self._pid)
            return self._pool_obj

    def _drop_pool(self) -> None:
        """Forget a pool that could not hand out a connection: after failed attempts it reconnects with
        a growing back-off (seconds), so a server back from a restart would wait for its next try. The
        lane's next attempt opens a fresh pool, which connects at once."""
        with self._lock:
            pool, self._pool_obj = self._pool_obj, None
        if pool is not None:
            _close_in_background(pool, self._pid)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; a server that cannot be reached is a `StoreError` (one line in the CLI,
        a retry in the store's lane)."""
        try:
            with self._pool().connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            if isinstance(exc, PoolTimeout):
                self._drop_pool()
            raise StoreError(f"tokentrail: cannot reach the store {self._where}: {str(exc).strip().splitlines()[0]}") from exc

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"tokentrail: the store {self._where} is at schema version {version}, newer than this "
                                 f"tokentrail ({SCHEMA_VERSION}); upgrade tokentrail to write to it")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (%s, now())", (target,))
        self._ready = True

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._ensure_ready()
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _write(self, statements: Sequence[tuple[str, Any, bool]]) -> list[int]:
        """Run `(sql, params, many)` statements in one transaction; their row counts (a `DROP TABLE` of a
        partition counts the rows it held)."""
        self._ensure_ready()
        counts = []
        with self._connection() as conn, conn.transaction():
            cur = conn.cursor()
            for sql, params, many in statements:
                if sql.startswith("DROP TABLE "):
                    counts.append(cur.execute(f"SELECT COUNT(*) FROM {sql.split()[-1]}").fetchone()[0])
                    cur.execute(sql)
                elif many:
                    cur.executemany(sql, params)
                    counts.append(cur.rowcount)
                else:
                    cur.execute(sql, params)
                    counts.append(cur.rowcount)
        return counts

    # -- the sink side -----------------------------------------------------------------------------

    def _is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)):
            return False
        return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError,
                                OverflowError, ValueError, TypeError))

    def _write_batch(self, records: Sequence[Any]) -> None:
        self._ensure_ready()
        now = datetime.now(timezone.utc)
        batches = []
        for table, items in self.records_by_table(records).items():
            time_index = table.columns.index(table.time_column)
            rows = []
            for record in items:
                row = table.row(record)
                if row[time_index] is None:
                    row[time_index] = now
                rows.append(row)
            batches.append((table, rows, {_month(row[time_index]) for row in rows}))
        wanted = [(table.name, month) for table, _, months in batches for month in months]
        self._ensure_partitions(wanted)
        try:
            self._copy(batches)
        except psycopg.errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            # Another process pruned a month this one had seen: learn the partitions again, once.
            self._partitions.clear()
            self._ensure_partitions(wanted)
            self._copy(batches)

    def _copy(self, batches: Sequence[tuple[Any, list[list[Any]], Any]]) -> None:
        """Write the batches in one transaction: each COPYed into a temporary table, then moved into its
        table; the calls are added to the aggregates (`_insert_calls`)."""
        with self._connection() as conn, conn.transaction():
            for table, rows, _ in batches:
                stage = f"tt_stage_{table.name}"
                names = ", ".join(table.columns)
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                             f"SELECT {names} FROM {table.name} WITH NO DATA")
                with conn.cursor().copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                move = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage}"
                skip_known = f" ON CONFLICT (id, {table.time_column}) DO NOTHING"
                if table.cls is not LLMCall:
                    conn.execute(move + skip_known)
                    continue
                self._insert_calls(conn, table, stage, move, skip_known)

    def _insert_calls(self, conn: Any, table: Any, stage: str, move: str, skip_known: str) -> None:
        """Move the staged calls into `llm_calls` and add them to the aggregates, every call once.

        First as a plain INSERT in a savepoint, the aggregates then summed from the stage: a new batch,
        nearly always. Only when an id is already there (a batch retried after its commit was lost, or a
        record twice in a batch) is the savepoint rolled back and the batch moved with `ON CONFLICT DO
        NOTHING … RETURNING` into `NEW_CALLS`, whose rows are the ones summed. The plain form skips the
        speculative insertion and the copy into `NEW_CALLS`: the insert took 16 → 10 µs a call."""
        try:
            with conn.transaction():
                inserted = conn.execute(move).rowcount
            source = stage
        except psycopg.errors.UniqueViolation:
            needed = ", ".join(NEEDED)
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {NEW_CALLS} ON COMMIT DELETE ROWS AS "
                         f"SELECT {needed} FROM {table.name} WITH NO DATA")
            inserted = conn.execute(f"WITH ins AS ({move}{skip_known} RETURNING {needed}) "
                                    f"INSERT INTO {NEW_CALLS} ({needed}) SELECT {needed} FROM ins").rowcount
            source = NEW_CALLS
        if inserted:
            for sql, params, _ in batch_sql(self.style, source=source):
                conn.execute(sql, params)

    def _ensure_partitions(self, wanted: Sequence[tuple[str, tuple[int, int]]]) -> None:
        missing = sorted({(name, y, m) for name, (y, m) in wanted} - self._partitions)
        if not missing:
            return
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for name, year, month in missing:
                end = _next_month(year, month)
                conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(name, year, month)} PARTITION OF {name} "
                             f"FOR VALUES FROM ('{date(year, month, 1)}') TO ('{date(end[0], end[1], 1)}')")
        self._partitions.update(missing)

    def partitions(self, table: str = "llm_calls") -> list[tuple[str, datetime, datetime]]:
        """The table's monthly partitions: (name, from, to), oldest first."""
        rows = self._read(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname", (table,))
        out = []
        for name, bound in rows:
            lo, hi = bound.split("'")[1], bound.split("'")[3]
            out.append((name, datetime.fromisoformat(lo).astimezone(timezone.utc), datetime.fromisoformat(hi).astimezone(timezone.utc)))
        return out

    def _delete_sql(self, table: Any, clause: str, params: list[Any], moment: Any, where: Any) -> list[tuple[str, Any, bool]]:
        """Whole months before the cut are dropped (cheap, no dead rows); the rest is deleted."""
        statements: list[tuple[str, Any, bool]] = []
        if not where:
            for name, _, end in self.partitions(table.name):
                if end <= moment:
                    statements.append((f"DROP TABLE {name}", None, False))
            gone = {s[0].split()[-1] for s in statements}
            self._partitions = {p for p in self._partitions if partition_name(*p) not in gone}
        statements.append((f"DELETE FROM {table.name}{clause}", params, False))
        return statements

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pool_obj = None  # the child's first use opens its own pool (the parent's is left alone)

    def close(self) -> None:
        self.run_close_hooks()
        pool, self._pool_obj = self._pool_obj, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=1.0)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

