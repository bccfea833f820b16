"""The stores' schema, shared by every SQL dialect: tables, column types, migrations, row codec.

Column types come from the one declaration of field types (`record.FIELD_KINDS`);
a dialect only says how each kind is spelled (`DIALECTS`) and how a value is
bound (SQLite stores times as ISO 8601 text; JSON goes as its text in every
dialect, stored as text by SQLite and parsed into jsonb by PostgreSQL's COPY).
A store at version N runs the migrations N+1.. on open; each migration adds,
never drops.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any, Callable, Iterable, Sequence

from ..record import FIELD_KINDS, FIELDS, LLMCall, Outcome, Span, ToolCall
from . import aggregates

__all__ = ["TABLES", "TIME_COLUMN", "STATS_TABLE", "STATS_COLUMNS", "ROLLUP_TABLE", "ROLLUP_KEYS", "ROLLUP_SUMS",
           "BUDGET_TABLE", "Dialect", "DIALECTS", "migrations", "SCHEMA_VERSION", "TableCodec", "codecs", "partition_name"]

TABLES = {LLMCall: "llm_calls", ToolCall: "tool_calls", Outcome: "outcomes", Span: "spans"}
TIME_COLUMN = {LLMCall: "started_at", ToolCall: "started_at", Outcome: "recorded_at", Span: "started_at"}
# One row per process (run_id) and sink that lost records: cumulative counts, upserted by that process.
STATS_TABLE = "tokentrail_stats"
STATS_COLUMNS = ("run_id", "sink", "pid", "updated_at", "written", "dropped", "failed", "rejected")
# Retention's daily aggregates of pruned calls: one row per UTC day (kept in `started_at`, so the reports'
# time bounds and day cuts apply as they are) and combination of these fields; the sums the summary counts.
ROLLUP_TABLE = "llm_calls_daily"
ROLLUP_KEYS = ("provider", "operation", "request_model", "response_model", "user_id", "customer_id", "feature",
               "workflow", "source")
ROLLUP_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
               "total_tokens", "cost_usd", "unpriced_calls", "no_usage_calls", "no_price_calls", "errors")
# Shared budgets: each process's spend per budget, scope and period (run_id "seed": what the store held
# when the first process of a period started), summed by every process (budget.py).
BUDGET_TABLE = "tokentrail_budget_spend"


@dataclass(frozen=True)
class Dialect:
    """How one SQL database spells a field kind, and how values travel to and from it."""

    name: str
    types: dict[str, str]
    primary_key: str
    text_times: bool  # times stored as ISO 8601 text (SQLite) rather than a timestamp type
    text_json: bool  # JSON stored as text rather than a JSON type
    partitioned: bool = False  # record tables partitioned by month on their time column
    sequence: str = "rowid"  # the column that numbers rows in insertion order (`calls_after`)


DIALECTS = {
    "sqlite": Dialect("sqlite", {"int": "INTEGER", "bool": "INTEGER", "float": "REAL"}, "TEXT PRIMARY KEY",
                      text_times=True, text_json=True),
    "postgresql": Dialect("postgresql", {"int": "BIGINT", "bool": "BOOLEAN", "float": "DOUBLE PRECISION",
                                         "datetime": "TIMESTAMPTZ", "str_list": "JSONB", "dict": "JSONB", "json": "JSONB"},
                          "TEXT PRIMARY KEY", text_times=False, text_json=False, partitioned=True, sequence="seq"),
}


def partition_name(table: str, year: int, month: int) -> str:
    return f"{table}_p{year:04d}{month:02d}"



def _create_table(dialect: Dialect, cls: type) -> str:
    kinds = FIELD_KINDS[cls]
    if not dialect.partitioned:
        columns = ",\n  ".join(
            f"{name} {dialect.primary_key}" if name == "id" else f"{name} {dialect.types.get(kinds[name], 'TEXT')}"
            for name in FIELDS[cls]
        )
        return f"CREATE TABLE IF NOT EXISTS {TABLES[cls]} (\n  {columns}\n)"
    # Partitioned by month (pruning drops whole partitions): the key must be part of the primary key.
    time = TIME_COLUMN[cls]
    columns = [f"{name} {dialect.types.get(kinds[name], 'TEXT')}" + (" NOT NULL" if name in ("id", time) else "")
               for name in FIELDS[cls]]
    if cls is LLMCall:
        columns.append(f"{dialect.sequence} BIGSERIAL")
    columns.append(f"PRIMARY KEY (id, {time})")
    body = ",\n  ".join(columns)
    return f"CREATE TABLE IF NOT EXISTS {TABLES[cls]} (\n  {body}\n) PARTITION BY RANGE ({time})"


def _index(table: str, column: str, time_column: str = "started_at") -> str:
    # Partial indexes: a column that is mostly NULL costs nothing on insert.
    return (
        f"CREATE INDEX IF NOT EXISTS ix_{table}_{column} ON {table} ({column}, {time_column}) "
        f"WHERE {column} IS NOT NULL"
    )


def migrations(dialect: Dialect) -> dict[int, list[str]]:
    """Version -> statements. Append, never edit: a store at version N runs N+1.. on open."""
    return {
        1: [
            _create_table(dialect, LLMCall),
            _create_table(dialect, ToolCall),
            _create_table(dialect, Outcome),
            "CREATE INDEX IF NOT EXISTS ix_llm_calls_started_at ON llm_calls (started_at)",
            *(_index("llm_calls", c) for c in ("user_id", "customer_id", "feature", "workflow_run_id")),
            "CREATE INDEX IF NOT EXISTS ix_tool_calls_started_at ON tool_calls (started_at)",
            "CREATE INDEX IF NOT EXISTS ix_outcomes_recorded_at ON outcomes (recorded_at)",
            _index("outcomes", "workflow_run_id", "recorded_at"),
        ],
        2: [  # spans (workflow runs, framework chains and agents), and the trace lookups that build run trees
            _create_table(dialect, Span),
            "CREATE INDEX IF NOT EXISTS ix_spans_started_at ON spans (started_at)",
            "CREATE INDEX IF NOT EXISTS ix_spans_trace_id ON spans (trace_id)",
            "CREATE INDEX IF NOT EXISTS ix_llm_calls_trace_id ON llm_calls (trace_id)",
            "CREATE INDEX IF NOT EXISTS ix_tool_calls_trace_id ON tool_calls (trace_id)",
            "CREATE INDEX IF NOT EXISTS ix_outcomes_trace_id ON outcomes (trace_id)",
        ],
        3: [  # records lost on their way to a sink, noted by the process that lost them (`tokentrail doctor`)
            f"CREATE TABLE IF NOT EXISTS {STATS_TABLE} (\n  run_id TEXT NOT NULL,\n  sink TEXT NOT NULL,\n"
            f"  pid {dialect.types['int']},\n  updated_at TEXT,\n  written {dialect.types['int']},\n"
            f"  dropped {dialect.types['int']},\n  failed {dialect.types['int']},\n  rejected {dialect.types['int']},\n"
            "  PRIMARY KEY (run_id, sink)\n)",
        ],
        4: [  # retention's daily aggregates, and shared budgets' spend per process
            f"CREATE TABLE IF NOT EXISTS {ROLLUP_TABLE} (\n  started_at {dialect.types.get('datetime', 'TEXT')} NOT NULL,\n  "
            + "".join(f"{k} TEXT,\n  " for k in ROLLUP_KEYS) + f"calls {dialect.types['int']} NOT NULL,\n  "
            + ",\n  ".join(f"{k} {dialect.types['float' if k == 'cost_usd' else 'int']}" for k in ROLLUP_SUMS) + "\n)",
            f"CREATE INDEX IF NOT EXISTS ix_{ROLLUP_TABLE}_started_at ON {ROLLUP_TABLE} (started_at)",
            f"CREATE TABLE IF NOT EXISTS {BUDGET_TABLE} (\n  run_id TEXT NOT NULL,\n  budget TEXT NOT NULL,\n"
            f"  scope TEXT NOT NULL,\n  period TEXT NOT NULL,\n  usd {dialect.types['float']} NOT NULL,\n"
            f"  tokens {dialect.types['int']} NOT NULL,\n  PRIMARY KEY (budget, period, scope, run_id)\n)",
            *([f"CREATE INDEX IF NOT EXISTS ix_llm_calls_{dialect.sequence} ON llm_calls ({dialect.sequence})"]
              if dialect.sequence != "rowid" else []),
        ],
        5: [  # the dashboard's errors by category and its `status=error` filter (partial: free for calls that succeed)
            _index("llm_calls", "error_category"),
        ],
        6: aggregates.migration(dialect),  # hourly/daily aggregates kept by triggers, backfilled (sinks/aggregates.py)
        7: aggregates.drop_triggers(dialect),  # the aggregates kept per batch by the writer, not per row by triggers
        8: aggregates.narrow(dialect),  # the daily (customer, user) aggregates: sums and counts only, no histograms
        9: aggregates.monthly(dialect) + ([] if dialect.name == "sqlite" else [  # the costliest calls without a full scan:
            "CREATE INDEX IF NOT EXISTS ix_llm_calls_cost_usd ON llm_calls (cost_usd DESC NULLS LAST)",
            # … of one model too. Without it the planner, blind to how common a model is, walked the cost
            # index for every model: 20 s for a cheap one at 10,000,000 calls (≈ 1 ms with it). The
            # expression is the query layer's `model` (query.py), spelled the same so the index applies.
            "CREATE INDEX IF NOT EXISTS ix_llm_calls_model_cost ON llm_calls "
            "((COALESCE(request_model, response_model)), cost_usd DESC NULLS LAST)"]),
        # No change to the tables: it marks the stores whose SQLite writers keep the aggregates only from
        # `aggregates.KEPT_FROM` calls on (see there), so that a writer of before, which would add its
        # batches to aggregates the others leave out, refuses the store instead of corrupting them.
        10: [],
    }


SCHEMA_VERSION = max(migrations(DIALECTS["sqlite"]))

# JSON columns (finish reasons, request params, metadata, content) are encoded by orjson, a
# dependency on CPython: a third of the standard encoder's instructions for the small values records
# hold (a chat record's three: ≈ 20k → 7k). Where `json.dumps` would write what is not JSON or not
# useful, both encoders here write the same values: NaN and infinities null (PostgreSQL's jsonb
# refuses `NaN`), dates and times ISO 8601, an enum its value, numpy's numbers numbers, a dataclass
# its fields, any other object its str(). What orjson refuses (an int past 64 bits, a lone
# surrogate, a key of another type) goes to the standard encoder, which escapes non-ASCII text
# where orjson writes it as UTF-8.
try:
    from orjson import OPT_NON_STR_KEYS as _NON_STR_KEYS
    from orjson import dumps as _orjson
except ImportError:  # pragma: no cover - PyPy, or installed without it
    _orjson = None


def _json_default(value: Any) -> Any:
    """What either encoder writes for an object JSON has no type for (orjson's choices where it has
    one): dates and times ISO 8601, an enum its value, a number type of another library (numpy's)
    its number, a dataclass its fields, anything else its str()."""
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities (in lists, tuples and dict values) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# The standard encoder, built once: json.dumps() with options builds a new encoder per call, and so
# does JSONEncoder.encode (its C encoder). It keeps no state between calls (no circular-reference
# markers: a value that contains itself fails on recursion depth, and the standard encoder then says
# so), so rows can be encoded on any thread. NaN makes it raise: the value is then written with None.
_standard_json = json.JSONEncoder(default=_json_default, separators=(",", ":"), allow_nan=False).encode
try:
    from json.encoder import c_make_encoder as _c_make_encoder
    from json.encoder import encode_basestring_ascii as _ascii
except ImportError:  # pragma: no cover - a Python without the C accelerator
    _c_make_encoder = None

_c_json = None if _c_make_encoder is None else _c_make_encoder(None, _json_default, _ascii, None, ":", ",", False, False, False)


def _encode_json(value: Any) -> str:
    if _orjson is not None:
        try:
            return _orjson(value, _json_default, _NON_STR_KEYS).decode()  # positional: ≈ 500 instructions fewer
        except TypeError:  # orjson.JSONEncodeError: what it does not encode, the standard encoder may
            pass
    return _standard_encode(value)


def _standard_encode(value: Any) -> str:
    """`_encode_json` by the standard encoder: for what orjson refuses, or where it is not installed."""
    try:
        if _c_json is not None:
            try:
                return "".join(_c_json(value, 0))
            except RecursionError:
                pass
        return _standard_json(value)
    except ValueError as exc:  # NaN or an infinity, which JSON has not: written as null
        try:
            return _standard_json(_finite(value))
        except RecursionError:  # no: a value that contains itself, which the standard encoder names
            raise exc from None


_UTC = timezone.utc
# Whole UTC second -> its ISO 8601 text up to the microseconds' format: records come many to a second.
_seconds: dict[float, str] = {}


def _iso(moment: datetime) -> str:
    """`moment.isoformat(timespec="microseconds")`, at 60 % of its cost for the UTC times records carry."""
    if moment.tzinfo is not _UTC:
        return moment.isoformat(timespec="microseconds")
    # The float's floor is the whole second, exactly (it is within 1 µs), before 1970 too; an int
    # and a float that are equal are the same key.
    second = moment.timestamp() // 1
    text = _seconds.get(second)
    if text is None:
        if len(_seconds) > 64:
            _seconds.clear()
        text = _seconds[second] = moment.replace(microsecond=0).isoformat()[:19] + ".%06d+00:00"
    return text % moment.microsecond


def _compile(columns: Sequence[str], encoders: dict[int, Callable[[Any], Any]]) -> tuple[Callable, Callable]:
    """`row(record)` and `pack(record)` for one table, as generated code (as `dataclasses` makes
    `__init__`): one attribute read per column, which CPython specializes for a slots class, and the
    encoders called inline. `pack` gives the non-NULL columns' values and a bit per column that has
    one — what `operator.attrgetter`, a tuple of `is not None` tests and `itertools.compress` did for
    ≈ 17,000 instructions more a chat record (callgrind of `export`). Columns are checked to be identifiers:
    they come from the record classes' fields, never from input."""
    for name in columns:
        if not name.isidentifier():
            raise ValueError(f"not a column name: {name!r}")
    env: dict[str, Any] = {f"_e{i}": encode for i, encode in encoders.items()}
    env.update(_orjson=_orjson, _default=_json_default, _options=_NON_STR_KEYS if _orjson else 0, _standard=_standard_encode)
    lines = ["def row(r):", f"    out = [{', '.join(f'r.{name}' for name in columns)}]"]
    for i in encoders:
        lines += [f"    if out[{i}] is not None:", f"        out[{i}] = _e{i}(out[{i}])"]
    lines += ["    return out", "", "def pack(r):", "    key = 0", "    out = []", "    add = out.append"]
    for i, name in enumerate(columns):
        # Read again where there is a value rather than kept in a local: most columns are empty, and
        # the test of an empty one is then two steps fewer (≈ 800 instructions a chat record).
        lines += [f"    if r.{name} is not None:", f"        key |= {1 << i}"]
        if encoders.get(i) is _encode_json and _orjson is not None:
            # `_encode_json`, inline: a JSON column's encoding without a call of ours around orjson's.
            lines += ["        try:", f"            add(_orjson(r.{name}, _default, _options).decode())",
                      "        except TypeError:", f"            add(_standard(r.{name}))"]
        else:
            lines.append(f"        add({f'_e{i}(r.{name})' if i in encoders else f'r.{name}'})")
    lines.append("    return key, out")
    exec(compile("\n".join(lines), f"<tokentrail row codec {len(columns)} columns>", "exec"), env)
    return env["row"], env["pack"]


class TableCodec:
    """How one record type goes into and out of its table, in one dialect."""

    def __init__(self, cls: type, dialect: Dialect, *, placeholder: str = "?") -> None:
        self.cls = cls
        self.name = TABLES[cls]
        self.columns = FIELDS[cls]
        self.time_column = TIME_COLUMN[cls]
        self.dialect = dialect
        self.placeholder = placeholder
        kinds = FIELD_KINDS[cls]
        json_kinds = ("str_list", "dict", "json")
        # What binding a value needs, per column index (most columns need nothing).
        encoders = {i: enc for i, name in enumerate(self.columns)
                    if (enc := self._encoder(kinds[name], json_kinds)) is not None}
        self.row, self._pack = _compile(self.columns, encoders)
        self.json_idx = tuple(i for i, c in enumerate(self.columns) if kinds[c] in json_kinds)
        self.time_idx = tuple(i for i, c in enumerate(self.columns) if kinds[c] == "datetime")
        self.bool_idx = tuple(i for i, c in enumerate(self.columns) if kinds[c] == "bool")
        self._inserts: dict[int, str] = {}

    def _encoder(self, kind: str, json_kinds: tuple[str, ...]) -> Callable[[Any], Any] | None:
        if kind in json_kinds:
            # As JSON text in every dialect: SQLite stores it so, and PostgreSQL's COPY (text format) parses
            # text into jsonb itself, ≈ 3 µs a value cheaper than psycopg's Jsonb and its json.dumps.
            return _encode_json
        if kind == "datetime" and self.dialect.text_times:
            return _iso
        if kind == "bool" and self.dialect.types["bool"] == "INTEGER":
            # As the 0 or 1 it is stored as: sqlite3 binds an int at once, but first looks a bool up in
            # its adapters (≈ 3,300 instructions a value, callgrind).
            return int
        return None

    # `row(record)`: the record's values in column order, ready to bind (set in __init__, generated).

    def batches(self, records: Iterable[Any]) -> list[tuple[str, list[list[Any]]]]:
        """(INSERT statement, rows) per shape of non-NULL columns.

        Binding a parameter costs as much as the rest of the insert, and most
        of a record's 45 fields are NULL; so each row binds only the columns it
        has. Records from one source share a shape, so a batch needs few
        statements (and the driver caches them).
        """
        groups: dict[int, list[list[Any]]] = {}
        pack = self._pack
        for record in records:
            shape, values = pack(record)
            rows = groups.get(shape)
            if rows is None:
                rows = groups[shape] = []
            rows.append(values)
        return [(self.insert_sql(shape), rows) for shape, rows in groups.items()]

    def insert_sql(self, shape: int) -> str:
        """The INSERT of the columns whose bits are set in `shape` (bit i: column i)."""
        sql = self._inserts.get(shape)
        if sql is None:
            names = [name for i, name in enumerate(self.columns) if shape >> i & 1]
            marks = ", ".join([self.placeholder] * len(names))
            conflict = "INSERT OR IGNORE INTO" if self.dialect.name == "sqlite" else "INSERT INTO"
            tail = "" if self.dialect.name == "sqlite" else " ON CONFLICT (id) DO NOTHING"
            sql = self._inserts[shape] = f"{conflict} {self.name} ({', '.join(names)}) VALUES ({marks}){tail}"
        return sql

    def record(self, row: Sequence[Any]) -> Any:
        """A record from a row read back in column order."""
        values = list(row)
        if self.dialect.text_json:
            for i in self.json_idx:
                if values[i] is not None:
                    values[i] = json.loads(values[i])
        if self.dialect.text_times:
            for i in self.time_idx:
                if values[i] is not None:
                    values[i] = datetime.fromisoformat(values[i])
        for i in self.bool_idx:
            if values[i] is not None:
                values[i] = bool(values[i])
        return self.cls(**dict(zip(self.columns, values)))


def codecs(dialect: Dialect, **options: Any) -> dict[type, TableCodec]:
    """A codec per record type for one dialect."""
    return {cls: TableCodec(cls, dialect, **options) for cls in TABLES}
