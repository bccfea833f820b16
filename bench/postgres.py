"""The stores at scale: write throughput from 4 processes, dashboard queries on a large table, memory with a dead store.

    python bench/postgres.py                      # starts a throwaway PostgreSQL (tokentrail.testing.postgres)
    python bench/postgres.py --url postgresql://… --rows 10000000

1. Sustained records/s from 4 processes into SQLite and PostgreSQL: each
   process exports pre-built LLMCall records (realistic fields, 2,000 a
   batch — the pipeline's batch size) through the store's `export`, and the
   same through the whole path (`log_llm_call` → pipeline → store). Each line
   also says the CPU a record took — the writers' process CPU and, for a
   PostgreSQL on this machine, the server's (its processes in /proc, ended
   backends included) — and the rate that CPU allows on this machine's cores:
   the bound a figure meets when every core is busy.
2. Summary latency on a large `llm_calls` table in PostgreSQL (rows spread
   over 89 days, i.e. 3-4 monthly partitions; 50 models, a few with most of
   the traffic; 10 features, 1,000 customers, 20,000 users, ~2 % errors):
   filled server-side with generate_series in time order, as calls arrive
   (`FILL`). The fill drops llm_calls' primary key and indexes first and
   makes them again after it, exactly as the store made them (checked), then
   rebuilds the write-time aggregates (`sinks/aggregates.py`) for every call
   with the module's own `rebuild_sql`, in one transaction (the fill bypasses
   the writer, which keeps them per batch), then VACUUM ANALYZE; each phase's
   time is printed. Then the queries the CLI report runs, and every
   dashboard JSON API endpoint of `bench/dashboard.py` (its `time_endpoints`,
   starlette's TestClient), `--repeat` times each: median and worst. The
   figure in the issue is 10,000,000 rows (every query < 1 s); `--rows` sets
   it; below 9M a linear extrapolation to 10M is printed (an estimate, not a
   measurement).
3. Memory with a dead store: 1,000,000 calls recorded with `store=` a
   PostgreSQL port nobody listens on; RSS before and after (bounded by the
   queue and the lane buffer, not by the number of calls), calls dropped.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/dashboard.py: its models and endpoints

PROCESSES = 4
BATCH = 2_000

WRITER = textwrap.dedent("""
    import sys, time, uuid
    from datetime import datetime, timedelta, timezone
    import tokentrail
    from tokentrail.record import LLMCall

    url, n, mode, start_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    now = datetime.now(timezone.utc)
    base = int(now.timestamp() * 1000)
    if mode == "export":
        store = tokentrail.open_store(url)
        batches = []
        # As the pipeline writes them: in time order, ids and trace ids leading with their millisecond
        # (random ids put each record on a random page of the key and trace indexes: ~2x slower).
        for b in range(n // 2000):
            batches.append([LLMCall(id=f"{ms:012x}{uuid.uuid4().hex[:16]}", trace_id=f"{ms:012x}{uuid.uuid4().hex[:20]}",
                                    span_id=uuid.uuid4().hex[:16],
                                    started_at=now + timedelta(milliseconds=ms - base), duration_ms=812.5, provider="openai",
                                    request_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18",
                                    input_tokens=1200, output_tokens=230, total_tokens=1430, cost_usd=0.000318,
                                    input_cost_usd=0.00018, output_cost_usd=0.000138, customer_id=f"c{i % 100}",
                                    feature="chat", finish_reasons=["stop"], request_params={"temperature": 0.2},
                                    source="openai") for i in range(2000)
                            for ms in [base + (b * 2000 + i) * 3]])
        while time.time() < start_at:
            time.sleep(0.001)
        began, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            store.export(batch)
    else:
        tokentrail.init(store=url, instrument=False, queue_size=max(n, 100000))
        while time.time() < start_at:
            time.sleep(0.001)
        began, cpu = time.perf_counter(), time.process_time()
        with tokentrail.attributes(customer_id="acme", feature="chat"):
            for i in range(n):
                tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", duration_ms=812.5,
                                        usage={"input_tokens": 1200, "output_tokens": 230})
        assert tokentrail.flush(600)
    print(time.perf_counter() - began, time.process_time() - cpu)
""")


def _server_cpu_s() -> float | None:
    """CPU seconds used so far by the PostgreSQL processes on this machine (its server and backends, those
    still running and those that ended),
    or None where /proc does not tell (not Linux)."""
    total, found = 0, False
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        if "(postgres)" in text:
            found = True
            fields = text.rsplit(")", 1)[1].split()
            # utime, stime, and cutime, cstime: the backends that ended (their connections closed) and
            # were reaped by the postmaster count there
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK") if found else None


def throughput(url: str, per_process: int, mode: str) -> tuple[float, str]:
    """Records/s of `PROCESSES` writers, and where the CPU went: the writers' (process CPU, their
    threads included) and, for PostgreSQL on this machine, the server's, per record, and the rate
    that CPU allows on this machine's cores (what the figure is bound by when every core is busy)."""
    start_at = time.time() + 3.0
    server0 = _server_cpu_s() if url.startswith("postgresql") else None
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(per_process), mode, str(start_at)],
                              stdout=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    figures = [[float(x) for x in p.communicate()[0].strip().splitlines()[-1].split()] for p in procs]
    server1 = _server_cpu_s() if server0 is not None else None
    records = PROCESSES * per_process
    writers_us = sum(cpu for _, cpu in figures) / records * 1e6
    # The server's CPU from before the writers started to after they ended: their 3-s wait is idle.
    server_us = (server1 - server0) / records * 1e6 if server1 is not None else 0.0
    cpu = f"CPU a record: writers {writers_us:.1f} µs" + (f" + server {server_us:.1f} µs" if server1 is not None else "")
    cores = os.cpu_count() or 1
    cpu += f"; {cores} cores allow at most {cores / (writers_us + server_us) * 1e6:,.0f}/s"
    return records / max(wall for wall, _ in figures), cpu


# Filled server-side, in insertion (time) order as a real store is: `seq` and the rows' place in their partition
# follow `started_at` (a few seconds' jitter: concurrent writers). Ids and trace ids lead with their millisecond,
# as tokentrail's do (32 hex digits). Models by a cubic law over 50 (the first ~27 % of calls to one model, the
# 6 dashboard models ~60 % together, the rarest ~0.7 % each); each model serves 3 of 10 features (150 model and
# feature pairs, each feature ~15 models); ~2 % errors (no tokens, no cost; 5 categories); a quarter streamed (TTFT);
# cost from the model's price. Parameters: arrays of the models' names, providers and prices.
FILL = """
INSERT INTO llm_calls (id, trace_id, span_id, started_at, duration_ms, provider, operation, request_model, response_model,
                       input_tokens, output_tokens, total_tokens, cost_usd, input_cost_usd, output_cost_usd, stream, ttft_ms,
                       finish_reasons, error_type, error_category, status_code, customer_id, user_id, feature, source)
SELECT ms || lpad(to_hex(g), 20, '0'), ms || substr(md5(g::text), 1, 20), substr(md5(g::text), 21, 16), t,
       CASE WHEN failed THEN 20 + (g * 271) %% 400 ELSE 150 + power(((g * 48271) %% 65536) / 65536.0, 2) * 6000 END,
       (%(providers)s::text[])[m], 'chat', (%(models)s::text[])[m], (%(models)s::text[])[m] || '-2025-06-01',
       tin, tout, tin + tout, (tin * pin + tout * pout) / 1e6, tin * pin / 1e6, tout * pout / 1e6,
       g %% 4 = 0, CASE WHEN g %% 4 = 0 AND NOT failed THEN 150 + (g %% 400) END,
       CASE WHEN NOT failed THEN '["stop"]'::jsonb END,
       CASE WHEN failed THEN (ARRAY['RateLimitError', 'APITimeoutError', 'InternalServerError', 'BadRequestError',
                                    'BadRequestError'])[c] END,
       CASE WHEN failed THEN (%(categories)s::text[])[c] END,
       CASE WHEN failed THEN (ARRAY[429, 408, 500, 400, 400])[c] ELSE 200 END,
       'cust-' || (g %% 1000), 'user-' || (g %% 20000), (%(features)s::text[])[1 + (m * 3 + g %% 3) %% 10], 'bench'
FROM (SELECT g, t, lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') AS ms, m, failed, c,
             (%(in_prices)s::float8[])[m] AS pin, (%(out_prices)s::float8[])[m] AS pout,
             CASE WHEN NOT failed THEN 50 + (g * 69621) %% 4000 END AS tin,
             CASE WHEN NOT failed THEN 10 + (g * 16807) %% 800 END AS tout
      FROM (SELECT g, %(start)s::timestamptz + ((g - 1) * %(step)s + (g * 7919) %% 5) * interval '1 second' AS t,
                   1 + floor(%(n_models)s * power(((g * 2654435761) %% 4294967296) / 4294967296.0, 3))::int AS m,
                   (g * 40503) %% 1000 < 20 AS failed, 1 + (g / 7) %% 5 AS c
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) AS a) AS b
"""
CHUNK = 2_000_000  # rows per INSERT … SELECT (one transaction each)
N_MODELS = 50


def _fill_params(start, span_s: float, rows: int) -> dict:
    """The FILL's arrays: the dashboard bench's 6 models first (so its `model=gpt-4o` finds calls), then 44 more."""
    from dashboard import CATEGORIES, FEATURES, MODELS

    more = [(("openai", "anthropic", "gcp.gemini", "mistral_ai", "aws.bedrock")[i % 5], f"model-{i}",
             0.1 + 0.4 * (i % 7), 0.4 + 1.6 * (i % 7)) for i in range(len(MODELS), N_MODELS)]
    models = [*MODELS, *more]
    features = [*FEATURES, "translate", "extract", "rerank", "codegen", "moderate"][:10]
    return {"start": start, "step": span_s / rows, "n_models": N_MODELS, "models": [m[1] for m in models],
            "providers": [m[0] for m in models], "in_prices": [float(m[2]) for m in models],
            "out_prices": [float(m[3]) for m in models], "categories": list(CATEGORIES), "features": features}


def _secondary_structures(conn) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """llm_calls' unique constraints (the primary key) and other indexes, as (name, definition), to drop
    before the fill and make again after it exactly as they were."""
    constraints = conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                               "WHERE conrelid = 'llm_calls'::regclass AND contype IN ('p', 'u') ORDER BY conname").fetchall()
    indexes = conn.execute("SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE i.indrelid = 'llm_calls'::regclass AND NOT EXISTS "
                           "(SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) ORDER BY c.relname").fetchall()
    # A partitioned table's index reads `ON ONLY llm_calls`: made that way it would cover no partition.
    return constraints, [(name, sql.replace(" ON ONLY ", " ON ", 1)) for name, sql in indexes]


def _schema_fingerprint(conn) -> list[tuple]:
    """Every index on llm_calls and its partitions: (table, definition without the index's name, valid)."""
    return conn.execute("SELECT i.indrelid::regclass::text, regexp_replace(pg_get_indexdef(i.indexrelid), "
                        "'INDEX \\S+ ON (ONLY )?', 'INDEX ON '), i.indisvalid FROM pg_index i "
                        "WHERE i.indrelid = 'llm_calls'::regclass OR i.indrelid IN "
                        "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'llm_calls'::regclass) "
                        "ORDER BY 1, 2").fetchall()


def _timed(runs: int, run) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times), max(times)


def large_table(url: str, rows: int, repeat: int = 5) -> None:
    from datetime import datetime, timedelta, timezone

    import psycopg

    import tokentrail
    from tokentrail import report
    from tokentrail.record import LLMCall
    from tokentrail.sinks import aggregates

    store = tokentrail.open_store(url)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(days=89)
    # One record per month first: the store creates the monthly partitions as records arrive.
    store.export([LLMCall(id=f"m{d}", started_at=start + timedelta(days=d), provider="openai") for d in range(0, 90, 10)])
    with psycopg.connect(url, autocommit=True) as conn:
        before_fill = _schema_fingerprint(conn)
        constraints, indexes = _secondary_structures(conn)
        began = time.perf_counter()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for name, _ in constraints:
            conn.execute(f"ALTER TABLE llm_calls DROP CONSTRAINT {name}")
    print(f"   dropped {len(constraints)} constraint(s) and {len(indexes)} index(es) of llm_calls for the fill "
          f"({time.perf_counter() - began:.1f} s): {', '.join(n for n, _ in [*constraints, *indexes])}")
    phases = {}
    began = time.perf_counter()
    params = _fill_params(start, 89 * 86400 - 60, rows)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for lo in range(1, rows + 1, CHUNK):
            conn.execute(FILL, {**params, "lo": lo, "hi": min(lo + CHUNK - 1, rows)})
            print(f"   filled {min(lo + CHUNK - 1, rows):,} rows ({time.perf_counter() - began:.0f} s)", flush=True)
    phases["insert (no indexes)"] = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for name, sql in constraints:
            t = time.perf_counter()
            conn.execute(f"ALTER TABLE llm_calls ADD CONSTRAINT {name} {sql}")
            phases[f"constraint {name}"] = time.perf_counter() - t
            print(f"   {name}: {sql} ({phases[f'constraint {name}']:.1f} s)", flush=True)
        for name, sql in indexes:
            t = time.perf_counter()
            conn.execute(sql)
            phases[f"index {name}"] = time.perf_counter() - t
            print(f"   {name} ({phases[f'index {name}']:.1f} s)", flush=True)
        after_fill = _schema_fingerprint(conn)
    assert after_fill == before_fill, ("llm_calls' indexes differ from the store's", before_fill, after_fill)
    print(f"   {len(after_fill)} indexes on llm_calls and its partitions, as the store made them")
    # The fill bypassed the writer, which keeps the aggregates per batch: rebuild them for every call, in one
    # transaction, through the module's own statements (what `prune` runs), as if the calls came through tokentrail.
    t = time.perf_counter()
    statements = aggregates.rebuild_sql("format", end + timedelta(hours=2))
    with psycopg.connect(url) as conn:
        for sql, values, many in statements:
            if many:
                conn.cursor().executemany(sql, values)
            else:
                conn.execute(sql, values)
    phases["aggregates rebuilt (one transaction)"] = time.perf_counter() - t
    with psycopg.connect(url, autocommit=True) as conn:
        sizes = {agg.name: conn.execute(f"SELECT count(*) FROM {agg.name}").fetchone()[0] for agg in aggregates.AGGREGATES}
    print(f"   aggregates rebuilt: {phases['aggregates rebuilt (one transaction)']:.1f} s "
          f"({', '.join(f'{n} {c:,} rows' for n, c in sizes.items())})", flush=True)
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("llm_calls", *(agg.name for agg in aggregates.AGGREGATES)):
            conn.execute(f"VACUUM ANALYZE {table}")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    phases["VACUUM ANALYZE"] = time.perf_counter() - t
    total = sum(phases.values())
    print(f"   VACUUM ANALYZE: {phases['VACUUM ANALYZE']:.1f} s; fill in all {total:.0f} s ({total / 60:.1f} min); "
          f"database {size}")
    print("   phases: " + "; ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    with psycopg.connect(url, autocommit=True) as conn:
        counted = conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
        through = {agg.name: conn.execute(f"SELECT sum(calls) FROM {agg.name}").fetchone()[0] for agg in aggregates.AGGREGATES}
    print(f"   {counted:,} rows counted in llm_calls; calls in the aggregates: "
          + ", ".join(f"{n} {c:,}" for n, c in through.items()))
    assert all(c == counted for c in through.values()), (counted, through)
    queries = {
        "totals, last 30 days (report)": lambda: report.totals(store, since="30d"),
        "breakdown by model, 30 days": lambda: report.breakdown(store, ("model",), since="30d"),
        "breakdown by customer, 30 days": lambda: report.breakdown(store, ("customer",), since="30d"),
        "by day, 90 days (no percentiles)": lambda: store.summary(group_by="day", since="90d", percentiles=False),
        "totals, last 24 h": lambda: report.totals(store, since="24h"),
        "one customer, 30 days": lambda: report.totals(store, since="30d", where={"customer_id": "cust-7"}),
        "newest 50 calls": lambda: store.calls(limit=50),
        "50 costliest calls, 24 h": lambda: store.calls(limit=50, since="24h", order="-cost_usd"),
        "tail page (calls_after)": lambda: store.calls_after(rows // 2, limit=200),
    }
    n = store.summary(group_by=(), percentiles=False)[0]["calls"]
    print(f"   {n:,} calls in the store's summary; report queries, {repeat} runs each (median / worst, ms)")
    for name, run in queries.items():
        median, worst = _timed(repeat, run)
        extra = f"   (x{10_000_000 / n:.1f} rows: ~{median * 10_000_000 / n:.2f} s if it scales linearly)" if n < 9_000_000 else ""
        flag = "   >= 1 s" if median >= 1.0 else ""
        print(f"   {name:<36} {median * 1000:8.0f} {worst * 1000:8.0f}{flag}{extra}", flush=True)
    store.close()
    from dashboard import time_endpoints

    print(f"   dashboard JSON API (bench/dashboard.py's endpoints, starlette TestClient):")
    time_endpoints(url, repeat, slow_ms=1000.0, label=f"   {n:,} calls in PostgreSQL")


DEAD = textwrap.dedent("""
    import resource, time
    import tokentrail

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

    tracker = tokentrail.init(store="postgresql://nobody@127.0.0.1:9/none", instrument=False, shutdown_timeout=1)
    before = rss_mb()
    began = time.perf_counter()
    slowest = 0.0
    for i in range(1_000_000):
        t = time.perf_counter()
        tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", usage={"input_tokens": 1200, "output_tokens": 230})
        slowest = max(slowest, time.perf_counter() - t)
    elapsed = time.perf_counter() - began
    time.sleep(2)
    stats = tracker.stats()
    sink = next(iter(stats["sinks"].values()))
    print(f"   RSS {before:.0f} MB before, {rss_mb():.0f} MB after 1,000,000 calls (peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB); "
          f"{elapsed:.1f} s, slowest call {slowest * 1000:.1f} ms; queue dropped {stats['dropped']:,}, store buffer dropped "
          f"{sink['dropped']:,}, pending {stats['pending']:,}")
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (default: start a throwaway server)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows for the summary latency table")
    parser.add_argument("--records", type=int, default=100_000, help="records per process for throughput")
    parser.add_argument("--repeat", type=int, default=5, help="runs per summary query and dashboard endpoint")
    parser.add_argument("--skip", default="", help="comma-separated: throughput,summary,memory")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    server = None
    url = args.url
    if url is None:
        from tokentrail.testing.postgres import PostgresServer

        server = PostgresServer().__enter__()
        url = server.url
    print(f"PostgreSQL {url.split('@')[-1]}; {os.cpu_count()} CPUs")
    try:
        if "throughput" not in skip:
            print(f"1. sustained records/s, {PROCESSES} processes x {args.records:,} records")
            with tempfile.TemporaryDirectory() as tmp:
                for name, store_url in (("SQLite", f"sqlite:///{tmp}/bench.db"), ("PostgreSQL", url)):
                    if name == "PostgreSQL" and server is not None:
                        store_url = server.create_database("throughput")
                    rate, cpu = throughput(store_url, args.records, "export")
                    print(f"   {name:<10} store.export (SQLite multi-row INSERT, PostgreSQL COPY): {rate:>9,.0f} records/s  ({cpu})")
                for name, store_url in (("SQLite", f"sqlite:///{tmp}/bench2.db"), ("PostgreSQL", url)):
                    if name == "PostgreSQL" and server is not None:
                        store_url = server.create_database("pipeline")
                    rate, cpu = throughput(store_url, args.records, "pipeline")
                    print(f"   {name:<10} log_llm_call -> pipeline -> store:                 {rate:>9,.0f} records/s  ({cpu})")
        if "summary" not in skip:
            print(f"2. summary latency, {args.rows:,} rows")
            large_table(server.create_database("large") if server is not None else url, args.rows, args.repeat)
        if "memory" not in skip:
            print("3. memory with a dead store")
            out = subprocess.run([sys.executable, "-c", DEAD], capture_output=True, text=True)
            print(out.stdout.rstrip() or out.stderr[-2000:])
    finally:
        if server is not None:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
