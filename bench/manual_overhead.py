"""What the manual API costs: time added per `track_llm_call` block, and records/s into SQLite.

    python bench/manual_overhead.py

1. Calling-thread overhead. The same small piece of work ("the call") runs in
   short blocks, alternating bare and wrapped in `track_llm_call` with the
   setters a real integration uses; each block is timed with the calling
   thread's CPU clock (`time.thread_time`), so the worker thread writing to
   SQLite in the background is not counted against it. The figure is the
   median of (tracked - bare) per call over all block pairs: robust to the
   drift of shared machines.
2. Throughput into SQLite: records/s the worker finishes and writes, (a) from a
   full queue, (b) end to end while the calling thread keeps producing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import tokentrail

CALLS_PER_BLOCK = 500
PAIRS = 200


def the_call() -> int:
    # Stand-in for the application's own work around an LLM call (building the
    # request, reading the reply); a little real CPU so the blocks are not empty.
    return sum(range(50))


def bare_block() -> None:
    for _ in range(CALLS_PER_BLOCK):
        the_call()


def tracked_block() -> None:
    for _ in range(CALLS_PER_BLOCK):
        with tokentrail.track_llm_call("openai", "gpt-4o-mini", user_id="u-1") as span:
            the_call()
            span.set_tokens(input=812, output=64, cache_read=512)
            span.set_response_model("gpt-4o-mini-2024-07-18")
            span.set_finish_reason("stop")


def cpu_us_per_call(block) -> float:
    start = time.thread_time()
    block()
    return (time.thread_time() - start) / CALLS_PER_BLOCK * 1e6


def overhead_per_block() -> tuple[float, float, float]:
    diffs, bare = [], []
    for i in range(PAIRS):
        # Alternate which runs first, so neither side always follows a flush.
        if i % 2:
            t, b = cpu_us_per_call(tracked_block), cpu_us_per_call(bare_block)
        else:
            b, t = cpu_us_per_call(bare_block), cpu_us_per_call(tracked_block)
        diffs.append(t - b)
        bare.append(b)
        tokentrail.flush(30)  # keep the queue short; not timed
    diffs.sort()
    return statistics.median(diffs), diffs[len(diffs) // 10], diffs[len(diffs) * 9 // 10]


def throughput_from_full_queue(url: str, n: int) -> float:
    tracker = tokentrail.init(url, flush_interval=3600, queue_size=n + 10, batch_size=2000)
    pipeline = tracker.pipeline
    pipeline.submit(_dummy())  # start the worker, then let it sleep
    tokentrail.flush(30)
    for _ in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o-mini", user_id="u-1", customer_id="acme") as span:
            span.set_tokens(input=812, output=64, cache_read=512)
            span.set_finish_reason("stop")
    start = time.perf_counter()
    assert tokentrail.flush(120)
    elapsed = time.perf_counter() - start
    assert tracker.stats()["dropped"] == 0
    return n / elapsed


def throughput_end_to_end(url: str, n: int) -> float:
    tokentrail.init(url, queue_size=n + 10)
    start = time.perf_counter()
    for _ in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o-mini", user_id="u-1", customer_id="acme") as span:
            span.set_tokens(input=812, output=64, cache_read=512)
            span.set_finish_reason("stop")
    assert tokentrail.flush(120)
    return n / (time.perf_counter() - start)


def _dummy():
    span = tokentrail.track_llm_call("openai", "warmup")
    with span:
        pass
    return span


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        tokentrail.init(url)
        for _ in range(5):  # warm up imports, caches, the worker
            tracked_block()
            bare_block()
        tokentrail.flush(30)
        median, p10, p90 = overhead_per_block()
        print(f"track_llm_call block, calling-thread CPU added: median {median:.2f} us per call "
              f"(p10 {p10:.2f}, p90 {p90:.2f}; {PAIRS} block pairs x {CALLS_PER_BLOCK} calls)")
        n = 200_000
        rate = throughput_from_full_queue(f"sqlite:///{Path(tmp) / 'queue.db'}", n)
        print(f"SQLite throughput from a full queue: {rate:,.0f} records/s ({n:,} records)")
        rate = throughput_end_to_end(f"sqlite:///{Path(tmp) / 'e2e.db'}", n)
        print(f"SQLite throughput end to end (producing and writing at once): {rate:,.0f} records/s")
        tokentrail.shutdown()
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
