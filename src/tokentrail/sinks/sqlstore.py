"""What every SQL store does the same way, whatever its driver: the read side, retention, loss notes, shared budgets.

A store built on this (`SQLiteStore`, `PostgresStore`) says which dialect and
placeholder style it speaks (`dialect`, `style`) and gives two primitives:
`_read(sql, params) -> rows` and `_write(statements) -> rowcounts`, the
statements `(sql, params, many)` run in one transaction. Everything below is
written once, for both.

Retention (`prune`): calls started before a moment (and matching `where`) are
deleted, or first rolled up into daily aggregates (`llm_calls_daily`: one row
per UTC day and provider, operation, model, user, customer, feature, workflow
and source, with the summed counts, tokens, cost and errors). `summary()` adds
the aggregates in whenever it groups and filters by fields they keep, so
totals and breakdowns still count pruned calls; percentiles and the call list
are the kept calls'; a rolled-up day is in a time range when its start (00:00 UTC) is. Tool calls, outcomes and spans before the moment are
deleted with them (when `where` names fields they have).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any, Sequence

from .. import log
from ..errors import RecordsRejected
from ..record import FIELDS, LLMCall, Outcome, Span, ToolCall
from ..times import parse_time
from .aggregates import aggregated, rebuild_sql
from .query import DAY_START, PERCENTILE_SAMPLE, QueryBuilder, merge_summaries
from .schema import BUDGET_TABLE, ROLLUP_KEYS, ROLLUP_TABLE, STATS_COLUMNS, STATS_TABLE, Dialect, TableCodec

__all__ = ["SQLStore", "summarize", "SEED_RUN"]

PRUNE_EVERY_S = 3600.0  # how often the `retention` option prunes
SEED_RUN = "seed"  # the budget ledger's row for what the store held when a period's first process started
_SEED_MARK = "#seeded"  # never a scope (scopes are JSON lists)


def summarize(read: Any, style: str, group_by: Sequence[str] | str = ("model",), since: Any = None, until: Any = None,
              where: Any = None, *, percentiles: bool = True, columns: Sequence[str] = FIELDS[LLMCall],
              rollup: bool = True, aggregates: bool = True) -> list[dict[str, Any]]:
    """`summary()` over `read(sql, params)`: the kept calls, plus retention's daily aggregates where they apply.
    Percentiles are taken over an evenly spread sample above `PERCENTILE_SAMPLE` calls (sums and counts are exact).
    With `aggregates`, big ranges are answered from the aggregates kept at write time (`sinks.aggregates`)."""
    rows = None
    if aggregates:
        rows = aggregated(read, style, group_by, since, until, where, percentiles=percentiles, columns=columns)
    if rows is not None:
        keys = [str(g).strip().lower() for g in ([group_by] if isinstance(group_by, str) else list(group_by or ()))]
    else:
        rows, keys = _raw_summary(read, style, group_by, since, until, where, percentiles, columns)
    if not rollup:
        return rows
    rolled = QueryBuilder(("started_at", *ROLLUP_KEYS), "started_at", style=style)
    try:
        sql, params, keys = rolled.summary_sql(ROLLUP_TABLE, group_by, since=since, until=until, where=where, rollup=True)
    except ValueError:
        return rows  # grouped or filtered by a field the aggregates do not keep: the kept calls only
    return merge_summaries(rows, rolled.summary_rows(read(sql, params), keys), keys)


def _raw_summary(read: Any, style: str, group_by: Any, since: Any, until: Any, where: Any, percentiles: bool,
                 columns: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    every = 1
    if percentiles:
        clause, params = QueryBuilder(columns, "started_at", style=style).where(since=since, until=until, where=where)
        every = max(1, read(f"SELECT COUNT(*) FROM llm_calls{clause}", params)[0][0] // PERCENTILE_SAMPLE)
    query = QueryBuilder(columns, "started_at", style=style, percentiles=percentiles, sample_every=every)
    sql, params, keys = query.summary_sql("llm_calls", group_by, since=since, until=until, where=where)
    return query.summary_rows(read(sql, params), keys), keys


class SQLStore(ABC):
    """The driver-independent part of a SQL store; see the module docstring."""

    dialect: Dialect
    style: str  # "qmark" (SQLite) or "format" (psycopg)
    codecs: dict[type, TableCodec]
    closed = False  # set by close(): a shared budget's sync thread stops

    def on_close(self, hook: Any) -> None:
        """Call `hook()` as the store closes, before its connections go (a shared budget's last publish)."""
        self.__dict__.setdefault("close_hooks", []).append(hook)

    def run_close_hooks(self) -> None:
        for hook in self.__dict__.pop("close_hooks", ()):
            try:
                hook()
            except Exception:  # noqa: BLE001 - closing goes on
                pass
        self.closed = True

    @abstractmethod
    def close(self) -> None:
        """Each dialect's own."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Each dialect's own."""

    @abstractmethod
    def _write(self, statements: Sequence[tuple[str, Any, bool]]) -> list[int]:
        """Each dialect's own."""

    @property
    def _mark(self) -> str:
        return "?" if self.style == "qmark" else "%s"

    def _marks(self, n: int) -> str:
        return ", ".join([self._mark] * n)

    @abstractmethod
    def _write_batch(self, records: Sequence[Any]) -> None:
        """Each dialect's own."""

    @abstractmethod
    def _is_data_error(self, exc: BaseException) -> bool:
        """A batch refused for what is in it (retrying it whole would fail again), not for the database's state."""

    def schema_version(self) -> int:
        return self._read("SELECT MAX(version) FROM schema_version")[0][0]

    # -- the sink side -------------------------------------------------------------------------------

    retention: tuple[float, bool] | None = None
    next_prune = 0.0

    def keep(self, seconds: float, rollup: bool = False) -> None:
        """The `retention` option: from the thread that writes this store (never the application's), at
        its first write and then hourly, prune what is older than `seconds` (rolled up with `rollup`)."""
        self.retention = (seconds, rollup)
        self.next_prune = 0.0

    def apply_retention(self) -> None:
        seconds, rollup = self.retention or (0.0, False)
        self.next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            counts = self.prune(timedelta(seconds=seconds), rollup=rollup)
        except Exception as exc:  # noqa: BLE001 - retention must never cost a batch
            log.error_once("store.retention", "tokentrail: retention could not prune the store; will try again in an hour", exc)
            return
        if any(counts.values()):
            log.logger.info("tokentrail: retention pruned %s", counts)

    def export(self, records: Sequence[Any]) -> None:
        """Write a batch in one transaction. A batch refused for a bad value is split until only the bad
        records are left out (`RecordsRejected` counts them); anything else raises, and the lane retries."""
        if self.retention is not None and time.monotonic() >= self.next_prune:
            self.apply_retention()
        try:
            self._write_batch(records)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if not self._is_data_error(exc):
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
                if not self._is_data_error(exc):
                    raise  # locked, down, closed: the pipeline retries the whole batch (writes ignore known ids)
                n, cause = self._bisect(half, exc)
                rejected += n
        return rejected, cause

    def records_by_table(self, records: Sequence[Any]) -> dict[TableCodec, list[Any]]:
        by_table: dict[TableCodec, list[Any]] = {}
        for record in records:
            table = self.codecs.get(type(record))
            if table is not None:
                by_table.setdefault(table, []).append(record)
        return by_table

    # -- the read side -----------------------------------------------------------------------------

    def _select(self, cls: type, since: Any, until: Any, where: Any, limit: int | None, order: str, offset: int = 0) -> list[Any]:
        table = self.codecs[cls]
        query = QueryBuilder(table.columns, table.time_column, style=self.style)
        clause, params = query.where(since=since, until=until, where=where)
        sql = f"SELECT {', '.join(table.columns)} FROM {table.name}{clause} {query.order(order)}"
        if limit is not None:
            sql += f" LIMIT {query.limit(limit)}"
        elif offset and self.style == "qmark":
            sql += " LIMIT -1"  # SQLite takes an OFFSET only after a LIMIT
        if offset:
            sql += f" OFFSET {query.offset(offset)}"
        return [table.record(row) for row in self._read(sql, params)]

    def calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest",
              offset: int = 0) -> list[LLMCall]:
        """Recorded LLM calls, newest first by default (or by a field: `order="-cost_usd"`), from `offset`.
        `where={"customer_id": "acme", "model": ["a", "b"]}`."""
        return self._select(LLMCall, since, until, where, limit, order, offset)

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
        table = self.codecs[LLMCall]
        seq = self.dialect.sequence
        if cursor < 0:
            return [], self._read(f"SELECT COALESCE(MAX({seq}), 0) FROM llm_calls")[0][0]
        query = QueryBuilder(table.columns, table.time_column, style=self.style)
        clause, params = query.where(where=where)
        clause = (clause + " AND" if clause else " WHERE") + f" {seq} > {self._mark}"
        rows = self._read(f"SELECT {seq}, {', '.join(table.columns)} FROM llm_calls{clause} ORDER BY {seq} "
                          f"LIMIT {query.limit(limit)}", [*params, cursor])
        if not rows:
            return [], cursor
        return [table.record(row[1:]) for row in rows], rows[-1][0]

    def summary(self, group_by: Sequence[str] | str = ("model",), since: Any = None, until: Any = None, where: Any = None,
                percentiles: bool = True) -> list[dict[str, Any]]:
        """Per group: calls, tokens, cost, unpriced calls, errors, error rate, p50/p95 latency, p50 TTFT
        (`percentiles=False`: None, for answers that need only sums; rolled-up days counted in, see the
        module docstring)."""
        return summarize(self._read, self.style, group_by, since=since, until=until, where=where, percentiles=percentiles)

    def count(self, since: Any = None, until: Any = None, where: Any = None) -> int:
        """How many calls are stored in range: what paging through `calls` reaches (rolled-up days are
        not calls; the write-time aggregates count kept calls only). The dashboard's page totals: from the
        aggregates plus the raw edges where they can answer (filters on their keys, ≥ `MIN_CALLS` calls:
        counting 10,000,000 rows took 0.6 s), else one COUNT over the calls."""
        table = self.codecs[LLMCall]
        rows = aggregated(self._read, self.style, (), since, until, where, percentiles=False, columns=table.columns)
        if rows is not None:
            return int(sum(row["calls"] for row in rows))
        clause, params = QueryBuilder(table.columns, table.time_column, style=self.style).where(since=since, until=until, where=where)
        return int(self._read(f"SELECT COUNT(*) FROM llm_calls{clause}", params)[0][0])

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """Ids of the calls whose id starts with `prefix` (in id order)."""
        return [row[0] for row in self._read(
            f"SELECT id FROM llm_calls WHERE substr(id, 1, {self._mark}) = {self._mark} ORDER BY id", (len(prefix), prefix))]

    # -- losses --------------------------------------------------------------------------------------

    def write_stats(self, rows: Sequence[dict[str, Any]]) -> None:
        """Note losses: rows of `STATS_COLUMNS` (without `updated_at`), upserted by (run_id, sink)."""
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        values = [[now if c == "updated_at" else row.get(c) for c in STATS_COLUMNS] for row in rows]
        update = ", ".join(f"{c} = excluded.{c}" for c in STATS_COLUMNS[2:])
        sql = (f"INSERT INTO {STATS_TABLE} ({', '.join(STATS_COLUMNS)}) VALUES ({self._marks(len(STATS_COLUMNS))}) "
               f"ON CONFLICT (run_id, sink) DO UPDATE SET {update}")
        self._write([(sql, values, True)])

    def losses(self) -> list[dict[str, Any]]:
        """Records lost on their way to each sink, as the processes that lost them noted (newest first):
        `[{sink, processes, written, dropped, failed, rejected, last}]`."""
        rows = self._read(
            f"SELECT sink, COUNT(*), SUM(written), SUM(dropped), SUM(failed), SUM(rejected), MAX(updated_at) "
            f"FROM {STATS_TABLE} GROUP BY sink ORDER BY MAX(updated_at) DESC")
        keys = ("sink", "processes", "written", "dropped", "failed", "rejected", "last")
        return [{k: (int(v) if k in keys[1:6] and v is not None else v) for k, v in zip(keys, row)} for row in rows]

    # -- retention -----------------------------------------------------------------------------------

    def prune(self, before: Any, where: Any = None, *, rollup: bool = False) -> dict[str, int]:
        """Delete what started before `before` (a time, or `90d` ago) and matches `where`; with `rollup`,
        calls are first added to the daily aggregates that `summary()` keeps counting. Rows deleted, per table."""
        moment = parse_time(before)
        plan: list[tuple[str, list[tuple[str, Any, bool]]]] = []
        for cls, table in self.codecs.items():
            query = QueryBuilder(table.columns, table.time_column, style=self.style)
            try:
                clause, params = query.where(until=moment, where=where)
            except ValueError:
                if cls is LLMCall:
                    raise
                continue  # `where` names a field this table does not have: it is left alone
            statements = []
            if cls is LLMCall and rollup:
                statements.append(self._rollup_sql(query, clause, params))
            statements.extend(self._delete_sql(table, clause, params, moment, where))
            plan.append((table.name, statements))
        plan.append(("", rebuild_sql(self.style, moment)))  # the aggregates lose the pruned calls too
        counts = self._write([s for _, statements in plan for s in statements])
        out, i = {}, 0
        for name, statements in plan:
            out[name] = sum(max(n, 0) for sql, n in zip((s[0] for s in statements), counts[i:i + len(statements)])
                            if not sql.startswith("INSERT"))
            i += len(statements)
        out.pop("", None)
        return out

    def _rollup_sql(self, query: QueryBuilder, clause: str, params: list[Any]) -> tuple[str, Any, bool]:
        day = DAY_START[self.style].format(t="started_at")
        sums = [name for name, _ in QueryBuilder.METRICS[1:]]
        exprs = [sql for _, sql in QueryBuilder.METRICS[1:]]
        keys = ", ".join(ROLLUP_KEYS)
        return (f"INSERT INTO {ROLLUP_TABLE} (started_at, {keys}, calls, {', '.join(sums)}) "
                f"SELECT {day}, {keys}, COUNT(*), {', '.join(exprs)} FROM llm_calls{clause} GROUP BY {day}, {keys}",
                params, False)

    def _delete_sql(self, table: TableCodec, clause: str, params: list[Any], moment: Any, where: Any) -> list[tuple[str, Any, bool]]:
        return [(f"DELETE FROM {table.name}{clause}", params, False)]

    # -- shared budgets ------------------------------------------------------------------------------

    def budget_sync(self, run_id: str, own: Sequence[tuple[str, str, str, float, int]], periods: Sequence[str]) -> list[tuple[str, str, str, float, int]]:
        """Publish this process's spend `(budget, scope, period, usd, tokens)` and read every other
        process's, summed, for `periods` (one transaction; budget.py calls it off the calling thread)."""
        statements: list[tuple[str, Any, bool]] = []
        if own:
            statements.append((
                f"INSERT INTO {BUDGET_TABLE} (run_id, budget, scope, period, usd, tokens) VALUES ({self._marks(6)}) "
                "ON CONFLICT (budget, period, scope, run_id) DO UPDATE SET usd = excluded.usd, tokens = excluded.tokens",
                [[run_id, *row] for row in own], True))
            self._write(statements)
        if not periods:
            return []
        rows = self._read(
            f"SELECT budget, scope, period, SUM(usd), SUM(tokens) FROM {BUDGET_TABLE} WHERE run_id <> {self._mark} "
            f"AND scope <> {self._mark} AND period IN ({self._marks(len(periods))}) GROUP BY budget, scope, period",
            [run_id, _SEED_MARK, *periods])
        return [(b, s, p, float(u or 0.0), int(t or 0)) for b, s, p, u, t in rows]

    def budget_seed(self, budget: str, period: str, rows: Sequence[tuple[str, float, int]]) -> bool:
        """Record what the store held for `budget` in `period` (`(scope, usd, tokens)` rows), once per period
        for the whole fleet: False when another process did it first."""
        insert = (f"INSERT INTO {BUDGET_TABLE} (run_id, budget, scope, period, usd, tokens) VALUES ({self._marks(6)}) "
                  "ON CONFLICT (budget, period, scope, run_id) DO NOTHING")
        if not self._write([(insert, [SEED_RUN, budget, _SEED_MARK, period, 0.0, 0], False)])[0]:
            return False
        if rows:
            self._write([(insert, [[SEED_RUN, budget, scope, period, usd, tokens] for scope, usd, tokens in rows], True)])
        return True

