"""The one read API behind the `tokentrail` command and the dashboard: what did we spend, on what,
for whom, and what failed.

Everything here reads a store through its public read API (`calls`, `summary`,
`outcomes`, `tool_calls`, `spans`, `calls_after`) and returns plain data — dicts and lists of
JSON-ready values — documented per function; presenting it is the caller's
business (`cli.py` renders it with rich, the dashboard with HTML).

Decisions a user can see, written here because the README is edited elsewhere:

- **Store URLs.** `--store` takes a URL (`sqlite:///relative.db`,
  `sqlite:////absolute.db`) or a plain file path, relative or absolute, kept as
  written (`/data/calls.db` is absolute, `calls.db` relative to the working
  directory). See `store_url`.
- **Reading never creates a store** and never needs write access: a SQLite
  file (or its folder) that this user may not write is read through a
  read-only connection (`SQLiteReader`, `mode=ro`, or `immutable=1` when not
  even SQLite's shared-memory file can be created), so a store on a read-only
  mount, a backup, or another user's file can still be reported on.
- **Times** (`--since`, `--until`) are parsed once, here (`parse_time`): a
  value out of range is a usage error naming the value, not a traceback.
- **`show` takes a unique id prefix** (`find_call`). Ids begin with the time
  in milliseconds, so a prefix needs a few characters past those twelve.
- **Cost per outcome honours `--where`** (`outcomes_report`): outcomes are
  filtered by the attribution fields they carry (user, customer, feature,
  session, workflow, run), run costs come from the filtered calls only, and a
  filter on a call-only field (model, provider, …) keeps just the runs that
  made such a call.
- **`trace` shows one run as a tree** (`trace`): by trace id (the whole
  trace), workflow run id (that run's subtree, even inside a bigger trace) or
  call id (the trace the call is in). Each node has its own tokens, cost and
  latency, and the totals of everything under it; a record whose parent is not
  stored is a root rather than lost. `show` falls back to it for an id that is
  no call's.
- **The demo writes to its own store**, `tokentrail-demo.db` (`DEMO_STORE`),
  and tags every call `demo` (`DEMO_TAG`): fake calls never land in the real
  store, where they would show in reports and count against budgets (budgets
  are seeded from the store at `init()`).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import ConfigError, StoreError
from .record import FIELDS, LLMCall, Outcome, to_dict
from .times import parse_time as _parse_time_value

__all__ = [
    "BREAKDOWNS", "DEMO_STORE", "DEMO_TAG", "EXPORT_COLUMNS", "EXPORT_FORMATS", "PAGE",
    "default_store", "store_url", "store_path", "store_exists", "open_existing", "SQLiteReader",
    "parse_time", "time_range", "parse_where",
    "totals", "breakdown", "outcomes_report", "report", "unpriced_models",
    "calls", "find_call", "matching_ids", "start_cursor", "new_calls", "only_demo_calls",
    "export_rows", "export_format", "write_rows",
    "price_table", "doctor", "trace",
    "TIME_BUCKETS", "STACKS", "failed_filter", "summary", "timeseries", "calls_page", "totals_lean", "errors_report",
    "check_schema", "count_calls", "has_calls", "reprice", "cache_savings",
]

# --by names -> the store's group names
BREAKDOWNS = {
    "model": "model",
    "provider": "provider",
    "user": "user",
    "customer": "customer",
    "feature": "feature",
    "workflow": "workflow",
    "session": "session",
    "operation": "operation",
    "day": "day",
    "hour": "hour",
}

DEMO_STORE = "sqlite:///tokentrail-demo.db"
DEMO_TAG = "demo"

# How many calls one look of `tail` (and a prefix scan) reads at a time.
PAGE = 1000


# -- stores -----------------------------------------------------------------------------------------


def default_store() -> str | None:
    """The `store` of the configuration in effect (arguments > TOKENTRAIL_STORE > file > default); None for `none`."""
    from .config import load_settings

    return load_settings().store


def store_url(value: Any = None) -> str:
    """A store URL from what a user typed; None means the configured store.

    A plain path is a SQLite file and is kept as written: `/abs/calls.db` is
    absolute, `calls.db` and `data/calls.db` are relative to the working
    directory, `~/calls.db` is under the home folder. URLs follow SQLAlchemy:
    `sqlite:///relative.db`, `sqlite:////absolute.db`. ValueError for
    anything else.
    """
    from .sinks import normalize_store_url

    if value is None:
        value = default_store()
        if value is None:
            raise ConfigError("the configured store is `none` (exporters only); pass --store to read a store")
    if isinstance(value, (str, os.PathLike)) and not os.fspath(value).strip():
        raise ValueError("a store is a URL or a file path, not an empty string")
    try:
        url = normalize_store_url(value)
    except ValueError as exc:
        raise ValueError(f"not a store: {value!r}; expected {exc}") from None
    if url is None:
        raise ValueError(f"not a store to read: {value!r}")
    return url


def store_path(url: str) -> str | None:
    """The file behind a `sqlite://` URL (`:memory:` for an in-memory store); None for other kinds of store."""
    from .sinks.sqlite import path_of

    url = store_url(url)
    if not url.startswith("sqlite://"):
        return None
    return path_of(url)


def store_exists(url: str) -> bool:
    """Whether there is something to read at `url` (always True for stores that are not files)."""
    path = store_path(url)
    return path is None or path == ":memory:" or Path(path).is_file()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def open_existing(url: Any) -> Any:
    """The store at `url` (a URL, a plain path, or None for the configured store) for reading.

    A missing SQLite file is an error (reading never creates one). A file this
    user may read but not write — or that the normal store cannot open, say on
    a read-only mount — is read through `SQLiteReader`. Raises `StoreError`
    with a one-line message.
    """
    from .sinks import open_store

    url = store_url(url)
    path = store_path(url)
    if path is None or path == ":memory:":
        return open_store(url)
    file = Path(path)
    if not file.exists():
        raise StoreError(f"no store at {path} — record some calls first (or run `tokentrail demo`), or pass --store")
    if file.is_dir():
        raise StoreError(f"{path} is a folder, not a store file")
    if not os.access(file, os.R_OK):
        raise StoreError(f"the store {path} is not readable")
    if not _writable(file):
        return SQLiteReader(url)
    try:
        return open_store(url)
    except StoreError as exc:
        try:
            return SQLiteReader(url)
        except StoreError:
            raise exc from None


class SQLiteReader:
    """A SQLite store opened read-only: the read side of `SQLiteStore`, and nothing that writes.

    Opens `file:PATH?mode=ro` (falling back to `immutable=1` when SQLite may
    not create the WAL's shared-memory file next to the store), never
    migrates, and reads a store of an older or newer schema as far as their
    columns agree (a column this tokentrail knows but the file lacks reads as
    NULL). Until the store registry can open stores read-only, `open_existing`
    uses this for files it may not write.
    """

    kind = "sqlite"
    read_only = True

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0) -> None:
        from .sinks.query import percentile
        from .sinks.schema import DIALECTS, codecs

        self.url = url
        self.path = store_path(url) or ""
        self._timeout = busy_timeout_s
        self._guard = threading.Lock()
        self._db = self._open(immutable=False)
        self._db.create_aggregate("tt_percentile", 2, percentile)
        self._codecs = codecs(DIALECTS["sqlite"])
        try:
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            self._present = {
                cls: {row[1] for row in self._db.execute(f"PRAGMA table_info({codec.name})")}
                for cls, codec in self._codecs.items()
            }
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a usable SQLite database ({exc}); it was left untouched") from None
        ours = {codec.name for codec in self._codecs.values()}
        if tables and "schema_version" not in tables:
            self._db.close()
            which = "tokentrail-named tables but no schema_version" if tables & ours else "no tokentrail tables"
            raise StoreError(f"{self.path} is not a tokentrail store ({which}); it was left untouched")

    def _open(self, immutable: bool) -> sqlite3.Connection:
        uri = Path(self.path).resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
        try:
            db = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            # A WAL store needs its -shm file; when it is missing and cannot be created (a read-only
            # folder), no writer has the store open either, so reading it as immutable is safe.
            if not immutable and ("unable to open" in str(exc) or "readonly" in str(exc)):
                try:
                    return self._open(immutable=True)
                except StoreError:
                    pass
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database ({exc}); it was left untouched") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard:
            return self._db.execute(sql, params).fetchall()

    def _columns(self, cls: type) -> set[str]:
        """The columns the file has for `cls` (empty while its table does not exist; looked at again until it does)."""
        present = self._present[cls]
        if not present:
            present = self._present[cls] = {row[1] for row in self._rows(f"PRAGMA table_info({self._codecs[cls].name})")}
        return present

    def _query(self, cls: type) -> Any:
        from .sinks.query import QueryBuilder

        codec = self._codecs[cls]
        present = self._columns(cls)
        return QueryBuilder([c for c in codec.columns if c in present or not present], codec.time_column, style="qmark")

    def _select_list(self, cls: type) -> str:
        present = self._columns(cls)
        return ", ".join(c if c in present else f"NULL AS {c}" for c in self._codecs[cls].columns)

    def _select(self, cls: type, since: Any, until: Any, where: Any, limit: int | None, order: str, offset: int = 0) -> list[Any]:
        codec = self._codecs[cls]
        query = self._query(cls)
        clause, params = query.where(since=since, until=until, where=where)
        order_sql = query.order(order)
        if not self._columns(cls):
            return []
        sql = f"SELECT {self._select_list(cls)} FROM {codec.name}{clause} {order_sql}"
        if limit is not None or offset:
            sql += f" LIMIT {-1 if limit is None else query.limit(limit)}"
        if offset:
            sql += f" OFFSET {query.offset(offset)}"
        return [codec.record(row) for row in self._rows(sql, params)]

    def schema_version(self) -> int | None:
        if not self._columns(LLMCall):
            return None
        return self._rows("SELECT MAX(version) FROM schema_version")[0][0]

    def calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest",
              offset: int = 0) -> list[Any]:
        return self._select(LLMCall, since, until, where, limit, order, offset)

    def tool_calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]:
        from .record import ToolCall

        return self._select(ToolCall, since, until, where, limit, order)

    def outcomes(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]:
        return self._select(Outcome, since, until, where, limit, order)

    def spans(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]:
        from .record import Span

        return self._select(Span, since, until, where, limit, order)

    def calls_after(self, cursor: int = 0, where: Any = None, limit: int = PAGE) -> tuple[list[Any], int]:
        """As `SQLiteStore.calls_after`: calls stored after `cursor`, in insertion order, and the next cursor."""
        codec = self._codecs[LLMCall]
        query = self._query(LLMCall)
        clause, params = query.where(where=where)
        if not self._columns(LLMCall):
            return [], max(cursor, 0)
        if cursor < 0:
            return [], self._rows("SELECT COALESCE(MAX(rowid), 0) FROM llm_calls")[0][0]
        clause = (clause + " AND" if clause else " WHERE") + " rowid > ?"
        rows = self._rows(f"SELECT rowid, {self._select_list(LLMCall)} FROM llm_calls{clause} "
                          f"ORDER BY rowid LIMIT {query.limit(limit)}", [*params, cursor])
        if not rows:
            return [], cursor
        return [codec.record(row[1:]) for row in rows], rows[-1][0]

    def summary(self, group_by: Sequence[str] | str = ("model",), since: Any = None, until: Any = None, where: Any = None,
                percentiles: bool = True) -> list[dict[str, Any]]:
        """As `SQLiteStore.summary` (one implementation, `sinks.sqlstore.summarize`: percentiles over a
        sample above `PERCENTILE_SAMPLE` calls, days rolled up by retention counted in)."""
        from .sinks.sqlstore import summarize

        query = self._query(LLMCall)
        query.where(since=since, until=until, where=where)  # a bad filter is an error even on an empty store
        if not self._columns(LLMCall):
            return []
        rollup = bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_calls_daily'"))
        aggregated = bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_calls_hourly'"))
        return summarize(self._rows, "qmark", group_by, since=since, until=until, where=where, percentiles=percentiles,
                         columns=query.columns, rollup=rollup, aggregates=aggregated)

    def count(self, since: Any = None, until: Any = None, where: Any = None) -> int:
        """How many calls are stored in range (a COUNT: SQLite answers it from an index)."""
        query = self._query(LLMCall)
        clause, params = query.where(since=since, until=until, where=where)
        if not self._columns(LLMCall):
            return 0
        return self._rows(f"SELECT COUNT(*) FROM llm_calls{clause}", params)[0][0]

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """Ids of the calls whose id starts with `prefix` (in id order)."""
        if not self._columns(LLMCall):
            return []
        return [row[0] for row in self._rows("SELECT id FROM llm_calls WHERE substr(id, 1, ?) = ? ORDER BY id",
                                             (len(prefix), prefix))]

    def export(self, records: Sequence[Any]) -> None:
        raise StoreError(f"the store {self.path} is open read-only")

    def close(self) -> None:
        with self._guard:
            self._db.close()

    def __enter__(self) -> SQLiteReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteReader({self.url!r})"


# -- arguments --------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime:
    """An aware UTC datetime from what users type (`24h`, `7d`, `2026-11-01`, ISO 8601, a datetime, epoch seconds).

    ValueError — never OverflowError — for anything that is not a time or is
    out of the range a datetime can hold (`10000000d`).
    """
    try:
        return _parse_time_value(value)
    except (OverflowError, OSError):
        raise ValueError(f"time out of range: {value!r}; use a date such as 2026-11-01 or a duration such as 7d") from None


def time_range(since: Any = None, until: Any = None) -> tuple[datetime | None, datetime | None]:
    """(since, until) as datetimes (None stays None); ValueError when since is not before until."""
    start = None if since is None else parse_time(since)
    end = None if until is None else parse_time(until)
    if start is not None and end is not None and start >= end:
        raise ValueError(f"--since ({start:%Y-%m-%d %H:%M:%S}) must be before --until ({end:%Y-%m-%d %H:%M:%S})")
    return start, end


def parse_where(items: Iterable[str]) -> dict[str, Any]:
    """`field=value` pairs (a value `a,b` means either; `field=` means empty) to a store filter."""
    where: dict[str, Any] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"--where needs field=value, not {item!r}")
        field = BREAKDOWNS.get(field.strip(), field.strip())
        where[field] = None if value == "" else (value.split(",") if "," in value else value)
    return where


# -- reports ----------------------------------------------------------------------------------------


def totals(store: Any, since: Any = None, until: Any = None, where: Any = None) -> dict[str, Any] | None:
    """One summary row over everything in range (None when nothing is).

    Keys: calls, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, total_tokens, cost_usd (None when no
    call had a price), unpriced_calls, errors, error_rate, p50_ms, p95_ms,
    ttft_p50_ms.
    """
    rows = store.summary(group_by=(), since=since, until=until, where=where or None)
    return rows[0] if rows else None


def breakdown(store: Any, by: Sequence[str], since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
    """One row per group (costliest first): the `by` keys (`model`, `customer`, …) and the `totals` keys."""
    unknown = [b for b in by if b not in BREAKDOWNS]
    if unknown:
        raise ValueError(f"cannot break down by {unknown}; accepted: {', '.join(BREAKDOWNS)}")
    return store.summary(group_by=[BREAKDOWNS[b] for b in by], since=since, until=until, where=where or None)


# Attribution fields an outcome carries, by the names `--where` accepts.
_OUTCOME_FIELDS = {"user_id": "user_id", "user": "user_id", "customer_id": "customer_id", "customer": "customer_id",
                   "feature": "feature", "session_id": "session_id", "session": "session_id", "workflow": "workflow",
                   "workflow_run_id": "workflow_run_id", "workflow_run": "workflow_run_id"}


def outcomes_report(store: Any, since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
    """Per workflow and outcome: how many, their value, and the LLM cost of the runs that produced them.

    Rows (sorted by workflow, outcome): workflow, outcome, count, successes,
    value (sum), runs, cost_usd (of the runs' calls), cost_per_outcome_usd
    (cost / successes; None without successes).

    `where` filters outcomes by the attribution fields they carry (user,
    customer, feature, session, workflow, run); run costs count only the
    calls `where` selects; a filter on a field only calls have (model,
    provider, error_category, …) keeps the outcomes of runs with such a call.
    """
    where = dict(where or {})
    own = {_OUTCOME_FIELDS[k.strip().lower()]: v for k, v in where.items() if k.strip().lower() in _OUTCOME_FIELDS}
    calls_only = len(own) < len(where)
    outcomes = store.outcomes(since=since, until=until, where=own or None, limit=None)
    if not outcomes:
        return []
    run_cost = {row["workflow_run"]: row["cost_usd"] or 0.0
                for row in store.summary(group_by=("workflow_run",), since=since, until=until, where=where or None)
                if row["workflow_run"] is not None}
    groups: dict[tuple[Any, str], dict[str, Any]] = {}
    for outcome in outcomes:
        if calls_only and outcome.workflow_run_id not in run_cost:
            continue
        group = groups.setdefault((outcome.workflow, outcome.name), {
            "workflow": outcome.workflow, "outcome": outcome.name, "count": 0, "successes": 0,
            "value": 0.0, "runs": set()})
        group["count"] += 1
        group["successes"] += bool(outcome.success)
        group["value"] += outcome.value or 0.0
        if outcome.workflow_run_id:
            group["runs"].add(outcome.workflow_run_id)
    rows = []
    for group in groups.values():
        runs = group.pop("runs")
        cost = sum(run_cost.get(run, 0.0) for run in runs)
        group["runs"] = len(runs)
        group["cost_usd"] = cost
        group["cost_per_outcome_usd"] = cost / group["successes"] if group["successes"] else None
        rows.append(group)
    rows.sort(key=lambda r: (str(r["workflow"]), r["outcome"]))
    return rows


def report(store: Any, by: Sequence[str] = ("model",), since: Any = None, until: Any = None, where: Any = None) -> dict[str, Any]:
    """`{"totals": totals(...) or None, "breakdown": breakdown(...), "outcomes": outcomes_report(...)}` — what `tokentrail report` shows."""
    return {"totals": totals(store, since, until, where),
            "breakdown": breakdown(store, by or ("model",), since, until, where),
            "outcomes": outcomes_report(store, since, until, where)}


def unpriced_models(store: Any, since: Any = None) -> list[dict[str, Any]]:
    """Models seen with tokens but no price: summary rows with provider, model, calls, total_tokens, …"""
    rows = store.summary(group_by=("provider", "model"), since=since, where={"cost_usd": None})
    return [r for r in rows if r["total_tokens"]]


# -- calls ------------------------------------------------------------------------------------------


def _row(call: Any) -> dict[str, Any]:
    row = to_dict(call)
    row["model"] = call.model
    return row


def calls(store: Any, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 20) -> list[dict[str, Any]]:
    """The latest calls, newest first: `record.to_dict` of each (every field, times as ISO text) plus `model`."""
    return [_row(c) for c in store.calls(since=since, until=until, where=where or None, limit=limit)]


def matching_ids(store: Any, prefix: str) -> list[str]:
    """Ids of the calls whose id starts with `prefix`.

    Uses the store's `ids_with_prefix` when it has one; otherwise pages
    through `calls_after` (bounded memory, one pass over the store).
    """
    lookup = getattr(store, "ids_with_prefix", None)
    if callable(lookup):
        return list(lookup(prefix))
    found: list[str] = []
    cursor = 0
    while True:
        page, cursor = store.calls_after(cursor, limit=PAGE)
        found.extend(c.id for c in page if c.id.startswith(prefix))
        if len(page) < PAGE:
            return found


def find_call(store: Any, ref: str) -> dict[str, Any]:
    """The call whose id is `ref`, or the only one whose id starts with `ref` (as `calls()` rows).

    StoreError (one line) when none matches, or when several do: it says how
    many and shows a few.
    """
    ref = ref.strip()
    if not ref:
        raise ValueError("give a call id, or the start of one")
    found = store.calls(where={"id": ref}, limit=1)
    if not found:
        ids = matching_ids(store, ref)
        if not ids:
            raise StoreError(f"no call with id {ref!r}, nor one whose id starts with it")
        if len(ids) > 1:
            shown = ", ".join(ids[:3]) + (", …" if len(ids) > 3 else "")
            raise StoreError(f"{len(ids)} calls have an id starting with {ref!r} ({shown}); give more of the id")
        found = store.calls(where={"id": ids[0]}, limit=1)
    return _row(found[0])


# -- one run's tree ---------------------------------------------------------------------------------------


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _error(record: Any) -> dict[str, Any] | None:
    if record.error_type is None and record.error_category is None:
        return None
    return {"type": record.error_type, "category": record.error_category, "message": record.error_message}


def _trace_node(kind: str, record: Any) -> dict[str, Any]:
    """One record of a trace as a tree node (children and subtree totals are added by `trace`)."""
    node: dict[str, Any] = {
        "kind": kind, "id": record.id, "name": record.name if kind != "llm_call" else (record.model or record.provider),
        "trace_id": record.trace_id,
        "span_id": getattr(record, "span_id", None), "parent_span_id": record.parent_span_id,
        "started_at": _iso(record.recorded_at if kind == "outcome" else record.started_at),
        "duration_ms": getattr(record, "duration_ms", None),
        "input_tokens": None, "output_tokens": None, "total_tokens": None, "cost_usd": None, "error": None,
    }
    if kind == "llm_call":
        node.update(input_tokens=record.input_tokens, output_tokens=record.output_tokens, total_tokens=record.total_tokens,
                    cost_usd=record.cost_usd, error=_error(record),
                    detail={"provider": record.provider, "model": record.model, "operation": record.operation,
                            "source": record.source, "stream": record.stream, "ttft_ms": record.ttft_ms,
                            "cache_read_tokens": record.cache_read_tokens, "reasoning_tokens": record.reasoning_tokens,
                            "status_code": record.status_code, "response_id": record.response_id})
    elif kind == "span":
        node.update(error=_error(record), detail={"kind": (record.metadata or {}).get("kind") or "workflow",
                                                  "operation": record.operation, "source": record.source,
                                                  "workflow": record.workflow, "workflow_run_id": record.workflow_run_id})
    elif kind == "tool_call":
        node.update(error=_error(record), detail={"tool_call_id": record.tool_call_id, "source": record.source})
    else:
        node["detail"] = {"value": record.value, "success": record.success}
    return node


def _roll_up(node: dict[str, Any]) -> None:
    """`subtree`: the node's own figures plus its children's (children rolled up first)."""
    total = {"cost_usd": node["cost_usd"] or 0.0, "input_tokens": node["input_tokens"] or 0,
             "output_tokens": node["output_tokens"] or 0, "total_tokens": node["total_tokens"] or 0,
             "llm_calls": int(node["kind"] == "llm_call"), "tool_calls": int(node["kind"] == "tool_call"),
             "unpriced_calls": int(node["kind"] == "llm_call" and node["cost_usd"] is None),
             "errors": int(node["error"] is not None)}
    for child in node["children"]:
        for key, value in child["subtree"].items():
            total[key] += value
    node["subtree"] = total


def _find_trace(store: Any, ref: str) -> tuple[str | None, str | None, str | None]:
    """(trace id, span id of the root to show, workflow run id) for a trace id, a workflow run id, or a call id."""
    spans = getattr(store, "spans", None)
    if callable(spans):
        run = spans(where={"workflow_run_id": ref}, limit=None, order="oldest")
        if run:
            ids = {s.span_id for s in run}
            root = next((s for s in run if s.parent_span_id not in ids), run[0])
            return root.trace_id, root.span_id, ref
        if spans(where={"trace_id": ref}, limit=1):
            return ref, None, None
    for read in (store.calls, getattr(store, "tool_calls", None), getattr(store, "outcomes", None)):
        if callable(read) and read(where={"trace_id": ref}, limit=1):
            return ref, None, None
    if store.calls(where={"workflow_run_id": ref}, limit=1):
        return None, None, ref  # a run recorded without a span of its own: its records, by run id
    try:
        found = find_call(store, ref)
    except StoreError:
        raise StoreError(f"no trace, workflow run or call with id {ref!r}") from None
    return found["trace_id"], None, None


def trace(store: Any, ref: str) -> dict[str, Any]:
    """The tree of one run: `ref` is a trace id, a workflow run id (its run's subtree), or a call id (or a unique
    start of one: the trace it belongs to).

    Returns `{"trace_id", "workflow", "workflow_run_id", "started_at", "duration_ms", "roots", "totals"}`.
    Each node of `roots` is `{"kind"` (`span`, `llm_call`, `tool_call`, `outcome`), `"id"`, `"name"`,
    `"span_id"`, `"parent_span_id"`, `"started_at"`, `"duration_ms"`, `"input_tokens"`, `"output_tokens"`,
    `"total_tokens"`, `"cost_usd"` (its own), `"error"` (`{type, category, message}` or None), `"detail"`
    (kind-specific: provider, model, ttft, the span's kind, an outcome's value, …), `"children"` (by start
    time) and `"subtree"` (cost, tokens, LLM and tool calls, unpriced calls and errors of the node and all
    below it)}`. `totals` is the sum over the roots. A record whose parent is not in the trace is a root.
    StoreError when nothing matches.
    """
    ref = ref.strip() if isinstance(ref, str) else ""
    if not ref:
        raise ValueError("give a trace id, a workflow run id, or a call id")
    trace_id, root_span, run_id = _find_trace(store, ref)
    where = {"trace_id": trace_id} if trace_id is not None else {"workflow_run_id": run_id}
    readers = (("span", getattr(store, "spans", None)), ("llm_call", store.calls),
               ("tool_call", getattr(store, "tool_calls", None)), ("outcome", getattr(store, "outcomes", None)))
    records = [(kind, record) for kind, read in readers if callable(read)
               for record in read(where=where, limit=None, order="oldest")]
    nodes = [_trace_node(kind, record) for kind, record in records]
    by_span = {n["span_id"]: n for n in nodes if n["span_id"] is not None}
    for node in nodes:
        node["children"] = []
    roots = []
    for node in sorted(nodes, key=lambda n: (n["started_at"] or "", n["id"])):
        parent = by_span.get(node["parent_span_id"])
        (parent["children"] if parent is not None and parent is not node else roots).append(node)
    if root_span is not None and root_span in by_span:
        roots = [by_span[root_span]]
    order, stack, seen = [], list(roots), set()
    while stack:  # iterative: a deep agent loop must not hit the recursion limit
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        stack.extend(node["children"])
    for node in reversed(order):
        _roll_up(node)
    totals = {key: sum(root["subtree"][key] for root in roots) for key in
              ("cost_usd", "input_tokens", "output_tokens", "total_tokens", "llm_calls", "tool_calls", "unpriced_calls", "errors")}
    starts = [datetime.fromisoformat(n["started_at"]) for n in order if n["started_at"]]
    ends = [datetime.fromisoformat(n["started_at"]) + timedelta(milliseconds=n["duration_ms"])
            for n in order if n["started_at"] and n["duration_ms"] is not None]
    in_run = [r for _, r in records if r.workflow_run_id and (run_id is None or r.workflow_run_id == run_id)]
    return {
        "trace_id": trace_id or next((n["trace_id"] for n in order if n["trace_id"]), None),
        "workflow": in_run[0].workflow if in_run else None,
        "workflow_run_id": run_id or (in_run[0].workflow_run_id if in_run else None),
        "started_at": min(starts).isoformat() if starts else None,
        "duration_ms": (max(ends) - min(starts)).total_seconds() * 1000 if starts and ends else None,
        "roots": roots, "totals": totals,
    }


def start_cursor(store: Any, from_start: bool = False) -> int:
    """Where following a store begins: after the calls stored now, or (`from_start`) before all of them."""
    return 0 if from_start else store.calls_after(-1)[1]


def new_calls(store: Any, cursor: int, where: Any = None, page: int = PAGE) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Every call stored after `cursor`, as (rows, next cursor) pages of at most `page`, until caught up.

    A consumer that stops early resumes from the cursor of the last page it took.
    """
    while True:
        found, cursor = store.calls_after(cursor, where=where or None, limit=page)
        if found:
            yield [_row(c) for c in found], cursor
        if len(found) < page:
            return


def only_demo_calls(store: Any) -> bool:
    """Whether every call in the store carries the demo tag (True for an empty store)."""
    cursor = 0
    while True:
        page, cursor = store.calls_after(cursor, limit=PAGE)
        if any(DEMO_TAG not in (c.tags or ()) for c in page):
            return False
        if len(page) < PAGE:
            return True


# -- the dashboard's queries (shared with the CLI: nothing here renders) -----------------------------------

TIME_BUCKETS = ("hour", "day")
STACKS = ("model", "provider", "feature", "customer", "user", "workflow", "operation")


def failed_filter() -> dict[str, Any]:
    """The `where` for "the call failed": it has an error category (the core sets one for every failure)."""
    from .sinks.query import NOT_NULL

    return {"error_category": NOT_NULL}

_CONTENT_FIELDS = ("input_messages", "output_text")


def summary(store: Any, group_by: Sequence[str] | str = (), since: Any = None, until: Any = None, where: Any = None,
            percentiles: bool = True) -> list[dict[str, Any]]:
    """`store.summary`, asking for sums and counts only when `percentiles` is False (a store that cannot
    leave them out computes them anyway)."""
    if not percentiles:
        try:
            return store.summary(group_by=group_by, since=since, until=until, where=where or None, percentiles=False)
        except TypeError:
            pass
    return store.summary(group_by=group_by, since=since, until=until, where=where or None)


def _bucket_start(label: str, bucket: str) -> datetime:
    from datetime import timezone

    text = label[:10] + "T00:00" if bucket == "day" else label[:13] + ":00"
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def timeseries(store: Any, bucket: str = "day", stack: str | None = "model", since: Any = None, until: Any = None,
               where: Any = None, top: int = 8) -> dict[str, Any]:
    """Cost, calls, tokens and errors per hour or day, stacked by `stack` (one SQL aggregate, grouped by
    the bucket and the stack; empty buckets filled in).

    Returns `{"bucket", "stack", "buckets": [{"label", "start" (epoch seconds, UTC)}] (oldest first),
    "series": [{"key", "cost_usd": [...], "calls": [...], "total_tokens": [...], "errors": [...]}]}`: one
    series per stack value, costliest first; beyond `top` the rest is summed into the key `"other"`.
    `bucket="auto"`: hours for a range of at most three days, else days.
    """
    start, end = time_range(since, until)
    if bucket == "auto":
        bucket = "hour" if start is not None and ((end or datetime.now(start.tzinfo)) - start) <= timedelta(days=3) else "day"
    if bucket not in TIME_BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(TIME_BUCKETS)} (or auto), not {bucket!r}")
    if stack is not None and stack not in STACKS:
        raise ValueError(f"cannot stack by {stack!r}; accepted: {', '.join(STACKS)}")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a whole number >= 1, not {top!r}")
    groups = (bucket,) if stack is None else (bucket, BREAKDOWNS[stack])
    rows = summary(store, groups, start, end, where, percentiles=False)
    metrics = ("cost_usd", "calls", "total_tokens", "errors")
    weight: dict[Any, list[float]] = {}  # key -> [cost, calls]: the costliest first, then the busiest
    for row in rows:
        key = row.get(stack) if stack is not None else "all"
        sums = weight.setdefault(key, [0.0, 0])
        sums[0] += row["cost_usd"] or 0.0
        sums[1] += row["calls"]
    ranked = sorted(weight, key=lambda k: (-weight[k][0], -weight[k][1], str(k)))
    kept = {k: (k if k is not None else "(none)") for k in ranked[:top]}
    labels = sorted({row[bucket] for row in rows if row.get(bucket)})
    if labels:
        step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
        first = _bucket_start(labels[0], bucket)
        if start is not None:
            first = min(first, _bucket_start(start.isoformat(), bucket))
        last = _bucket_start(labels[-1], bucket)
        if end is not None:
            last = max(last, _bucket_start((end - timedelta(microseconds=1)).isoformat(), bucket))
        if (last - first) / step <= 5000:
            moments = [first + step * i for i in range(int((last - first) / step) + 1)]
            labels = [m.strftime("%Y-%m-%d") if bucket == "day" else m.strftime("%Y-%m-%dT%H:00") for m in moments]
    position = {label: i for i, label in enumerate(labels)}
    series: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = row.get(bucket)
        if label not in position:
            continue
        key = row.get(stack) if stack is not None else "all"
        name = kept.get(key, "other")
        item = series.setdefault(name, {"key": name, **{m: [0] * len(labels) for m in metrics}})
        for m in metrics:
            item[m][position[label]] += row[m] or 0
    order = [kept[k] for k in ranked[:top]] + ["other"]
    return {"bucket": bucket, "stack": stack,
            "buckets": [{"label": label, "start": int(_bucket_start(label, bucket).timestamp())} for label in labels],
            "series": [series[name] for name in order if name in series]}


def _light(row: dict[str, Any]) -> dict[str, Any]:
    """A calls-table row: every field but the captured content (`has_content` says whether there is some)."""
    row["has_content"] = any(row.get(f) for f in _CONTENT_FIELDS)
    for name in _CONTENT_FIELDS:
        row.pop(name, None)
    return row


def calls_page(store: Any, since: Any = None, until: Any = None, where: Any = None, sort: str = "newest",
               offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of calls in range, sorted in SQL (`newest`, `oldest`, a field such as `cost_usd`, or `-field`
    for largest first; see `sinks.query.SORTABLE`), and how many there are in all.

    Returns `{"calls": [calls() rows without the captured content, plus `has_content`], "total", "offset",
    "limit", "sort"}`. Only the page is read (LIMIT/OFFSET), and the total is a COUNT.
    """
    from .sinks.query import QueryBuilder

    limit = QueryBuilder.limit(limit)
    offset = QueryBuilder.offset(offset)
    if limit > 1000:
        raise ValueError(f"limit is at most 1000 a page, not {limit}")
    start, end = time_range(since, until)
    try:
        found = store.calls(since=start, until=end, where=where or None, limit=limit, order=sort, offset=offset)
    except TypeError:  # a store without offset: read up to the page's end
        found = store.calls(since=start, until=end, where=where or None, limit=offset + limit, order=sort)[offset:]
    return {"calls": [_light(_row(c)) for c in found], "total": count_calls(store, start, end, where),
            "offset": offset, "limit": limit, "sort": sort}


def count_calls(store: Any, since: Any = None, until: Any = None, where: Any = None) -> int:
    """How many calls in range are stored one by one (what paging through `calls` can reach): the store's
    `count` (a COUNT over its indexes) where it has one, else the calls of its summary."""
    count = getattr(store, "count", None)
    if callable(count):
        return count(since=since, until=until, where=where or None)
    total = totals_lean(store, since, until, where)
    return total["calls"] if total else 0


def has_calls(store: Any) -> bool:
    """Whether the store holds any call (one indexed lookup)."""
    return bool(store.calls(limit=1))


def totals_lean(store: Any, since: Any = None, until: Any = None, where: Any = None) -> dict[str, Any] | None:
    """`totals` without the latency percentiles (None): counts and sums only."""
    rows = summary(store, (), since, until, where, percentiles=False)
    return rows[0] if rows else None


def errors_report(store: Any, since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
    """Failed calls grouped by error category (most first): `{"category", "calls", "share"` (of all failures),
    `"cost_usd"`, `"models"` (how many models failed so)`}`; [] when nothing failed."""
    filters = {**(where or {}), **failed_filter()}
    rows = summary(store, ("error_category",), since, until, filters, percentiles=False)
    failed = sum(r["calls"] for r in rows)
    out = [{"category": r["error_category"], "calls": r["calls"], "share": r["calls"] / failed if failed else 0.0,
            "cost_usd": r["cost_usd"]} for r in rows]
    out.sort(key=lambda r: (-r["calls"], str(r["category"])))
    return out


def check_schema(store: Any) -> None:
    """StoreError when the store was written by a newer tokentrail (a schema version this one does not know)."""
    from .sinks.schema import SCHEMA_VERSION

    version = getattr(store, "schema_version", None)
    found = version() if callable(version) else None
    if found is not None and found > SCHEMA_VERSION:
        where = getattr(store, "path", None) or getattr(store, "url", "the store")
        raise StoreError(f"{where} was written by a newer tokentrail (schema version {found}; this one knows up to "
                         f"{SCHEMA_VERSION}): upgrade tokentrail to read it")


# -- what if, and what caching saved (shared by `tokentrail report` and the dashboard) -----------------------


def _book() -> Any:
    from .config import load_settings
    from .pricing import PriceBook

    settings = load_settings()
    return PriceBook(settings.prices, settings.model_aliases)


def _flat_rate(rate: Any) -> float | None:
    """USD per token; a tiered rate at its base tier (sums of many calls cannot pick a tier per call)."""
    if rate is None:
        return None
    return float(getattr(rate, "base", rate))


_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def reprice(store: Any, model: str, by: Sequence[str] = ("feature",), since: Any = None, until: Any = None,
            where: Any = None, provider: str | None = None) -> dict[str, Any]:
    """What the recorded calls would have cost on `model`: the same tokens at its list price, per group.

    Sums the tokens per group in SQL (never a row in Python) and prices the sums with `model`'s rates
    (a tiered rate at its base tier; cache reads and writes at the model's cache rates, or at its input
    rate when it has none). Returns `{"model", "priced_as", "provider", "rows": [{<by keys>, calls,
    cost_usd (as recorded; unpriced calls count 0), what_if_usd, saving_usd (recorded - what if: positive
    means the other model is cheaper), saving_share}], "totals": {same sums}}`, rows by saving, largest
    first. ValueError when `model` has no known price.
    """
    from .semconv import normalize_provider

    if not isinstance(model, str) or not model.strip():
        raise ValueError("name a model to reprice with, e.g. gpt-4o-mini")
    rates = _book().rates(normalize_provider(provider, model), model.strip())
    if rates is None:
        raise ValueError(f"no price known for {model!r}: `tokentrail prices {model}` shows what is known; "
                         "custom prices go under `prices`")
    unknown = [b for b in by if b not in BREAKDOWNS]
    if unknown:
        raise ValueError(f"cannot break down by {unknown}; accepted: {', '.join(BREAKDOWNS)}")
    keys = [BREAKDOWNS[b] for b in by]
    rows = summary(store, keys, since, until, where, percentiles=False)
    rate = {name: _flat_rate(getattr(rates, name)) for name in ("input", "output", "cache_read", "cache_write", "reasoning")}
    request = getattr(rates, "request", None) or 0.0

    def price(row: dict[str, Any]) -> float:
        tin, tout, cread, cwrite, reason = (row.get(k) or 0 for k in _SUMS)
        cread_rate = rate["cache_read"] if rate["cache_read"] is not None else rate["input"]
        cwrite_rate = rate["cache_write"] if rate["cache_write"] is not None else rate["input"]
        plain_in = max(tin - cread - cwrite, 0)
        plain_out = tout - reason if rate["reasoning"] is not None else tout
        usd = (rate["input"] or 0.0) * plain_in + (cread_rate or 0.0) * cread + (cwrite_rate or 0.0) * cwrite
        usd += (rate["output"] or 0.0) * max(plain_out, 0) + (rate["reasoning"] or 0.0) * (reason if rate["reasoning"] is not None else 0)
        return usd + request * row["calls"]

    out = []
    total = {"calls": 0, "cost_usd": 0.0, "what_if_usd": 0.0}
    for row in rows:
        actual = row["cost_usd"] or 0.0
        what_if = price(row)
        item = {k: row[k] for k in by}
        item.update(calls=row["calls"], unpriced_calls=row["unpriced_calls"], cost_usd=actual, what_if_usd=what_if,
                    saving_usd=actual - what_if, saving_share=(actual - what_if) / actual if actual else None)
        out.append(item)
        total["calls"] += row["calls"]
        total["cost_usd"] += actual
        total["what_if_usd"] += what_if
    total["saving_usd"] = total["cost_usd"] - total["what_if_usd"]
    total["saving_share"] = total["saving_usd"] / total["cost_usd"] if total["cost_usd"] else None
    out.sort(key=lambda r: -r["saving_usd"])
    return {"model": model.strip(), "priced_as": rates.model, "provider": rates.provider, "rows": out, "totals": total}


def cache_savings(store: Any, by: Sequence[str] = ("model",), since: Any = None, until: Any = None,
                  where: Any = None) -> list[dict[str, Any]]:
    """What prompt caching saved, per group (`model` and/or `feature`, `customer`, …).

    For each model's calls: `saved_usd` = cache-read tokens priced at the model's input rate minus what
    they cost at its cache-read rate; `write_premium_usd` = what cache writes cost above the input rate;
    `net_usd` = saved - premium. Token sums come from SQL per (provider, model, group); models without a
    price are left out of the money (their tokens still count). Rows: `{<by keys>, calls, cache_read_tokens,
    cache_write_tokens, saved_usd, write_premium_usd, net_usd}`, largest net first; groups with no cache
    traffic are left out.
    """
    unknown = [b for b in by if b not in BREAKDOWNS]
    if unknown:
        raise ValueError(f"cannot break down by {unknown}; accepted: {', '.join(BREAKDOWNS)}")
    keys = [BREAKDOWNS[b] for b in by]
    extra = [k for k in ("provider", "model") if k not in keys]
    rows = summary(store, [*keys, *extra], since, until, where, percentiles=False)
    book = _book()
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        cread, cwrite = row.get("cache_read_tokens") or 0, row.get("cache_write_tokens") or 0
        if not cread and not cwrite:
            continue
        rates = book.rates(row["provider"], row["model"]) if row.get("model") else None
        saved = premium = 0.0
        if rates is not None and rates.input is not None:
            base = _flat_rate(rates.input) or 0.0
            read = _flat_rate(rates.cache_read)
            write = _flat_rate(rates.cache_write)
            saved = cread * (base - read) if read is not None else 0.0
            premium = cwrite * (write - base) if write is not None else 0.0
        key = tuple(row[b] for b in by)
        group = groups.setdefault(key, {**dict(zip(by, key)), "calls": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                        "saved_usd": 0.0, "write_premium_usd": 0.0})
        group["calls"] += row["calls"]
        group["cache_read_tokens"] += cread
        group["cache_write_tokens"] += cwrite
        group["saved_usd"] += saved
        group["write_premium_usd"] += premium
    out = list(groups.values())
    for group in out:
        group["net_usd"] = group["saved_usd"] - group["write_premium_usd"]
    out.sort(key=lambda r: -r["net_usd"])
    return out


# -- export -----------------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "jsonl", "parquet")
# Columns of an export: `type` (always `llm_call`), then every field of the record.
EXPORT_COLUMNS = ("type", *FIELDS[LLMCall])


def export_rows(store: Any, since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
    """Every call in range, oldest first, as `record.to_dict` rows (keys: `EXPORT_COLUMNS`)."""
    return [to_dict(c) for c in store.calls(since=since, until=until, where=where or None, limit=None, order="oldest")]


def export_format(path: str | None, fmt: str | None = None) -> str:
    """The format to write: `fmt` if given, else read off the file name's extension. ValueError if neither says."""
    if fmt:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(EXPORT_FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".") if path and path != "-" else ""
    suffix = {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"say --format ({', '.join(EXPORT_FORMATS)}): it cannot be told from {path!r}")
    return suffix


def _flat(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_rows(rows: Sequence[Mapping[str, Any]], fmt: str, target: Any, columns: Sequence[str] | None = None,
               *, overwrite: bool = False) -> int:
    """Write `rows` as csv, jsonl or parquet to `target`; returns how many were written.

    `target` is a path (str or PathLike) or an open stream: a text stream for
    csv and jsonl; for parquet a binary stream, or a text stream with a
    `.buffer` (stdout). A path that exists is refused (FileExistsError)
    unless `overwrite`; a file this call created is removed if writing
    fails. `columns` defaults to the keys of the first row; in csv and parquet
    lists and dicts are JSON text. OSError for what the file system refuses.
    """
    fmt = export_format(None, fmt)
    columns = list(columns or (rows[0].keys() if rows else ()))
    if not columns and fmt == "csv":  # nothing to say, not even a header
        return 0
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder", str(path))
        existed = path.exists()
        if existed and not overwrite:
            raise FileExistsError(17, "exists", str(path))
        mode = ("w" if existed else "x") + ("b" if fmt == "parquet" else "")
        try:
            with open(path, mode, **({} if fmt == "parquet" else {"newline": "", "encoding": "utf-8"})) as fh:
                _write(rows, fmt, fh, columns)
        except BaseException:
            if not existed and path.is_file():
                path.unlink()
            raise
        return len(rows)
    _write(rows, fmt, target, columns)
    target.flush()
    return len(rows)


def _write(rows: Sequence[Mapping[str, Any]], fmt: str, stream: Any, columns: list[str]) -> None:
    if fmt == "jsonl":
        for row in rows:
            stream.write(json.dumps({k: row.get(k) for k in columns}, default=str) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _flat(row.get(k)) for k in columns})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        binary = getattr(stream, "buffer", stream)
        table = pa.table({k: [_flat(row.get(k)) for row in rows] for k in columns})
        pq.write_table(table, binary)


# -- prices -----------------------------------------------------------------------------------------


def _per_million(rate: Any) -> Any:
    """USD per token -> USD per million tokens; a tiered rate -> {"base": …, "tiers": [{"above_input_tokens", "price"}]}."""
    if rate is None:
        return None
    tiers = getattr(rate, "tiers", None)
    if tiers is not None:  # a rate that changes with the call's input tokens
        return {"base": rate.base * 1e6,
                "tiers": [{"above_input_tokens": start, "price": price * 1e6} for start, price in sorted(tiers)]}
    return float(rate) * 1e6


def price_table(models: Iterable[str], provider: str | None = None) -> list[dict[str, Any]]:
    """The prices tokentrail would use for `models`, from the configuration in effect (custom prices, aliases).

    One dict per model. Unknown: `{"model": m, "price": None}`. Known: model,
    provider, priced_as (the model the price is for), source (`custom` or
    `genai-prices <version>`), input, output, cache_read, cache_write,
    reasoning — USD per million tokens, None where the model has no such
    rate, a dict for tiered rates (see `_per_million`) — and request_usd
    (per request, usually None).
    """
    from .config import load_settings
    from .pricing import PriceBook
    from .semconv import normalize_provider

    settings = load_settings()
    book = PriceBook(settings.prices, settings.model_aliases)
    out = []
    for model in models:
        rates = book.rates(normalize_provider(provider, model), model)
        if rates is None:
            out.append({"model": model, "price": None})
            continue
        out.append({"model": model, "priced_as": rates.model, "provider": rates.provider, "source": rates.source,
                    "input": _per_million(rates.input), "output": _per_million(rates.output),
                    "cache_read": _per_million(rates.cache_read), "cache_write": _per_million(rates.cache_write),
                    "reasoning": _per_million(getattr(rates, "reasoning", None)),
                    "request_usd": getattr(rates, "request", None)})
    return out


# -- doctor -----------------------------------------------------------------------------------------


def _plain(name: str, value: Any) -> Any:
    if name in ("prices", "model_aliases") and isinstance(value, Mapping):
        return sorted(value) if name == "prices" else dict(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, (str, int, float, bool)) else repr(v) for v in value]
    return repr(value)


def doctor(store: Any = None, *, sdks: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What `tokentrail doctor` shows, as data.

    `sdks` is the instrument registry's `status()` (passed in: reports do not
    import the adapters). Returns:

    - `sdks`: [{sdk, package, minimum, installed (version or None), supported, patched_by_init}]
    - `configuration`: [{option, value (JSON-ready), source}] — source is
      `default`, `argument`, `environment variable TOKENTRAIL_X` or the file
    - `store`: {url, ok, read_only, schema_version, calls, error} — url None
      when the configured store is `none`
    - `losses`: records lost on their way to a sink, per sink, as the processes
      that lost them noted in the store: [{sink, processes, written, dropped,
      failed, rejected, last}]; None when the store keeps no such notes
    """
    from .config import load_settings

    settings = load_settings()
    wanted = None if settings.instrument is True else set(settings.instrument or ())
    rows = [{"sdk": row["name"], "package": row["package"], "minimum": row["minimum"], "installed": row["installed"],
             "supported": row["supported"],
             "patched_by_init": bool(row["supported"] and (wanted is None or row["name"] in wanted))}
            for row in sdks]
    configuration = [{"option": name, "value": _plain(name, getattr(settings, name)), "source": source}
                     for name, source in settings.sources.items()]
    status: dict[str, Any] = {"url": None, "ok": True, "read_only": False, "schema_version": None, "calls": None, "error": None}
    losses: list[dict[str, Any]] | None = None
    if store is not None or settings.store is not None:
        try:
            url = store_url(store if store is not None else settings.store)
            status["url"] = url
            opened = open_existing(url)
            total = totals(opened)
            status.update(read_only=bool(getattr(opened, "read_only", False)), calls=total["calls"] if total else 0)
            version = getattr(opened, "schema_version", None)
            status["schema_version"] = version() if callable(version) else None
            noted = getattr(opened, "losses", None)
            losses = noted() if callable(noted) else None
            opened.close()
        except (StoreError, ValueError) as exc:
            status.update(ok=False, error=str(exc).removeprefix("tokentrail: "))
    return {"sdks": rows, "configuration": configuration, "store": status, "losses": losses}


def prune(store: Any, before: Any, where: Any = None, rollup: bool = False) -> dict[str, int]:
    """Retention (`tokentrail prune`): delete what started before `before` (`90d`, a date) and matches
    `where` from the store at `store` (a URL or path; None: the configured one); with `rollup`, calls are
    first added to daily aggregates that totals and breakdowns keep counting. Rows deleted, per table."""
    from .sinks import open_store

    url = store_url(store)
    if store_path(url) not in (None, ":memory:") and not store_exists(url):
        raise StoreError(f"no store at {store_path(url)}")
    opened = open_store(url)
    try:
        return opened.prune(before, where=where or None, rollup=rollup)
    finally:
        opened.close()
