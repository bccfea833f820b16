"""The stores at scale: write throughput from 4 processes, dashboard queries on a large table, memory with a dead store.

    python bench/postgres.py                      # starts a throwaway PostgreSQL (tokentrail.testing.postgres)
    python bench/postgres.py --url postgresql://… --rows 10000000

1. Sustained records/s from 4 processes into SQLite and PostgreSQL: each
   process exports pre-built LLMCall records (realistic fields, 2,000 a
   batch — the pipeline's batch size) through the store's `export`, and the
   same through the whole path (`log_llm_call` → pipeline → store).
2. Summary latency on a large `llm_calls` table in PostgreSQL (rows spread
   over 3 months, i.e. 3 partitions, 50 models, 1,000 customers; filled
   server-side with generate_series, then ANALYZE): the queries the CLI
   report and the dashboard run, median of 3. The figure in the issue is
   10,000,000 rows; `--rows` sets it. The time to fill is printed, so is a
   linear extrapolation to 10M when fewer were filled (an estimate, not a
   measurement: the aggregates scan every row in range, so they grow
   about linearly; the page queries use indexes and do not).
3. Memory with a dead store: 1,000,000 calls recorded with `store=` a
   PostgreSQL port nobody listens on; RSS before and after (bounded by the
   queue and the lane buffer, not by the number of calls), calls dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

PROCESSES = 4
BATCH = 2_000

WRITER = textwrap.dedent("""
    import sys, time, uuid
    from datetime import datetime, timedelta, timezone
    import tokentrail
    from tokentrail.record import LLMCall

    url, n, mode, start_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    now = datetime.now(timezone.utc)
    if mode == "export":
        store = tokentrail.open_store(url)
        batches = []
        for b in range(n // 2000):
            batches.append([LLMCall(id=uuid.uuid4().hex, trace_id=uuid.uuid4().hex, span_id=uuid.uuid4().hex[:16],
                                    started_at=now - timedelta(seconds=i), duration_ms=812.5, provider="openai",
                                    request_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18",
                                    input_tokens=1200, output_tokens=230, total_tokens=1430, cost_usd=0.000318,
                                    input_cost_usd=0.00018, output_cost_usd=0.000138, customer_id=f"c{i % 100}",
                                    feature="chat", finish_reasons=["stop"], request_params={"temperature": 0.2},
                                    source="openai") for i in range(2000)])
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        for batch in batches:
            store.export(batch)
    else:
        tokentrail.init(store=url, instrument=False, queue_size=max(n, 100000))
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        with tokentrail.attributes(customer_id="acme", feature="chat"):
            for i in range(n):
                tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", duration_ms=812.5,
                                        usage={"input_tokens": 1200, "output_tokens": 230})
        assert tokentrail.flush(600)
    print(time.perf_counter() - began)
""")


def throughput(url: str, per_process: int, mode: str) -> float:
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(per_process), mode, str(start_at)],
                              stdout=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    times = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return PROCESSES * per_process / max(times)


FILL = """
INSERT INTO llm_calls (id, trace_id, started_at, duration_ms, provider, operation, request_model, input_tokens,
                       output_tokens, total_tokens, cost_usd, customer_id, user_id, feature, source, ttft_ms)
SELECT 'b' || g, md5(g::text), %(start)s::timestamptz + ((g::bigint * 7919) %% %(span)s) * interval '1 second', 200 + (g %% 3000),
       'openai', 'chat', 'model-' || (g %% 50), 1000 + (g %% 500), 200 + (g %% 100), 1200 + (g %% 500) + (g %% 100),
       0.0001 * (g %% 30), 'cust-' || (g %% 1000), 'user-' || (g %% 20000), 'feature-' || (g %% 10), 'openai',
       CASE WHEN g %% 4 = 0 THEN 150 + (g %% 400) END
FROM generate_series(%(lo)s, %(hi)s) AS g
"""


def large_table(url: str, rows: int) -> None:
    from datetime import datetime, timedelta, timezone

    import psycopg

    import tokentrail
    from tokentrail import report
    from tokentrail.record import LLMCall

    store = tokentrail.open_store(url)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(days=89)
    # One record per month first: the store creates the monthly partitions as records arrive.
    store.export([LLMCall(id=f"m{d}", started_at=start + timedelta(days=d), provider="openai") for d in range(0, 90, 10)])
    began = time.perf_counter()
    chunk = 1_000_000
    for lo in range(1, rows + 1, chunk):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL, {"start": start, "span": 89 * 86400, "lo": lo, "hi": min(lo + chunk - 1, rows)})
        print(f"   filled {min(lo + chunk - 1, rows):,} rows ({time.perf_counter() - began:.0f} s)", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE llm_calls")
    print(f"   fill + VACUUM ANALYZE: {time.perf_counter() - began:.0f} s")
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
    print(f"   {n:,} calls in the table")
    for name, run in queries.items():
        times = []
        for _ in range(3):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
        median = statistics.median(times)
        extra = f"   (x{10_000_000 / n:.1f} rows: ~{median * 10_000_000 / n:.2f} s if it scales linearly)" if n < 9_000_000 else ""
        print(f"   {name:<36} {median * 1000:8.0f} ms{extra}")
    store.close()


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
                    print(f"   {name:<10} store.export (SQLite executemany, PostgreSQL COPY): {throughput(store_url, args.records, 'export'):>9,.0f} records/s")
                for name, store_url in (("SQLite", f"sqlite:///{tmp}/bench2.db"), ("PostgreSQL", url)):
                    if name == "PostgreSQL" and server is not None:
                        store_url = server.create_database("pipeline")
                    print(f"   {name:<10} log_llm_call -> pipeline -> store:                 {throughput(store_url, args.records, 'pipeline'):>9,.0f} records/s")
        if "summary" not in skip:
            print(f"2. summary latency, {args.rows:,} rows")
            large_table(server.create_database("large") if server is not None else url, args.rows)
        if "memory" not in skip:
            print("3. memory with a dead store")
            out = subprocess.run([sys.executable, "-c", DEAD], capture_output=True, text=True)
            print(out.stdout.rstrip() or out.stderr[-2000:])
    finally:
        if server is not None:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
