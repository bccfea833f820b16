"""The aggregates kept at write time (sinks/aggregates.py) answer exactly what the raw calls answer: on
SQLite and PostgreSQL, over ranges cut mid-hour, with filters and groupings, after a retried batch and
after a prune; and their rows are what a fresh aggregation of the calls gives."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from tokentrail.record import LLMCall
from tokentrail.sinks import aggregates, open_store
from tokentrail.sinks.query import NOT_NULL
from tokentrail.sinks.sqlstore import summarize

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
INTS = ("calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
        "total_tokens", "unpriced_calls", "no_usage_calls", "no_price_calls", "errors")


@pytest.fixture(autouse=True)
def aggregates_from_the_first_call(monkeypatch):
    """These stores are small: a SQLite store keeps its aggregates only from `KEPT_FROM` calls on, and
    reads them only from `MIN_CALLS` (never below `KEPT_FROM`). Here both start at the first call
    (tests below that check the thresholds set them back)."""
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)


def calls(n=600, seed=3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice(["gpt-4o", "gpt-4o-mini", None])
        failed = rng.random() < 0.1
        tin = rng.choice([None, rng.randint(1, 500)])
        out.append(LLMCall(
            id=f"c{seed}-{i}", started_at=T0 + timedelta(minutes=7 * i + rng.random()),
            # mostly spread over the histogram's buckets; some below the first bound, on a bound, past the last
            duration_ms=rng.lognormvariate(6, 0.7) if i % 10 else [3.0, 10.0, 14.0, 2e5, 0.0][i // 10 % 5],
            provider=rng.choice(["openai", "anthropic"]), request_model=model, response_model=model or rng.choice([None, "x"]),
            input_tokens=tin, output_tokens=None if tin is None else rng.randint(1, 100), total_tokens=None if tin is None else tin + 1,
            cost_usd=None if tin is None or model is None else tin * 1e-6, ttft_ms=rng.choice([None, rng.uniform(5, 900)]),
            user_id=rng.choice(["u1", "u2", None]), customer_id=rng.choice(["acme", "beta", None]),
            feature=rng.choice(["search", None]), error_type="E" if failed else None,
            error_category=rng.choice(["timeout", "budget"]) if failed else None))
    return out


def store_of(url):
    store = open_store(url)
    records = calls()
    store.export(records[:300])
    store.export(records[200:])  # a retried overlap: written once, counted once
    return store


CASES = [
    ((), None, None, None),
    (("model",), None, None, None),
    (("provider", "feature"), T0 + timedelta(minutes=95), T0 + timedelta(hours=40, minutes=13), None),
    (("customer",), T0 + timedelta(hours=5, minutes=1), None, None),
    (("user",), None, T0 + timedelta(days=1, hours=3, minutes=30), {"user_id": ["u1", "u2"]}),
    (("day", "model"), None, None, {"error_category": None}),
    (("hour",), T0 + timedelta(hours=2), T0 + timedelta(hours=30, minutes=59), {"model": "gpt-4o"}),
    (("error_category",), None, None, {"error_category": NOT_NULL}),
    ((), T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=50), {"customer_id": "acme"}),
]


def same(store, group_by, since, until, where):
    fast = summarize(store._read, store.style, group_by, since, until, where, percentiles=False)
    slow = summarize(store._read, store.style, group_by, since, until, where, percentiles=False, aggregates=False)
    key = lambda r: tuple(str(r.get(k)) for k in [str(g) for g in group_by])  # noqa: E731
    fast, slow = sorted(fast, key=key), sorted(slow, key=key)
    assert [key(r) for r in fast] == [key(r) for r in slow]
    for a, b in zip(fast, slow):
        assert {k: a[k] for k in INTS} == {k: b[k] for k in INTS}
        assert all(a[k] is None or type(a[k]) is int for k in INTS), a  # whole numbers, as the raw calls give
        assert (a["cost_usd"] is None) == (b["cost_usd"] is None)
        assert a["cost_usd"] == pytest.approx(b["cost_usd"])


def check(store, monkeypatch):
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)
    used = []
    real = aggregates.aggregated
    for group_by, since, until, where in CASES:
        used.append(real(store._read, store.style, group_by, since, until, where, percentiles=False,
                         columns=store.codecs[LLMCall].columns) is not None)
        same(store, group_by, since, until, where)
        # the page total: from the aggregates where they answer, the kept calls only (not the rolled-up days)
        raw = summarize(store._read, store.style, (), since, until, where, percentiles=False, aggregates=False, rollup=False)
        assert store.count(since=since, until=until, where=where) == sum(r["calls"] for r in raw)
    assert sum(used) >= 7  # most cases really went through the aggregates
    # Every aggregate row is what aggregating the stored calls afresh gives.
    for agg in aggregates.AGGREGATES:
        cols = ", ".join(("started_at", "k", *agg.keys, *agg.summed))  # sums, counts and (hourly) histograms
        kept = store._read(f"SELECT {cols} FROM {agg.name} WHERE calls > 0")
        fresh = store._read(f"SELECT * FROM ({aggregates._grouped_select(store.dialect.name, agg, 'llm_calls')}) AS f")
        norm = lambda rows: sorted((tuple(str(v) if not isinstance(v, float) else round(v, 9) for v in r) for r in rows), key=str)  # noqa: E731
        assert norm(kept) == norm(fresh), agg.name


def prune_and_check(store, monkeypatch):
    store.prune(T0 + timedelta(hours=20, minutes=17), where={"customer_id": "acme"})
    check(store, monkeypatch)
    store.prune(T0 + timedelta(hours=26, minutes=41))
    check(store, monkeypatch)
    store.prune(T0 + timedelta(hours=30), rollup=True)
    check(store, monkeypatch)


def test_sqlite_aggregates_equal_the_raw_calls_before_and_after_prune(tmp_path, monkeypatch):
    store = store_of(f"sqlite:///{tmp_path / 'a.db'}")
    assert store.count() == 600
    check(store, monkeypatch)
    prune_and_check(store, monkeypatch)


def test_postgres_aggregates_equal_the_raw_calls_before_and_after_prune(pg_url, monkeypatch):
    store = store_of(pg_url)
    check(store, monkeypatch)
    prune_and_check(store, monkeypatch)
    store.close()


def test_percentiles_from_the_histograms_are_close_and_small_ranges_stay_exact(tmp_path, monkeypatch):
    store = store_of(f"sqlite:///{tmp_path / 'p.db'}")
    monkeypatch.setattr(aggregates, "MIN_CALLS", 100_000)
    exact = store.summary(group_by=())[0]  # 600 calls: below MIN_CALLS, the raw table answers
    assert exact == summarize(store._read, "qmark", (), aggregates=False)[0]
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)
    approx = store.summary(group_by=())[0]
    for name in ("p50_ms", "p95_ms", "ttft_p50_ms"):
        assert approx[name] == pytest.approx(exact[name], rel=0.15), name
    assert {k: approx[k] for k in INTS} == {k: exact[k] for k in INTS}


def test_a_store_migrated_to_aggregates_is_backfilled(tmp_path, monkeypatch):
    import sqlite3

    path = tmp_path / "old.db"
    store = store_of(f"sqlite:///{path}")
    store.close()
    conn = sqlite3.connect(path)
    for agg in aggregates.AGGREGATES:  # back to version 5: no aggregates
        conn.execute(f"DROP TRIGGER IF EXISTS tt_{agg.name}")
        conn.execute(f"DROP TABLE {agg.name}")
    conn.execute("DELETE FROM schema_version WHERE version >= 6")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    assert store.schema_version() >= 6
    check(store, monkeypatch)


def test_a_store_kept_by_triggers_at_schema_6_keeps_exact_aggregates_per_batch(tmp_path, monkeypatch):
    """Schema 6 kept the aggregates with per-row triggers; 7 drops them and the writer keeps them per batch:
    what the triggers counted stays, what comes after is added once (never by both)."""
    import sqlite3

    from tokentrail.sinks.schema import DIALECTS, codecs, migrations

    path = tmp_path / "v6.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
    steps = migrations(DIALECTS["sqlite"])
    for version in range(1, 7):
        for statement in steps[version]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, '2026-01-01')", (version,))
    records = calls(seed=5)
    for sql, rows in codecs(DIALECTS["sqlite"])[LLMCall].batches(records[:250]):  # a schema-6 writer: the triggers count
        conn.executemany(sql, rows)
    assert conn.execute("SELECT SUM(calls) FROM llm_calls_hourly").fetchone()[0] == 250
    conn.close()
    store = open_store(f"sqlite:///{path}")
    assert store.schema_version() >= 7
    assert not store._read("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    store.export(records[250:400])
    store.export(records[150:])  # overlaps both writers' calls
    store.export(records[400:])  # the same batch again: nothing added
    assert store.count() == 600
    assert store._read("SELECT SUM(calls) FROM llm_calls_user_daily")[0][0] == 600
    check(store, monkeypatch)


def test_customer_and_user_breakdowns_take_sums_from_the_daily_tables_and_percentiles_from_the_calls(tmp_path, monkeypatch):
    """Schema 8: the daily tables keep no histograms (what they cost the writer); a breakdown by customer or
    user over them reads its percentiles from the calls (sampled above `PERCENTILE_SAMPLE`; here all of them)."""
    store = store_of(f"sqlite:///{tmp_path / 'd.db'}")
    for agg in aggregates.AGGREGATES:
        columns = {row[1] for row in store._read(f"PRAGMA table_info({agg.name})")}
        assert ("l0" in columns) is agg.histograms and "calls" in columns
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)
    for group in (("customer",), ("user",)):
        assert aggregates.aggregated(store._read, "qmark", group, None, None, None, percentiles=True,
                                     columns=store.codecs[LLMCall].columns) is not None
        key = lambda r: str(r[group[0]])  # noqa: E731
        fast = sorted(store.summary(group_by=group), key=key)
        slow = sorted(summarize(store._read, "qmark", group, aggregates=False), key=key)
        assert [key(r) for r in fast] == [key(r) for r in slow]
        for a, b in zip(fast, slow):
            assert {k: a[k] for k in (*INTS, "p50_ms", "p95_ms", "ttft_p50_ms")} == \
                   {k: b[k] for k in (*INTS, "p50_ms", "p95_ms", "ttft_p50_ms")}


def months_of_calls(n=900, seed=11):
    """Calls over four months (Jan 10 – May 8), a few users: what the monthly user table is for."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 10, 5, 30, tzinfo=timezone.utc)
    return [LLMCall(id=f"m{seed}-{i}", started_at=start + timedelta(hours=3.2 * i + rng.random()),
                    duration_ms=rng.lognormvariate(6, 0.7), provider="openai", request_model=rng.choice(["gpt-4o", None]),
                    input_tokens=rng.randint(1, 900), output_tokens=rng.randint(1, 90), cost_usd=rng.choice([None, 1e-3]),
                    user_id=rng.choice(["ann", "bob", "cy", None]), customer_id=rng.choice(["acme", None]),
                    error_type=rng.choice([None] * 9 + ["E"])) for i in range(n)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_breakdown_by_user_over_months_reads_the_monthly_table_and_its_edges_from_the_daily_one(backend, tmp_path, monkeypatch, request):
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    records = months_of_calls()
    store.export(records[:500])
    store.export(records[450:])  # a retried overlap, counted once
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)
    tables = []
    real = store._read
    monkeypatch.setattr(store, "_read", lambda sql, params=(): tables.append(sql) or real(sql, params))
    cases = [
        (None, None, None),  # all time: the months, no edge
        (datetime(2026, 1, 20, 13, 7, tzinfo=timezone.utc), datetime(2026, 4, 3, 8, 0, tzinfo=timezone.utc), None),
        (datetime(2026, 2, 1, tzinfo=timezone.utc), None, {"user_id": ["ann", "bob"]}),
        (None, datetime(2026, 3, 15, 22, 40, tzinfo=timezone.utc), {"customer_id": "acme"}),  # not a key: the raw calls
        (datetime(2026, 3, 2, tzinfo=timezone.utc), datetime(2026, 3, 28, tzinfo=timezone.utc), None),  # inside a month
    ]
    for since, until, where in cases:
        del tables[:]
        same(store, ("user",), since, until, where)
        used = " ".join(tables)
        if where is None or "customer_id" not in where:
            if since is not None and until is not None and since.month == until.month:
                assert "llm_calls_user_monthly" not in used and "llm_calls_user_daily" in used
            else:
                assert "llm_calls_user_monthly" in used, (since, until, where)
    store.close()


def aggregate_rows(store):
    return sum(store._read(f"SELECT COUNT(*) FROM {agg.name}")[0][0] for agg in aggregates.AGGREGATES)


def test_a_small_sqlite_store_keeps_no_aggregates_until_it_reaches_kept_from(tmp_path, monkeypatch):
    """Below `MIN_CALLS` calls no read uses the aggregates, so the writer skips them up to `KEPT_FROM`;
    the insert that reaches it makes them from every call (a retried overlap in it counted once), later
    ones add theirs."""
    monkeypatch.setattr(aggregates, "MIN_CALLS", 100_000)
    monkeypatch.setattr(aggregates, "KEPT_FROM", 250)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    records = calls()
    store.export(records[:200])
    assert aggregate_rows(store) == 0
    assert store.summary(group_by=("model",)) == summarize(store._read, "qmark", ("model",), aggregates=False)
    store.export(records[150:260])  # 50 known, 60 new: the rowid passes 250 here
    assert aggregate_rows(store) > 0
    store.export(records[260:])
    assert store.count() == 600
    check(store, monkeypatch)  # every aggregate row is the calls aggregated afresh; reads through them agree


def test_writers_crossing_kept_from_together_rebuild_once_and_count_every_call(tmp_path, monkeypatch):
    """Four threads (a connection each; SQLite serializes their transactions) write across the threshold."""
    import threading

    monkeypatch.setattr(aggregates, "MIN_CALLS", 100_000)
    monkeypatch.setattr(aggregates, "KEPT_FROM", 330)
    url = f"sqlite:///{tmp_path / 't.db'}"
    open_store(url).close()
    rebuilds = []
    real = aggregates.full_rebuild_sql
    monkeypatch.setattr(aggregates, "full_rebuild_sql", lambda style: rebuilds.append(style) or real(style))
    records = calls(800, seed=5)

    def write(part):
        store = open_store(url)
        for i in range(0, 200, 20):
            store.export(part[i:i + 20])
        store.close()

    threads = [threading.Thread(target=write, args=(records[k * 200:(k + 1) * 200],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = open_store(url)
    assert store.count() == 800 and rebuilds == ["qmark"]
    check(store, monkeypatch)
