"""The store's write cost per record: 60,000 calls in batches of 500 into a fresh SQLite store.

    python bench/store_write.py                   # the aggregates kept per batch (as past 10,000 calls)
    python bench/store_write.py --no-aggregates   # the same writes without them (as a smaller store)
    python bench/store_write.py --calls 1000000 --batch 20 --trace-ids random   # the trace ids of before
    PYTHONPATH=<an older checkout>/src python bench/store_write.py   # e.g. schema 6's per-row triggers

Prints µs per record (wall time of `export`, median of `--runs` fresh stores): the cost on the
pipeline's worker thread, which never is the calling one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


def make_calls(n: int, trace_ids: str = "ordered") -> list:
    """`trace_ids`: "ordered" as tokentrail makes them (their millisecond first, context.new_trace_id) or
    "random" (128 random bits, as before: each record lands on a random page of the trace_id index)."""
    from tokentrail.record import LLMCall

    rng = random.Random(7)
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku", "gemini-flash", "llama-70b"]
    out = []
    for i in range(n):
        model = rng.choice(models)
        tin, tout = rng.randint(50, 3000), rng.randint(5, 800)
        failed = rng.random() < 0.03
        started = t0 + timedelta(seconds=30 * i)
        millis = int(started.timestamp() * 1000)
        trace = rng.getrandbits(128) if trace_ids == "random" else millis << 80 | rng.getrandbits(80)
        out.append(LLMCall(
            id=f"{millis:012x}{rng.getrandbits(64):016x}", trace_id=f"{trace:032x}", started_at=started, duration_ms=rng.lognormvariate(6, 0.7),
            provider="anthropic" if model.startswith("claude") else "openai", operation="chat",
            request_model=model, response_model=model, input_tokens=tin, output_tokens=tout, total_tokens=tin + tout,
            cost_usd=tin * 2e-6 + tout * 8e-6, ttft_ms=rng.uniform(80, 900), customer_id=f"cust-{rng.randrange(200)}",
            user_id=f"user-{rng.randrange(2000)}", feature=rng.choice(["search", "chat", "summarize"]),
            error_type="RateLimitError" if failed else None, error_category="rate_limit" if failed else None))
    return out


def run(records: list, batch: int, aggregates: bool) -> float:
    from tokentrail.sinks import aggregates as kept, open_store

    # A SQLite store keeps the aggregates once it has held `KEPT_FROM` calls: with aggregates, write as a
    # store past that does (from the first call); without, as a store below it.
    kept.KEPT_FROM = 0 if aggregates else 10**18
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'w.db'}")
        start = time.perf_counter()
        for i in range(0, len(records), batch):
            store.export(records[i:i + batch])
        elapsed = time.perf_counter() - start
        store.close()
    return elapsed / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-aggregates", action="store_true", help="do not maintain the aggregates (per-batch code only)")
    parser.add_argument("--trace-ids", choices=("ordered", "random"), default="ordered",
                        help="trace ids as tokentrail makes them (time first), or 128 random bits")
    args = parser.parse_args()
    import tokentrail

    records = make_calls(args.calls, args.trace_ids)
    times = [run(records, args.batch, not args.no_aggregates) for _ in range(args.runs)]
    print(f"tokentrail {Path(tokentrail.__file__).parent}: {args.calls} calls in batches of {args.batch}, "
          f"aggregates {'off' if args.no_aggregates else 'on'}, {args.trace_ids} trace ids: {statistics.median(times):.1f} µs per record "
          f"(runs: {', '.join(f'{t:.1f}' for t in times)})")


if __name__ == "__main__":
    main()
