"""Aggregates kept as calls are written, so whole-store summaries do not read a million rows.

Decision (issue 14, "every dashboard answer < 300 ms at 1,000,000 calls"):

- Three aggregate tables, each one row per time bucket and combination of its keys, holding the
  summary's sums and counts (calls, tokens, cost, unpriced calls, errors) and two cumulative
  latency histograms (`l0..`: calls whose latency is below `BOUNDS[i]` ms, `lat_n`: calls with a
  latency; the same for TTFT in `f0..`/`ttft_n`):
  - `llm_calls_hourly`: per UTC hour and provider, operation, request/response model, feature,
    workflow and error category (the dashboard's totals, chart, model/provider/feature/workflow
    breakdowns, errors, its filters on those fields and `status=`);
  - `llm_calls_customer_daily`: per UTC day and customer; `llm_calls_user_daily`: per UTC day and
    user (hourly rows per user would be as many as the calls).
- Maintained per batch by the writer, in the transaction that inserts the calls (`batch_sql`): the
  batch's calls are grouped in Python by each table's bucket and keys, and each group is one
  UPSERT adding its sums and histogram counts (a batch of 500 calls: a few dozen upserts, not
  1,500 trigger runs). A call counts exactly once: when the insert added fewer rows than the
  batch holds (a retried batch, whose known ids the insert skips), the buckets the batch touches
  are rebuilt from the calls instead (`rebuild`, as `prune` does). Every writing process keeps
  the aggregates of the rows it inserted; a store at schema 7 refuses older writers. Rows are
  upserted by `(started_at, k)`, `k` being the keys quoted and joined by the database (NULLs are
  distinct in a UNIQUE index, quoted they are not).
- Migration 6 creates and backfills them from the calls already stored (schema 6 kept them with
  per-row triggers); migration 7 drops the triggers.
- Retention: `prune` deletes every aggregate row before the first bucket boundary at or after
  the prune moment and rebuilds those rows from the calls left, in the prune's transaction, so
  pruned calls leave the aggregates (rolled-up calls are counted by `llm_calls_daily`, as before).
- Reads (`summarize`): a summary whose grouping and filters are all among one table's keys (or a
  day/hour cut no finer than its bucket) takes the whole buckets inside the range from that table
  and the partial buckets at the edges from `llm_calls`, so sums and counts equal the raw table's
  (costs up to float rounding). It does so only when those whole buckets hold at least
  `MIN_CALLS` calls: below that the raw table answers fast, with exact percentiles. Through the
  aggregates p50/p95 latency and p50 TTFT are read from the histograms: geometric interpolation
  within buckets `RATIO` apart (within a few percent where calls are many; below 10 ms linear).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import accumulate
from operator import attrgetter
from typing import Any, Callable, Sequence

from ..times import parse_time
from .query import QueryBuilder

__all__ = ["AGGREGATES", "BOUNDS", "MIN_CALLS", "migration", "drop_triggers", "batch_sql", "rebuild_sql",
           "aggregated"]

RATIO = 1.4
BOUNDS = tuple(round(10.0 * RATIO ** i, 3) for i in range(28))  # ms: 10 ms .. ~89 s
# (`started_at` may be NULL in the aggregates: a call stored without a start time, in an old store)
MIN_CALLS = 100_000  # whole buckets holding fewer calls: the raw table answers (exact percentiles)


@dataclass(frozen=True)
class Aggregate:
    name: str
    grain: str  # "hour" or "day"
    keys: tuple[str, ...]


AGGREGATES = (
    Aggregate("llm_calls_hourly", "hour", ("provider", "operation", "request_model", "response_model", "feature",
                                           "workflow", "error_category")),
    Aggregate("llm_calls_customer_daily", "day", ("customer_id",)),
    Aggregate("llm_calls_user_daily", "day", ("user_id",)),
)

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


def _bucket(dialect: str, grain: str, t: str) -> str:
    if dialect == "sqlite":
        return (f"substr({t}, 1, 13) || ':00:00.000000+00:00'" if grain == "hour"
                else f"substr({t}, 1, 10) || 'T00:00:00.000000+00:00'")
    return f"(date_trunc('{grain}', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def _key(dialect: str, keys: Sequence[str], r: str = "") -> str:
    quote = "quote" if dialect == "sqlite" else "quote_nullable"
    return " || ',' || ".join(f"{quote}({r}{k})" for k in keys)


def _upsert_tail(dialect: str, agg: Aggregate) -> str:
    own = "" if dialect == "sqlite" else f"{agg.name}."
    sets = []
    for name in SUMMED:
        if name in _NULLABLE:
            sets.append(f"{name} = CASE WHEN excluded.{name} IS NULL THEN {own}{name} "
                        f"ELSE COALESCE({own}{name}, 0) + excluded.{name} END")
        else:
            sets.append(f"{name} = {own}{name} + excluded.{name}")
    return f" ON CONFLICT (started_at, k) DO UPDATE SET {', '.join(sets)}"


def _columns(agg: Aggregate) -> str:
    return ", ".join(("started_at", "k", *agg.keys, *SUMMED))


def _grouped_select(dialect: str, agg: Aggregate, source: str, clause: str = "") -> str:
    """The aggregate rows of the calls in `source` (a table) that match `clause`."""
    bucket = _bucket(dialect, agg.grain, "started_at")
    sums = [("COUNT(*)" if name == "calls" else f"SUM({expr})") for name, expr in _metrics()]
    keys = ", ".join(agg.keys)
    return (f"SELECT {bucket}, {_key(dialect, agg.keys)}, {keys}, {', '.join(sums)} FROM {source}{clause} "
            f"GROUP BY {bucket}, {keys}")


def migration(dialect: Any) -> list[str]:
    """Schema version 6: the aggregate tables, their triggers, and their backfill from the stored calls
    (append-only: version 7 drops the triggers, `drop_triggers`)."""
    name = dialect.name
    time_type = dialect.types.get("datetime", "TEXT")
    integer, real = dialect.types["int"], dialect.types["float"]
    statements = []
    for agg in AGGREGATES:
        cols = [f"started_at {time_type}", "k TEXT NOT NULL", *(f"{k} TEXT" for k in agg.keys)]
        cols += [f"{n} {real if n == 'cost_usd' else integer}" + ("" if n in _NULLABLE else " NOT NULL") for n in SUMMED]
        statements.append(f"CREATE TABLE IF NOT EXISTS {agg.name} (\n  " + ",\n  ".join(cols) + "\n)")
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{agg.name}_key ON {agg.name} (started_at, k)")
        statements.append(f"INSERT INTO {agg.name} ({_columns(agg)}) {_grouped_select(name, agg, 'llm_calls')}")
    if name == "sqlite":
        for agg in AGGREGATES:
            values = [_bucket(name, agg.grain, "NEW.started_at"), _key(name, agg.keys, "NEW."),
                      *(f"NEW.{k}" for k in agg.keys), *(expr for _, expr in _metrics("NEW."))]
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS tt_{agg.name} AFTER INSERT ON llm_calls BEGIN "
                f"INSERT INTO {agg.name} ({_columns(agg)}) VALUES ({', '.join(values)}){_upsert_tail(name, agg)}; END")
    else:
        body = "".join(f"  INSERT INTO {agg.name} ({_columns(agg)}) {_grouped_select(name, agg, 'tt_new_calls')}"
                       f"{_upsert_tail(name, agg)};\n" for agg in AGGREGATES)
        statements.append("CREATE OR REPLACE FUNCTION tt_aggregate_calls() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                          f"{body}  RETURN NULL;\nEND\n$$")
        statements.append("DROP TRIGGER IF EXISTS tt_aggregate_calls ON llm_calls")
        statements.append("CREATE TRIGGER tt_aggregate_calls AFTER INSERT ON llm_calls REFERENCING NEW TABLE AS tt_new_calls "
                          "FOR EACH STATEMENT EXECUTE FUNCTION tt_aggregate_calls()")
    return statements


def _floor(moment: datetime, grain: str) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0) if grain == "hour" else \
        moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, grain: str) -> datetime:
    floor = _floor(moment, grain)
    return floor if floor == moment else floor + (timedelta(hours=1) if grain == "hour" else timedelta(days=1))


def _param(style: str, moment: datetime) -> Any:
    return moment.isoformat(timespec="microseconds") if style == "qmark" else moment


def drop_triggers(dialect: Any) -> list[str]:
    """Schema version 7: the aggregates are kept per batch by the writer (`batch_sql`), no longer by triggers."""
    if dialect.name == "sqlite":
        return [f"DROP TRIGGER IF EXISTS tt_{agg.name}" for agg in AGGREGATES]
    return ["DROP TRIGGER IF EXISTS tt_aggregate_calls ON llm_calls", "DROP FUNCTION IF EXISTS tt_aggregate_calls()"]


def _rebuild(dialect: str, agg: Aggregate, clause: str, params: list[Any]) -> list[tuple[str, Any, bool]]:
    """Delete the aggregate rows whose bucket matches `clause` and make them again from the calls."""
    return [(f"DELETE FROM {agg.name}{clause}", params, False),
            (f"INSERT INTO {agg.name} ({_columns(agg)}) {_grouped_select(dialect, agg, 'llm_calls', clause)}", params, False)]


def rebuild_sql(style: str, before: Any) -> list[tuple[str, Any, bool]]:
    """After a prune up to `before`: every aggregate row of a bucket starting before the first boundary at or
    after `before` is deleted and made again from the calls left (statements for the prune's transaction)."""
    moment = parse_time(before)
    dialect = "sqlite" if style == "qmark" else "postgresql"
    mark = "?" if style == "qmark" else "%s"
    return [s for agg in AGGREGATES
            for s in _rebuild(dialect, agg, f" WHERE started_at < {mark}", [_param(style, _ceil(moment, agg.grain))])]


# -- the write side: per batch ----------------------------------------------------------------------------

_SUMS = attrgetter(*(name for name, _ in QueryBuilder.METRICS[1:8]))  # input_tokens .. cost_usd: NULL-aware sums
_NULLABLE_COUNT = 7
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_upserts: dict[tuple[str, str], str] = {}


def _upsert_sql(dialect: str, agg: Aggregate) -> str:
    sql = _upserts.get((dialect, agg.name))
    if sql is None:
        mark, quote = ("?", "quote({})") if dialect == "sqlite" else ("%s", "quote_nullable({}::text)")
        key = " || ',' || ".join([quote.format(mark)] * len(agg.keys))
        marks = ", ".join([mark] * (len(agg.keys) + len(SUMMED)))
        sql = _upserts[(dialect, agg.name)] = (
            f"INSERT INTO {agg.name} ({_columns(agg)}) VALUES ({mark}, {key}, {marks}){_upsert_tail(dialect, agg)}")
    return sql


def _buckets(dialect: str, moment: datetime | None, now: datetime | None) -> tuple[Any, Any]:
    """(hour, day) of a call's start, as `_bucket` computes them in SQL (SQLite: from the stored text's own
    fields; PostgreSQL: in UTC, a call without a start stored at `now`)."""
    if moment is None:
        moment = now
        if moment is None:
            return None, None
    if dialect != "sqlite" and moment.tzinfo is not None and moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour, hour.replace(hour=0)


def _bound(dialect: str, bucket: datetime, grain: str, start: bool = True) -> Any:
    """A bucket's start as the aggregate row keeps it (`start`), or as the low end of a range of calls."""
    if dialect != "sqlite":
        return bucket if bucket.tzinfo is not None else bucket.replace(tzinfo=timezone.utc)
    text = f"{bucket.year:04d}-{bucket.month:02d}-{bucket.day:02d}" + (f"T{bucket.hour:02d}" if grain == "hour" else "")
    if not start:
        return text  # every stored time in the bucket starts with it (and sorts at or after it)
    return text + (":00:00.000000+00:00" if grain == "hour" else "T00:00:00.000000+00:00")


# A call's histogram columns by the index of the first bound above its latency (`bisect_right`): the count of
# calls with a latency (1) and, per bound, whether it is below it; the last entry: no latency (all 0).
_HIST = [(1, *(1 if i >= j else 0 for i in range(len(BOUNDS)))) for j in range(len(BOUNDS) + 1)]
_HIST.append((0,) * (len(BOUNDS) + 1))
_NONE = len(BOUNDS) + 1


def _vector(call: Any) -> tuple[Any, ...]:
    """One call's summed columns (`SUMMED`, without `calls`), as the SQL expressions of `_metrics` give them."""
    unpriced = call.cost_usd is None
    no_usage = unpriced and call.input_tokens is None and call.output_tokens is None
    latency = None if call.error_category == "budget" else call.duration_ms
    return (*_SUMS(call), int(unpriced), int(no_usage), int(unpriced and not no_usage),
            int(call.error_type is not None or call.error_category is not None),
            *_HIST[_NONE if latency is None else bisect_right(BOUNDS, latency)],
            *_HIST[_NONE if call.ttft_ms is None else bisect_right(BOUNDS, call.ttft_ms)])


def _row(vectors: list[tuple[Any, ...]]) -> list[Any]:
    """The summed columns (`SUMMED`) of some calls' vectors (NULL-aware for the nullable sums)."""
    if len(vectors) == 1:
        return [1, *vectors[0]]
    columns = list(zip(*vectors))
    out: list[Any] = [len(vectors)]
    for column in columns[:_NULLABLE_COUNT]:
        values = [v for v in column if v is not None]
        out.append(sum(values) if values else None)
    out += map(sum, columns[_NULLABLE_COUNT:])
    return out


def batch_sql(style: str, calls: Sequence[Any], inserted: int, now: datetime | None = None) -> list[tuple[str, Any, bool]]:
    """What brings the aggregates up to date with a batch of calls, in the transaction that inserted it, after
    the insert: one UPSERT per bucket and keys adding the group's sums when the insert added every call
    (`inserted == len(calls)`); else (some ids were already stored: a retried batch) the buckets the batch
    touches rebuilt from the calls. `now`: the time a call without a start is stored at (PostgreSQL)."""
    if not calls:
        return []
    dialect = "sqlite" if style == "qmark" else "postgresql"
    buckets = [_buckets(dialect, call.started_at, now) for call in calls]
    out: list[tuple[str, Any, bool]] = []
    if inserted != len(calls):
        mark = "?" if style == "qmark" else "%s"
        for agg in AGGREGATES:
            grain = 0 if agg.grain == "hour" else 1
            for bucket in sorted({b[grain] for b in buckets}, key=lambda b: (b is not None, b)):
                if bucket is None:
                    out += _rebuild(dialect, agg, " WHERE started_at IS NULL", [])
                    continue
                high = _bound(dialect, bucket + _STEP[agg.grain], agg.grain, start=False)
                out += _rebuild(dialect, agg, f" WHERE started_at >= {mark} AND started_at < {mark}",
                                [_bound(dialect, bucket, agg.grain, start=False), high])
        return out
    vectors = list(map(_vector, calls))
    for agg in AGGREGATES:
        grain = 0 if agg.grain == "hour" else 1
        keys = attrgetter(*agg.keys)
        one = len(agg.keys) == 1
        groups: dict[tuple[Any, Any], list[Any]] = {}
        for call, bucket, vector in zip(calls, buckets, vectors):
            group = groups.get(key := (bucket[grain], keys(call)))
            if group is None:
                group = groups[key] = []
            group.append(vector)
        params = []
        for (bucket, values), group in groups.items():
            values = (values,) if one else values
            start = None if bucket is None else _bound(dialect, bucket, agg.grain)
            params.append([start, *values, *values, *_row(group)])
        out.append((_upsert_sql(dialect, agg), params, True))
    return out


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


def _num(value: Any) -> Any:
    return int(value) if type(value) is Decimal else value


def aggregated(read: Callable[[str, Sequence[Any]], list[Any]], style: str, group_by: Sequence[str] | str,
               since: Any, until: Any, where: Any, *, percentiles: bool, columns: Sequence[str],
               min_calls: int | None = None) -> list[dict[str, Any]] | None:
    """`summary()` rows from the aggregates plus the raw edges, or None when no aggregate table can answer
    (a grouping or filter it does not keep, a range inside one bucket, fewer than `MIN_CALLS` calls)."""
    groups = [group_by] if isinstance(group_by, str) else list(group_by or ())
    keys = [str(g).strip().lower() for g in groups]
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    for agg in AGGREGATES:
        if agg.grain == "day" and "hour" in keys:
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
            return None
        wanted = SUMMED if percentiles else [name for name, _ in QueryBuilder.METRICS]  # sums only: 12 columns, not 70
        inner = _sums_sql(query, agg.name, exprs, low, high, where, wanted, aggregate=True)
        rows = read(*inner)
        calls = sum(_num(row[len(exprs)]) or 0 for row in rows)
        if calls < (MIN_CALLS if min_calls is None else min_calls):
            return None
        raw = QueryBuilder(columns, "started_at", style=style)
        raw_exprs = [raw.expression(g, "group by") for g in groups]
        if start is not None and (low is None or start < low):
            rows += read(*_sums_sql(raw, "llm_calls", raw_exprs, start, low, where, wanted, aggregate=False))
        if end is not None and (high is None or high < end):
            rows += read(*_sums_sql(raw, "llm_calls", raw_exprs, high, end, where, wanted, aggregate=False))
        return _rows(rows, keys, wanted, percentiles)
    return None


def _sums_sql(query: QueryBuilder, table: str, exprs: list[str], since: Any, until: Any, where: Any,
              wanted: Sequence[str], *, aggregate: bool) -> tuple[str, list[Any]]:
    clause, params = query.where(since=since, until=until, where=where)
    select = [f"{e} AS g{i}" for i, e in enumerate(exprs)]
    select += [f"SUM({name})" if aggregate else ("COUNT(*)" if name == "calls" else f"SUM({expr})")
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
        values = [_num(v) for v in row[n:]]
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
