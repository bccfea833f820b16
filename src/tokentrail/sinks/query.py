"""SQL the read side of every store shares: time bounds, filters, grouping, percentiles.

Stores differ only in placeholder style and in how a timestamp is cut to a day
or an hour, so one builder serves SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Sequence

from ..times import parse_time

__all__ = ["QueryBuilder", "percentile", "interpolate", "GROUPS", "NOT_NULL", "SORTABLE", "PERCENTILE_SAMPLE", "merge_summaries"]

# Names a user may group or filter by besides the columns themselves.
# name -> (the column it needs, the SQL expression)
GROUPS = {
    "model": ("request_model", "COALESCE(request_model, response_model)"),
    "user": ("user_id", "user_id"),
    "customer": ("customer_id", "customer_id"),
    "session": ("session_id", "session_id"),
    "workflow_run": ("workflow_run_id", "workflow_run_id"),
}
_TIME_CUTS = {
    "qmark": {"day": "substr({t}, 1, 10)", "hour": "substr({t}, 1, 13) || ':00'"},
    # A date's text is YYYY-MM-DD under DateStyle ISO (the PostgreSQL store sets it): cheaper than to_char per row.
    "format": {"day": "(({t} AT TIME ZONE 'UTC')::date)::text", "hour": "to_char({t} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00')"},
}
# The start of a record's UTC day, as the time column stores it (retention's daily aggregates).
DAY_START = {"qmark": "substr({t}, 1, 10) || 'T00:00:00.000000+00:00'",
             "format": "(date_trunc('day', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"}



class _NotNull:
    def __repr__(self) -> str:
        return "NOT_NULL"


# A `where` value meaning "has any value": `where={"error_category": NOT_NULL}` -> error_category IS NOT NULL.
NOT_NULL = _NotNull()
# Fields calls may be sorted by (`order="-cost_usd"`).
SORTABLE = ("started_at", "duration_ms", "cost_usd", "total_tokens", "input_tokens", "output_tokens", "ttft_ms",
            "provider", "model", "operation", "user", "customer", "feature", "workflow", "error_category", "status_code")
# Above this many rows, SQLite's percentiles are taken over an evenly spread sample of about this many.
PERCENTILE_SAMPLE = 100_000


class percentile:
    """SQLite aggregate `tt_percentile(x, p)`: the p-th percentile, interpolated (numpy's default)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.p = 50.0

    def step(self, value: Any, p: Any) -> None:
        if value is not None:
            self.values.append(value)
            self.p = p

    def finalize(self) -> float | None:
        return interpolate(sorted(self.values), self.p)


def interpolate(ordered: Sequence[float], p: float) -> float | None:
    if not ordered:
        return None
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class QueryBuilder:
    """Builds the WHERE / ORDER / GROUP BY of read queries over one table's columns."""

    def __init__(self, columns: Iterable[str], time_column: str, style: str = "qmark", *,
                 percentiles: bool = True, sample_every: int = 1) -> None:
        """`percentiles=False`: summaries without p50/p95/TTFT (None), for answers that only need sums and
        counts; `sample_every`: see `percentile_sql`."""
        self.percentiles = percentiles
        self.sample_every = sample_every
        self.columns = tuple(columns)
        self.time_column = time_column
        self.style = style
        self.mark = "?" if style == "qmark" else "%s"
        self.cuts = {name: cut.format(t=time_column) for name, cut in _TIME_CUTS[style].items()}

    def expression(self, name: str, purpose: str = "filter by") -> str:
        if not isinstance(name, str):
            raise ValueError(f"cannot {purpose} {name!r}: field names are strings")
        key = name.strip().lower()
        if key in self.columns:
            return key
        if key in GROUPS and GROUPS[key][0] in self.columns:
            return GROUPS[key][1]
        if key in self.cuts:
            return self.cuts[key]
        accepted = sorted(set(self.columns) | set(GROUPS) | set(self.cuts))
        raise ValueError(f"cannot {purpose} {name!r}: unknown field; accepted: {', '.join(accepted)}")

    def _time_param(self, value: Any) -> Any:
        moment = parse_time(value)
        return moment.isoformat(timespec="microseconds") if self.style == "qmark" else moment

    def where(self, since: Any = None, until: Any = None, where: Any = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append(f"{self.time_column} >= {self.mark}")
            params.append(self._time_param(since))
        if until is not None:
            clauses.append(f"{self.time_column} < {self.mark}")
            params.append(self._time_param(until))
        if where:
            if not isinstance(where, dict):
                raise ValueError(f"where must be a dict of field -> value, not {type(where).__name__}")
            for name, value in where.items():
                expr = self.expression(name)
                if value is None:
                    clauses.append(f"{expr} IS NULL")
                elif value is NOT_NULL:
                    clauses.append(f"{expr} IS NOT NULL")
                elif isinstance(value, (list, tuple, set, frozenset)):
                    values = list(value)
                    if not values:
                        clauses.append("1 = 0")
                        continue
                    clauses.append(f"{expr} IN ({', '.join([self.mark] * len(values))})")
                    params.extend(values)
                else:
                    clauses.append(f"{expr} = {self.mark}")
                    params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def order(self, order: str) -> str:
        """`newest`/`oldest`, or a sortable field (`SORTABLE`), `-field` for largest first.

        A field sort puts empty values last (in both dialects) and breaks ties by time, then id,
        so pages of one sort never overlap."""
        key = str(order).strip().lower()
        if key in ("newest", "desc"):
            return f"ORDER BY {self.time_column} DESC"
        if key in ("oldest", "asc"):
            return f"ORDER BY {self.time_column} ASC"
        name = key.lstrip("-+")
        if name in SORTABLE and (name in self.columns or name in GROUPS):
            direction = "DESC" if key.startswith("-") else "ASC"
            if name == self.time_column:
                return f"ORDER BY {name} {direction}, id {direction}"
            expr = self.expression(name, "sort by")
            # NULLS LAST rather than `(expr) IS NULL` first: an index on the field can then give the order
            # (PostgreSQL's on cost_usd: the costliest calls of a 10,000,000-call store without a full scan)
            return f"ORDER BY {expr} {direction} NULLS LAST, {self.time_column} {direction}, id {direction}"
        raise ValueError(f"order must be 'newest', 'oldest' or one of {', '.join(SORTABLE)} (-field: largest first), "
                         f"not {order!r}")

    @staticmethod
    def offset(offset: Any) -> int:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number >= 0, not {offset!r}")
        return offset

    def percentile_sql(self, col: str, p: float, sample_every: int = 1) -> str:
        """The p-th percentile of `col` as a SQL aggregate. SQLite's is a Python aggregate (about a
        microsecond a row): with `sample_every` > 1 it sees only every n-th row (by rowid), an evenly
        spread sample that keeps a percentile over a million calls fast. PostgreSQL's sorts the rows
        (exact), or with `sample_every` > 1 the same kind of sample (by `seq`, its insertion number)."""
        if self.style != "qmark":
            sample = f" FILTER (WHERE mod(seq, {int(sample_every)}) = 0)" if sample_every > 1 else ""
            return f"percentile_cont({p} / 100.0) WITHIN GROUP (ORDER BY {col}){sample}"
        if sample_every > 1:
            return f"tt_percentile({col}, {p}) FILTER (WHERE rowid % {int(sample_every)} = 0)"
        return f"tt_percentile({col}, {p})"

    @staticmethod
    def limit(limit: Any) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0 or None, not {limit!r}")
        return limit

    METRICS = (
        ("calls", "COUNT(*)"),
        ("input_tokens", "SUM(input_tokens)"),
        ("output_tokens", "SUM(output_tokens)"),
        ("cache_read_tokens", "SUM(cache_read_tokens)"),
        ("cache_write_tokens", "SUM(cache_write_tokens)"),
        ("reasoning_tokens", "SUM(reasoning_tokens)"),
        ("total_tokens", "SUM(total_tokens)"),
        ("cost_usd", "SUM(cost_usd)"),
        ("unpriced_calls", "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)"),
        # Why a call has no cost: it reported no tokens (a stream without usage), or its model has no price.
        ("no_usage_calls", "SUM(CASE WHEN cost_usd IS NULL AND input_tokens IS NULL AND output_tokens IS NULL THEN 1 ELSE 0 END)"),
        ("no_price_calls", "SUM(CASE WHEN cost_usd IS NULL AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL) THEN 1 ELSE 0 END)"),
        ("errors", "SUM(CASE WHEN error_type IS NOT NULL OR error_category IS NOT NULL THEN 1 ELSE 0 END)"),
    )

    # The same metrics over retention's daily aggregates (their percentiles are not kept).
    ROLLUP_METRICS = (("calls", "SUM(calls)"), *((name, f"SUM({name})") for name, _ in METRICS[1:]))

    def summary_sql(self, table: str, group_by: Sequence[str] | str, since: Any = None, until: Any = None, where: Any = None,
                    *, rollup: bool = False) -> tuple[str, list[Any], list[str]]:
        groups = [group_by] if isinstance(group_by, str) else list(group_by or ())
        keys = [g.strip().lower() for g in groups]
        exprs = [self.expression(g, "group by") for g in groups]
        clause, params = self.where(since, until, where)
        pct = self.percentile_sql("{col}", "{p}", self.sample_every) if self.percentiles else "NULL"
        select = [f"{e} AS g{i}" for i, e in enumerate(exprs)]
        select += [sql for _, sql in (self.ROLLUP_METRICS if rollup else self.METRICS)]
        # A call a budget refused never reached the provider: its latency is not the provider's.
        latency = "(CASE WHEN error_category = 'budget' THEN NULL ELSE duration_ms END)"
        if rollup:
            select += ["NULL", "NULL", "NULL"]
        else:
            select += [pct.format(col=latency, p=50), pct.format(col=latency, p=95), pct.format(col="ttft_ms", p=50)]
        sql = f"SELECT {', '.join(select)} FROM {table}{clause}"
        if exprs:
            sql += " GROUP BY " + ", ".join(f"g{i}" for i in range(len(exprs)))
        return sql, params, keys

    def summary_rows(self, rows: Iterable[Sequence[Any]], keys: list[str]) -> list[dict[str, Any]]:
        names = [name for name, _ in self.METRICS] + ["p50_ms", "p95_ms", "ttft_p50_ms"]
        out = []
        for row in rows:
            item = dict(zip(keys, row[: len(keys)]))
            # PostgreSQL sums integers as numeric (Decimal): whole sums read back as ints.
            item.update((n, int(v) if type(v) is Decimal else v) for n, v in zip(names, row[len(keys):]))
            if not item["calls"]:
                continue
            item["error_rate"] = item["errors"] / item["calls"]
            for name in ("p50_ms", "p95_ms", "ttft_p50_ms", "cost_usd"):
                if item[name] is not None:
                    item[name] = float(item[name])
            out.append(item)
        out.sort(key=lambda r: (-(r["cost_usd"] or 0.0), -r["calls"]))
        return out


def merge_summaries(rows: list[dict[str, Any]], rolled: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Summary rows with retention's daily aggregates added in, group by group (percentiles stay the kept calls')."""
    if not rolled:
        return rows
    by_key = {tuple(row[k] for k in keys): row for row in rows}
    sums = [name for name, _ in QueryBuilder.METRICS]
    for extra in rolled:
        row = by_key.get(tuple(extra[k] for k in keys))
        if row is None:
            by_key[tuple(extra[k] for k in keys)] = extra
            continue
        for name in sums:
            if extra[name] is not None:
                row[name] = extra[name] if row[name] is None else row[name] + extra[name]
        row["error_rate"] = row["errors"] / row["calls"]
    out = list(by_key.values())
    out.sort(key=lambda r: (-(r["cost_usd"] or 0.0), -r["calls"]))
    return out
