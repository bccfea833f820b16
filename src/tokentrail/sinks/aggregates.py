"""Aggregates kept as calls are written, so whole-store summaries do not read a million rows.

Decision (issue 14, "every dashboard answer < 300 ms at 1,000,000 calls"):

- Three aggregate tables, each one row per time bucket and combination of its keys, holding the
  summary's sums and counts (calls, tokens, cost, unpriced calls, errors):
  - `llm_calls_hourly`: per UTC hour and provider, operation, request/response model, feature,
    workflow and error category (the dashboard's totals, chart, model/provider/feature/workflow
    breakdowns, errors, its filters on those fields and `status=`); it also keeps two cumulative
    latency histograms (`l0..`: calls whose latency is below `BOUNDS[i]` ms, `lat_n`: calls with a
    latency; the same for TTFT in `f0..`/`ttft_n`);
  - `llm_calls_customer_daily`: per UTC day and customer; `llm_calls_user_daily`: per UTC day and
    user (hourly rows per user would be as many as the calls). Sums and counts only (schema 8):
    their histograms were most of what the aggregates cost the writer (a batch of 500 calls makes
    ~180 customer-day and ~440 user-day rows, ~100 hourly ones).
- Maintained per batch by the writer, in the transaction that inserts the calls (`batch_sql`): after
  the insert, one `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` per table over exactly the
  calls this insert added, grouped and summed by the database (no value bound, no Python per call).
  SQLite: the calls whose rowid is above the largest one read in the same transaction before the
  insert (`BEGIN IMMEDIATE` serializes writers; new rows number on from the largest rowid);
  PostgreSQL: the insert's `RETURNING` rows, kept in a temporary table (`NEW_CALLS`). A call the
  insert skipped (a retried batch's known id) is in neither, so every call counts exactly once.
  Every writing process keeps the aggregates of the rows it inserted; a store at schema 8 refuses
  older writers. Rows are upserted by `(started_at, k)`, `k` being the keys quoted and joined by
  the database (NULLs are distinct in a UNIQUE index, quoted they are not).
- SQLite keeps them only once a store has held `KEPT_FROM` calls (its largest rowid; a tenth of
  `MIN_CALLS`, below which no read uses them: see Reads), so a small store's writer skips them
  (≈ 56,000 instructions a chat record in the benchmark's 20-call batches: bench/instructions.py
  with and without `--large-store`). The transaction whose insert takes the largest rowid to
  `KEPT_FROM` or past it makes them afresh from every call (`full_rebuild_sql`, ≈ 0.15 s then);
  every later one keeps them per batch. Writers are serialized and each decides from the largest
  rowid it read in its own transaction, so exactly one transaction rebuilds and no call is counted
  twice or missed. Rows a store at schema 6–9 kept before are left as they are (never read while
  it is small, replaced by the rebuild). PostgreSQL stores (fleets) keep them from the first call.
- Migration 6 creates and backfills them from the calls already stored (schema 6 kept them with
  per-row triggers); migration 7 drops the triggers; migration 8 recreates the daily tables
  without the histograms, copying their sums.
- Retention: `prune` deletes every aggregate row before the first bucket boundary at or after
  the prune moment and rebuilds those rows from the calls left, in the prune's transaction, so
  pruned calls leave the aggregates (rolled-up calls are counted by `llm_calls_daily`, as before).
- Reads (`summarize`): a summary whose grouping and filters are all among one table's keys (or a
  day/hour cut no finer than its bucket) takes the whole buckets inside the range from that table
  and the partial buckets at the edges from `llm_calls`, so sums and counts equal the raw table's
  (costs up to float rounding). It does so only when those whole buckets hold at least
  `MIN_CALLS` calls: below that the raw table answers fast, with exact percentiles. Through the
  aggregates p50/p95 latency and p50 TTFT are read from the hourly histograms: geometric
  interpolation within buckets `RATIO` apart (within a few percent where calls are many; below
  10 ms linear). Grouped or filtered by customer or user (the daily tables), the sums come from the
  aggregates and the percentiles from the calls, over an evenly spread sample of about
  `PERCENTILE_SAMPLE` of them, as the raw summary takes them (`_sampled_percentiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from ..times import parse_time
from .query import PERCENTILE_SAMPLE, QueryBuilder

__all__ = ["AGGREGATES", "BOUNDS", "MIN_CALLS", "KEPT_FROM", "SUMMED", "SUMS", "NEW_CALLS", "NEEDED", "migration", "drop_triggers",
           "narrow", "monthly", "batch_sql", "rebuild_sql", "full_rebuild_sql", "aggregated"]

RATIO = 1.4
BOUNDS = tuple(round(10.0 * RATIO ** i, 3) for i in range(28))  # ms: 10 ms .. ~89 s
# (`started_at` may be NULL in the aggregates: a call stored without a start time, in an old store)
MIN_CALLS = 100_000  # whole buckets holding fewer calls: the raw table answers (exact percentiles)
# SQLite keeps the aggregates once a store has held this many calls (never more than `MIN_CALLS`: no read
# uses them below that). A tenth of it, so the one rebuild that starts them takes ≈ 0.15 s, not 1.5 s —
# even at a SIGTERM's flush, which `shutdown_timeout` bounds.
KEPT_FROM = 10_000


@dataclass(frozen=True)
class Aggregate:
    name: str
    grain: str  # "hour", "day" or "month"
    keys: tuple[str, ...]
    histograms: bool = False  # the latency/TTFT histograms too (schema 8: the hourly table only)

    @property
    def summed(self) -> list[str]:
        return SUMMED if self.histograms else SUMS


AGGREGATES = (  # append only: the migrations of schema 6–8 made the first three
    Aggregate("llm_calls_hourly", "hour", ("provider", "operation", "request_model", "response_model", "feature",
                                           "workflow", "error_category"), histograms=True),
    Aggregate("llm_calls_customer_daily", "day", ("customer_id",)),
    Aggregate("llm_calls_user_daily", "day", ("user_id",)),
    # schema 9: per user and month, so a breakdown by user over months reads users × months rows, not
    # users × days (20,000 users over 3 months: 1.79M daily rows, 1.3 s to sum on PostgreSQL)
    Aggregate("llm_calls_user_monthly", "month", ("user_id",)),
)
_SCHEMA_8 = AGGREGATES[:3]  # what migrations 6–8 create, change and backfill
# The order reads try them in: per key set, the coarsest first; a month table's partial months come from
# the finer tables (`aggregated`).
_READ_ORDER = sorted(AGGREGATES, key=lambda agg: ({"month": 0}.get(agg.grain, 1), AGGREGATES.index(agg)))

_LATENCY = "(CASE WHEN {r}error_category = 'budget' THEN NULL ELSE {r}duration_ms END)"
_NULLABLE = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
             "total_tokens", "cost_usd")


def _metrics(r: str = "") -> list[tuple[str, str]]:
    """(column, per-call expression) of every summed column; `r`: the prefix of a call's columns (`NEW.`)."""
    out = [("calls", "1")]
    for name, sql in QueryBuilder.METRICS[1:]:  # SUM(expr): the summary's own definitions
        inner = sql[len("SUM("):-1]
        if r:
            for column in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                           "reasoning_tokens", "total_tokens", "cost_usd", "error_type", "error_category"):
                inner = _prefix(inner, column, r)
        out.append((name, inner))
    latency = _LATENCY.format(r=r)
    out.append(("lat_n", f"(CASE WHEN {latency} IS NULL THEN 0 ELSE 1 END)"))
    out += [(f"l{i}", f"(CASE WHEN {latency} < {b} THEN 1 ELSE 0 END)") for i, b in enumerate(BOUNDS)]
    out.append(("ttft_n", f"(CASE WHEN {r}ttft_ms IS NULL THEN 0 ELSE 1 END)"))
    out += [(f"f{i}", f"(CASE WHEN {r}ttft_ms < {b} THEN 1 ELSE 0 END)") for i, b in enumerate(BOUNDS)]
    return out


def _prefix(sql: str, column: str, r: str) -> str:
    import re

    return re.sub(rf"(?<![\w.]){column}\b", f"{r}{column}", sql)


SUMMED = [name for name, _ in _metrics()]
SUMS = SUMMED[:SUMMED.index("lat_n")]  # calls, tokens, cost, unpriced calls, errors: what the daily tables keep


def _bucket(dialect: str, grain: str, t: str) -> str:
    if dialect == "sqlite":
        return {"hour": f"substr({t}, 1, 13) || ':00:00.000000+00:00'",
                "day": f"substr({t}, 1, 10) || 'T00:00:00.000000+00:00'",
                "month": f"substr({t}, 1, 7) || '-01T00:00:00.000000+00:00'"}[grain]
    return f"(date_trunc('{grain}', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def _key(dialect: str, keys: Sequence[str], r: str = "") -> str:
    quote = "quote" if dialect == "sqlite" else "quote_nullable"
    return " || ',' || ".join(f"{quote}({r}{k})" for k in keys)


def _upsert_tail(dialect: str, agg: Aggregate) -> str:
    own = "" if dialect == "sqlite" else f"{agg.name}."
    sets = []
    for name in agg.summed:
        if name in _NULLABLE:
            sets.append(f"{name} = CASE WHEN excluded.{name} IS NULL THEN {own}{name} "
                        f"ELSE COALESCE({own}{name}, 0) + excluded.{name} END")
        else:
            sets.append(f"{name} = {own}{name} + excluded.{name}")
    return f" ON CONFLICT (started_at, k) DO UPDATE SET {', '.join(sets)}"


def _sum(name: str, expr: str) -> str:
    """A summed column over a group of calls: a count where the per-call expression is a 0/1 condition
    (`COUNT(*) FILTER (WHERE …)` costs the database less than summing a CASE: 58 of them per hourly row)."""
    if name == "calls":
        return "COUNT(*)"
    flag = _FLAG.fullmatch(expr)
    return f"COUNT(*) FILTER (WHERE {flag.group(1)})" if flag else f"SUM({expr})"


_FLAG = __import__("re").compile(r"\(?CASE WHEN (.*) THEN 1 ELSE 0 END\)?")


def _columns(agg: Aggregate, summed: Sequence[str] | None = None) -> str:
    return ", ".join(("started_at", "k", *agg.keys, *(agg.summed if summed is None else summed)))


def _grouped_select(dialect: str, agg: Aggregate, source: str, clause: str = "", summed: Sequence[str] | None = None) -> str:
    """The aggregate rows of the calls in `source` (a table) that match `clause` (`summed`: the columns, by
    default the table's own)."""
    bucket = _bucket(dialect, agg.grain, "started_at")
    summed = agg.summed if summed is None else summed
    sums = [_sum(name, expr) for name, expr in _metrics() if name in summed]
    keys = ", ".join(agg.keys)
    return (f"SELECT {bucket}, {_key(dialect, agg.keys)}, {keys}, {', '.join(sums)} FROM {source}{clause} "
            f"GROUP BY {bucket}, {keys}")


def _first_bound_above(value: str, lo: int = 0, hi: int = len(BOUNDS)) -> str:
    """SQL for the index of the first of `BOUNDS[lo:hi]` above `value` (`hi` when none is): a binary search
    in nested CASEs, five comparisons instead of one per bound. `value` must not be NULL."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (f"CASE WHEN {value} < {BOUNDS[mid]} THEN {_first_bound_above(value, lo, mid)} "
            f"ELSE {_first_bound_above(value, mid + 1, hi)} END")


def _bucket_of(value: str) -> str:
    """A latency's histogram bucket: it is below `BOUNDS[i]` for every i at or above it (NULL: no latency)."""
    return f"(CASE WHEN {value} IS NULL THEN NULL ELSE {_first_bound_above(value)} END)"


def _histogram_select(dialect: str, agg: Aggregate, source: str, clause: str = "") -> str:
    """`_grouped_select` for a table with the latency histograms, in two steps so each call is looked at
    once: the calls grouped by the table's keys and their latency and TTFT buckets (each call's bucket
    found by one binary search), then those groups by the keys, the cumulative counts taken from the
    buckets (`l{i}`: calls in bucket i or below). Measured on a 20-call batch: ≈ 45k → ≈ 15k instructions
    per call against one pass that tests every call against the 56 bounds."""
    bucket = _bucket(dialect, agg.grain, "started_at")
    keys = ", ".join(agg.keys)
    metrics = dict(_metrics())
    inner = [f"{bucket} AS started_at", keys, f"{_bucket_of(_LATENCY.format(r=''))} AS lb", f"{_bucket_of('ttft_ms')} AS fb"]
    outer = ["started_at", _key(dialect, agg.keys), keys]
    for name in agg.summed:
        if name == "lat_n" or name == "ttft_n":
            column = "lb" if name == "lat_n" else "fb"
            outer.append(f"COALESCE(SUM(calls) FILTER (WHERE {column} IS NOT NULL), 0)")
        elif name[0] in "lf" and name[1:].isdigit():
            column = "lb" if name[0] == "l" else "fb"
            outer.append(f"COALESCE(SUM(calls) FILTER (WHERE {column} <= {name[1:]}), 0)")
        else:
            inner.append(f"{_sum(name, metrics[name])} AS {name}")
            outer.append(f"SUM({name})")
    return (f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM {source}{clause} "
            f"GROUP BY 1, {keys}, lb, fb) AS per_bucket GROUP BY started_at, {keys}")


def _select(dialect: str, agg: Aggregate, source: str, clause: str = "") -> str:
    """The rows of `agg` for the calls in `source` matching `clause`, as the writer and the prune keep them."""
    return _histogram_select(dialect, agg, source, clause) if agg.histograms else _grouped_select(dialect, agg, source, clause)


def _column_defs(dialect: Any, agg: Aggregate, summed: Sequence[str]) -> str:
    """The columns of an aggregate table keeping `summed`, as CREATE TABLE lists them."""
    integer, real = dialect.types["int"], dialect.types["float"]
    cols = [f"started_at {dialect.types.get('datetime', 'TEXT')}", "k TEXT NOT NULL", *(f"{k} TEXT" for k in agg.keys)]
    cols += [f"{n} {real if n == 'cost_usd' else integer}" + ("" if n in _NULLABLE else " NOT NULL") for n in summed]
    return "\n  " + ",\n  ".join(cols) + "\n"


def migration(dialect: Any) -> list[str]:
    """Schema version 6: the aggregate tables, their triggers, and their backfill from the stored calls
    (append-only: version 7 drops the triggers, `drop_triggers`)."""
    name = dialect.name
    statements = []
    for agg in _SCHEMA_8:
        statements.append(f"CREATE TABLE IF NOT EXISTS {agg.name} ({_column_defs(dialect, agg, SUMMED)})")
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{agg.name}_key ON {agg.name} (started_at, k)")
        statements.append(f"INSERT INTO {agg.name} ({_columns(agg, SUMMED)}) "
                          f"{_grouped_select(name, agg, 'llm_calls', summed=SUMMED)}")
    if name == "sqlite":
        for agg in _SCHEMA_8:
            wide = Aggregate(agg.name, agg.grain, agg.keys, True)  # schema 6: every table had the histograms
            values = [_bucket(name, agg.grain, "NEW.started_at"), _key(name, agg.keys, "NEW."),
                      *(f"NEW.{k}" for k in agg.keys), *(expr for _, expr in _metrics("NEW."))]
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS tt_{agg.name} AFTER INSERT ON llm_calls BEGIN "
                f"INSERT INTO {agg.name} ({_columns(agg, SUMMED)}) VALUES ({', '.join(values)}){_upsert_tail(name, wide)}; END")
    else:
        body = "".join(f"  INSERT INTO {agg.name} ({_columns(agg, SUMMED)}) {_grouped_select(name, agg, 'tt_new_calls', summed=SUMMED)}"
                       f"{_upsert_tail(name, Aggregate(agg.name, agg.grain, agg.keys, True))};\n" for agg in _SCHEMA_8)
        statements.append("CREATE OR REPLACE FUNCTION tt_aggregate_calls() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                          f"{body}  RETURN NULL;\nEND\n$$")
        statements.append("DROP TRIGGER IF EXISTS tt_aggregate_calls ON llm_calls")
        statements.append("CREATE TRIGGER tt_aggregate_calls AFTER INSERT ON llm_calls REFERENCING NEW TABLE AS tt_new_calls "
                          "FOR EACH STATEMENT EXECUTE FUNCTION tt_aggregate_calls()")
    return statements


def _floor(moment: datetime, grain: str) -> datetime:
    moment = moment.astimezone(timezone.utc)
    if grain == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if grain == "month" else day


def _ceil(moment: datetime, grain: str) -> datetime:
    floor = _floor(moment, grain)
    if floor == moment:
        return floor
    if grain == "month":
        return floor.replace(year=floor.year + 1, month=1) if floor.month == 12 else floor.replace(month=floor.month + 1)
    return floor + (timedelta(hours=1) if grain == "hour" else timedelta(days=1))


def monthly(dialect: Any) -> list[str]:
    """Schema version 9: the aggregate tables added after 8 (`AGGREGATES[3:]`), backfilled from the calls."""
    statements = []
    for agg in AGGREGATES[len(_SCHEMA_8):]:
        statements += [f"CREATE TABLE IF NOT EXISTS {agg.name} ({_column_defs(dialect, agg, agg.summed)})",
                       f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{agg.name}_key ON {agg.name} (started_at, k)",
                       f"INSERT INTO {agg.name} ({_columns(agg)}) {_select(dialect.name, agg, 'llm_calls')}"]
    return statements


def _param(style: str, moment: datetime) -> Any:
    return moment.isoformat(timespec="microseconds") if style == "qmark" else moment


def drop_triggers(dialect: Any) -> list[str]:
    """Schema version 7: the aggregates are kept per batch by the writer (`batch_sql`), no longer by triggers."""
    if dialect.name == "sqlite":
        return [f"DROP TRIGGER IF EXISTS tt_{agg.name}" for agg in _SCHEMA_8]
    return ["DROP TRIGGER IF EXISTS tt_aggregate_calls ON llm_calls", "DROP FUNCTION IF EXISTS tt_aggregate_calls()"]


def narrow(dialect: Any) -> list[str]:
    """Schema version 8: the daily tables (by customer, by user) keep the sums and counts only, not the
    histograms (what they cost the writer was most of the aggregates'); their rows are copied over."""
    statements = []
    for agg in _SCHEMA_8:
        if agg.histograms:
            continue
        statements += [
            f"CREATE TABLE {agg.name}_v8 ({_column_defs(dialect, agg, SUMS)})",
            f"INSERT INTO {agg.name}_v8 ({_columns(agg)}) SELECT {_columns(agg)} FROM {agg.name}",
            f"DROP TABLE {agg.name}",
            f"ALTER TABLE {agg.name}_v8 RENAME TO {agg.name}",
            f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{agg.name}_key ON {agg.name} (started_at, k)",
        ]
    return statements


def _rebuild(dialect: str, agg: Aggregate, clause: str, params: list[Any]) -> list[tuple[str, Any, bool]]:
    """Delete the aggregate rows whose bucket matches `clause` and make them again from the calls."""
    return [(f"DELETE FROM {agg.name}{clause}", params, False),
            (f"INSERT INTO {agg.name} ({_columns(agg)}) {_select(dialect, agg, 'llm_calls', clause)}", params, False)]


def full_rebuild_sql(style: str) -> list[tuple[str, Any, bool]]:
    """Every aggregate row deleted and made again from all the calls (a SQLite store reaching
    `KEPT_FROM` calls: see the module docstring), for the transaction that inserted them."""
    dialect = "sqlite" if style == "qmark" else "postgresql"
    return [s for agg in AGGREGATES for s in _rebuild(dialect, agg, "", [])]


def rebuild_sql(style: str, before: Any) -> list[tuple[str, Any, bool]]:
    """After a prune up to `before`: every aggregate row of a bucket starting before the first boundary at or
    after `before` is deleted and made again from the calls left (statements for the prune's transaction)."""
    moment = parse_time(before)
    dialect = "sqlite" if style == "qmark" else "postgresql"
    mark = "?" if style == "qmark" else "%s"
    return [s for agg in AGGREGATES
            for s in _rebuild(dialect, agg, f" WHERE started_at < {mark}", [_param(style, _ceil(moment, agg.grain))])]


# -- the write side: per batch ----------------------------------------------------------------------------

NEW_CALLS = "tt_inserted_calls"  # PostgreSQL: the calls a batch's insert added (a temporary table, emptied at commit)
# The calls' columns the aggregates read (what the insert returns into `NEW_CALLS`).
NEEDED = ("started_at", *dict.fromkeys(k for agg in AGGREGATES for k in agg.keys), "input_tokens", "output_tokens",
          "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "total_tokens", "cost_usd", "error_type",
          "duration_ms", "ttft_ms")
_batch: dict[Any, list[tuple[str, Any, bool]]] = {}


def batch_sql(style: str, since: Any = None, source: str = NEW_CALLS) -> list[tuple[str, Any, bool]]:
    """What adds the calls a transaction inserted to the aggregates, run in that transaction after the insert:
    per aggregate table one `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` over those calls only
    (the database groups and sums them, no value is bound). SQLite: the calls whose rowid is above `since`,
    the largest rowid read in the transaction before the insert (writers are serialized, new rows number
    on from it); PostgreSQL: the rows of `source`, a temporary table holding exactly the calls the insert
    added (the insert's RETURNING into `NEW_CALLS`, or the staged batch when all of it went in). Calls the
    insert skipped (known ids: a retried batch) are in neither, so every call counts once."""
    sqlite = style == "qmark"
    key = style if sqlite else (style, source)
    statements = _batch.get(key)
    if statements is None:
        dialect = "sqlite" if sqlite else "postgresql"
        source, clause = ("llm_calls", " WHERE rowid > ?") if sqlite else (source, "")
        # PostgreSQL: rows upserted in key order, so two writers' transactions lock them in the same order
        order = "" if sqlite else " ORDER BY 1, 2"
        statements = _batch[key] = [
            (f"INSERT INTO {agg.name} ({_columns(agg)}) {_select(dialect, agg, source, clause)}{order}"
             f"{_upsert_tail(dialect, agg)}", None, False) for agg in AGGREGATES]
    return [(sql, [since] if sqlite else (), many) for sql, _, many in statements]


# -- the read side ---------------------------------------------------------------------------------------

def _percentile(cumulative: Sequence[float], total: float, p: float) -> float | None:
    """The p-th percentile from cumulative counts below each of `BOUNDS` (geometric within a bucket)."""
    if not total:
        return None
    target = total * p / 100.0
    below, low = 0.0, 0.0
    for bound, count in zip(BOUNDS, cumulative):
        if count >= target and count > below:
            share = (target - below) / (count - below)
            if low <= 0.0:
                return bound * share
            return low * (bound / low) ** share
        below, low = count, bound
    return BOUNDS[-1]


def aggregated(read: Callable[[str, Sequence[Any]], list[Any]], style: str, group_by: Sequence[str] | str,
               since: Any, until: Any, where: Any, *, percentiles: bool, columns: Sequence[str],
               min_calls: int | None = None) -> list[dict[str, Any]] | None:
    """`summary()` rows from the aggregates plus the raw edges, or None when no aggregate table can answer
    (a grouping or filter it does not keep, a range inside one bucket, fewer than `MIN_CALLS` calls).
    A month table's edges (the partial months) are answered the same way by the finer tables, and
    theirs from the calls."""
    groups = [group_by] if isinstance(group_by, str) else list(group_by or ())
    keys = [str(g).strip().lower() for g in groups]
    found = _sum_rows(read, style, groups, keys, since, until, where, percentiles, columns, min_calls, "month")
    if found is None:
        return None
    rows, wanted, histograms = found
    out = _rows(rows, keys, wanted, histograms)
    if percentiles and not histograms:
        _sampled_percentiles(read, style, groups, keys, since, until, where, columns, out)
    return out


def _sum_rows(read: Callable[[str, Sequence[Any]], list[Any]], style: str, groups: list[Any], keys: list[str],
              since: Any, until: Any, where: Any, percentiles: bool, columns: Sequence[str], min_calls: int | None,
              finest: str) -> tuple[list[Any], list[str], bool] | None:
    """`aggregated`'s rows before they are merged: (keys…, sums…) per table or edge read, the sums read,
    whether they hold the histograms. `finest`: the coarsest grain this call may use."""
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    for agg in _READ_ORDER:
        monthly = agg.grain == "month"
        if (monthly and (finest != "month" or "day" in keys)) or (agg.grain != "hour" and "hour" in keys):
            continue
        query = QueryBuilder(("started_at", *agg.keys), "started_at", style=style)
        try:
            exprs = [query.expression(g, "group by") for g in groups]
            query.where(where=where)
        except ValueError:
            continue
        low = _ceil(start, agg.grain) if start is not None else None
        high = _floor(end, agg.grain) if end is not None else None
        if low is not None and high is not None and low >= high:
            if monthly:
                continue  # no whole month in range: the daily table may have whole days
            return None
        histograms = percentiles and agg.histograms
        wanted = SUMMED if histograms else SUMS  # sums only: 12 columns, not 70
        rows = list(read(*_sums_sql(query, agg.name, exprs, low, high, where, wanted, aggregate=True)))
        calls = sum(int(row[len(exprs)] or 0) for row in rows)
        if calls < (MIN_CALLS if min_calls is None else min_calls):
            if monthly:
                continue
            return None
        raw = QueryBuilder(columns, "started_at", style=style)
        raw_exprs = [raw.expression(g, "group by") for g in groups]
        edges = []
        if start is not None and (low is None or start < low):
            edges.append((start, low))
        if end is not None and (high is None or high < end):
            edges.append((high, end))
        for edge_start, edge_end in edges:
            # a month table's partial months from the daily tables (the same sums: no histograms), else the calls
            finer = _sum_rows(read, style, groups, keys, edge_start, edge_end, where, False, columns, 0, "day") \
                if monthly else None
            if finer is not None:
                rows += finer[0]
            else:
                rows += read(*_sums_sql(raw, "llm_calls", raw_exprs, edge_start, edge_end, where, wanted, aggregate=False))
        return rows, wanted, histograms
    return None


_BLOCKS = 200


def _sampled_percentiles(read: Callable[[str, Sequence[Any]], list[Any]], style: str, groups: list[Any], keys: list[str],
                         since: Any, until: Any, where: Any, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """p50/p95 latency and p50 TTFT of `rows` (sums from a table without histograms) from the raw calls: all
    of them up to `PERCENTILE_SAMPLE`, above it a sample of about that many spread over the range."""
    every = max(1, sum(row["calls"] for row in rows) // PERCENTILE_SAMPLE)
    query = QueryBuilder(columns, "started_at", style=style)
    exprs = [query.expression(g, "group by") for g in groups]
    clause, params = query.where(since=since, until=until, where=where)
    if every > 1:
        # The sample: `_BLOCKS` runs of consecutive calls (by rowid/seq, the insertion number) spread evenly
        # over the range's calls, together 1/every of them: the database seeks to each run and reads only it
        # (a filter on every n-th call would still read them all: ~170 ms at a million calls here).
        number = "rowid" if style == "qmark" else "seq"
        # Where the range's calls lie in insertion order: the numbers of its first and last call by time, each
        # one seek on the time index (MIN/MAX of the number over the range walked the number's index past
        # every later call: 0.4–0.55 s for the last 7 days of 10,000,000). Calls written out of time order
        # near the ends may fall outside the sample's span: it is a sample; the sums are exact anyway.
        ends = read(f"SELECT (SELECT {number} FROM llm_calls{clause} ORDER BY started_at ASC LIMIT 1), "
                    f"(SELECT {number} FROM llm_calls{clause} ORDER BY started_at DESC LIMIT 1)", [*params, *params])[0]
        low, high = (None, None) if ends[0] is None else (min(ends), max(ends))
        if low is not None:
            step = (high - low + 1) / _BLOCKS
            width = max(1, int(step / every))
            runs = " OR ".join(f"{number} BETWEEN {low + int(i * step)} AND {low + int(i * step) + width - 1}"
                               for i in range(_BLOCKS))
            clause += (" AND " if clause else " WHERE ") + f"({runs})"
    pct = query.percentile_sql("{col}", "{p}")
    select = [f"{e} AS g{i}" for i, e in enumerate(exprs)]
    select += [pct.format(col=_LATENCY.format(r=""), p=50), pct.format(col=_LATENCY.format(r=""), p=95),
               pct.format(col="ttft_ms", p=50)]
    sql = f"SELECT {', '.join(select)} FROM llm_calls{clause}"
    if exprs:
        sql += " GROUP BY " + ", ".join(f"g{i}" for i in range(len(exprs)))
    n = len(exprs)
    found = {tuple(row[:n]): row[n:] for row in read(sql, params)}
    for row in rows:
        values = found.get(tuple(row[k] for k in keys), (None, None, None))
        for name, value in zip(("p50_ms", "p95_ms", "ttft_p50_ms"), values):
            row[name] = None if value is None else float(value)


def _sums_sql(query: QueryBuilder, table: str, exprs: list[str], since: Any, until: Any, where: Any,
              wanted: Sequence[str], *, aggregate: bool) -> tuple[str, list[Any]]:
    clause, params = query.where(since=since, until=until, where=where)
    select = [f"{e} AS g{i}" for i, e in enumerate(exprs)]
    # PostgreSQL sums BIGINT columns as NUMERIC, slowly (0.9 s of 1.3 s over 1.8M daily rows): as float8 they
    # are exact up to 2**53, and each group's sum comes back as a BIGINT (no conversion in Python).
    pg = query.style != "qmark"
    select += [(f"SUM({name})" if name == "cost_usd" or not pg else f"SUM({name}::float8)::bigint") if aggregate
               else ("COUNT(*)" if name == "calls" else f"SUM({expr})" if name == "cost_usd" or not pg
                     else f"SUM(({expr})::float8)::bigint")
               for name, expr in _metrics() if name in wanted]
    sql = f"SELECT {', '.join(select)} FROM {table}{clause}"
    if exprs:
        sql += " GROUP BY " + ", ".join(f"g{i}" for i in range(len(exprs)))
    return sql, params


def _rows(rows: list[Any], keys: list[str], wanted: Sequence[str], percentiles: bool) -> list[dict[str, Any]]:
    n = len(keys)
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = tuple(row[:n])
        values = list(row[n:])
        have = merged.get(key)
        if have is None:
            merged[key] = values
            continue
        for i, value in enumerate(values):
            if value is not None:
                have[i] = value if have[i] is None else have[i] + value
    names = [name for name, _ in QueryBuilder.METRICS]
    at = {name: i for i, name in enumerate(wanted)}
    out = []
    for key, values in merged.items():
        if not values[at["calls"]]:
            continue
        item = dict(zip(keys, key))
        item.update((name, values[at[name]]) for name in names)
        if percentiles:
            lat, ttft = at["l0"], at["f0"]
            hist = values[lat:lat + len(BOUNDS)]
            item["p50_ms"] = _percentile(hist, values[at["lat_n"]], 50)
            item["p95_ms"] = _percentile(hist, values[at["lat_n"]], 95)
            item["ttft_p50_ms"] = _percentile(values[ttft:ttft + len(BOUNDS)], values[at["ttft_n"]], 50)
        else:
            item["p50_ms"] = item["p95_ms"] = item["ttft_p50_ms"] = None
        if item["cost_usd"] is not None:
            item["cost_usd"] = float(item["cost_usd"])
        item["error_rate"] = item["errors"] / item["calls"]
        out.append(item)
    out.sort(key=lambda r: (-(r["cost_usd"] or 0.0), -r["calls"]))
    return out
