"""How fast the dashboard's JSON API answers on a big store.

    python bench/dashboard.py [--calls 1000000] [--store /tmp/tt-bench.db] [--repeat 5]
    python bench/dashboard.py --url postgresql://…/db   # an existing store, as it is (no fill)

Fills a SQLite store with `--calls` synthetic calls spread over 30 days (written through the store's own
`export`, as the pipeline writes them; an existing file with that many calls is reused), then asks every
API endpoint through starlette's TestClient (the whole request: routing, the query, JSON) `--repeat`
times and prints the median and worst time per endpoint. Not run as a test. `--url`: the same timings on an
existing store of any dialect, nothing filled; `bench/postgres.py` runs them (`time_endpoints`) on its
10,000,000-call PostgreSQL table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tokentrail.record import LLMCall
from tokentrail.sinks import open_store

MODELS = [("openai", "gpt-4o-mini", 0.15, 0.6), ("openai", "gpt-4o", 2.5, 10.0), ("anthropic", "claude-sonnet-4-6", 3.0, 15.0),
          ("anthropic", "claude-3-5-haiku-latest", 0.8, 4.0), ("gcp.gemini", "gemini-2.0-flash", 0.1, 0.4), ("mistral_ai", "mistral-small", 0.2, 0.6)]
FEATURES = ["support", "search", "summarize", "agent", "classify"]
CATEGORIES = ["rate_limit", "timeout", "server", "invalid_request", "context_length"]


def fill(url: str, n: int, days: int = 30, seed: int = 7) -> None:
    """Write `n` synthetic calls over the last `days` days into the store at `url`."""
    rng = random.Random(seed)
    store = open_store(url)
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=days)
    span = (now - start).total_seconds()
    batch: list[LLMCall] = []
    for i in range(n):
        provider, model, pin, pout = MODELS[rng.randrange(len(MODELS))]
        when = start + timedelta(seconds=span * i / n)
        tin, tout = rng.randint(50, 4000), rng.randint(10, 800)
        failed = rng.random() < 0.03
        customer = f"cust-{rng.randrange(200)}"
        batch.append(LLMCall(
            id=f"{int(when.timestamp() * 1000):013x}{i:011x}", started_at=when, duration_ms=rng.lognormvariate(6.5, 0.6),
            provider=provider, request_model=model, response_model=model, input_tokens=tin, output_tokens=tout,
            cost_usd=(tin * pin + tout * pout) / 1e6, user_id=f"u-{rng.randrange(2000)}", customer_id=customer,
            feature=FEATURES[rng.randrange(len(FEATURES))], workflow="ticket" if i % 4 == 0 else None,
            error_type="APIError" if failed else None, error_category=CATEGORIES[rng.randrange(len(CATEGORIES))] if failed else None,
            status_code=429 if failed else 200, source="bench"))
        if len(batch) == 20_000:
            store.export(batch)
            batch = []
    if batch:
        store.export(batch)
    store.close()


# The whole store (the page's "all time"), then the page's default view (the last 24 hours).
ENDPOINTS = [
    "/api/summary",
    "/api/timeseries?bucket=day&stack=model",
    "/api/breakdown?by=model",
    "/api/breakdown?by=customer",
    "/api/breakdown?by=user",
    "/api/errors",
    "/api/outcomes",
    "/api/calls?limit=50",
    "/api/calls?limit=50&sort=-cost_usd&model=gpt-4o",
    "/api/calls?limit=50&offset=5000&customer=cust-7",
    "/api/calls/{id}",
    "/api/cursor",
    "/api/summary?since=24h",
    "/api/timeseries?bucket=hour&stack=model&since=24h",
    "/api/breakdown?by=model&since=24h",
    "/api/breakdown?by=customer&since=24h",
    "/api/errors?since=24h",
    "/api/outcomes?since=24h",
    "/api/calls?limit=50&since=24h",
    "/api/calls?limit=50&sort=-cost_usd&since=24h",
    "/api/values?field=model&since=24h",
]


def time_endpoints(url: str, repeat: int = 5, *, slow_ms: float = 300.0, label: str | None = None) -> list[tuple[str, float, float]]:
    """Ask every one of `ENDPOINTS` `repeat` times of the dashboard over the store at `url` (starlette's
    TestClient: routing, the query, JSON); print and return (path, median ms, worst ms) per endpoint.
    `slow_ms`: the median that is flagged."""
    from starlette.testclient import TestClient

    from tokentrail.web.server import create_app

    client = TestClient(create_app(url))
    some_id = client.get("/api/calls?limit=1").json()["calls"][0]["id"]
    print(f"{label or url}; {repeat} runs each (median / worst, ms)")
    worst_all = 0.0
    over = []
    out = []
    for path in ENDPOINTS:
        path = path.replace("{id}", some_id)
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            answer = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        worst_all = max(worst_all, max(times))
        median = statistics.median(times)
        if median >= slow_ms:
            over.append(path)
        out.append((path, median, max(times)))
        print(f"  {path:<58} {median:7.1f} {max(times):7.1f}{f'   >= {slow_ms:.0f} ms' if path in over else ''}", flush=True)
    print(f"slowest answer: {worst_all:.1f} ms; {len(ENDPOINTS) - len(over)} of {len(ENDPOINTS)} answer in < {slow_ms:.0f} ms (median)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--store", default="/tmp/tokentrail-bench-dashboard.db")
    parser.add_argument("--url", help="time an existing store at this URL as it is (any dialect; nothing is filled)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slow-ms", type=float, default=300.0, help="flag endpoints whose median is at least this")
    args = parser.parse_args()
    if args.url:
        time_endpoints(args.url, args.repeat, slow_ms=args.slow_ms)
        return
    url = f"sqlite:///{Path(args.store).resolve()}"

    from tokentrail import report

    have = 0
    if Path(args.store).exists():
        have = (report.totals(report.open_existing(url)) or {}).get("calls", 0)
    if have != args.calls:
        for suffix in ("", "-wal", "-shm"):
            Path(args.store + suffix).unlink(missing_ok=True)
        began = time.perf_counter()
        fill(url, args.calls)
        print(f"filled {args.calls:,} calls in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    time_endpoints(url, args.repeat, slow_ms=args.slow_ms, label=f"{args.calls:,} calls in {args.store}")


if __name__ == "__main__":
    main()
