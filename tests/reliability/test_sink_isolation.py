"""A sink that hangs, raises, or raises a BaseException: the application's calls cost the same, memory stays
bounded, the other sinks get every record on time, and the losses are counted per sink, stored, and shown by
`tokentrail doctor`. A batch the store refuses loses only its bad record."""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

import tokentrail
from tokentrail.config import load_settings
from tokentrail.pipeline import RETRIES, Pipeline
from tokentrail.record import LLMCall
from tokentrail.sinks.sqlite import SQLiteStore
from reliability_helpers import WRITTEN, figure, run


class Collect:
    def __init__(self):
        self.records, self.arrived = [], []

    def export(self, records):
        now = time.perf_counter()
        self.records.extend(records)
        self.arrived.extend([now] * len(records))


class Hanging:
    def __init__(self):
        self.release = threading.Event()

    def export(self, records):
        self.release.wait(60)


class Raising:
    def __init__(self, exc=OSError("disk on fire")):
        self.exc, self.calls = exc, 0

    def export(self, records):
        self.calls += 1
        raise self.exc


def call_latencies(n=3000, pause=0.0):
    out = []
    for i in range(n):
        if pause and i % 100 == 0:
            time.sleep(pause)  # spread over many batches (outside the timed part)
        t = time.perf_counter_ns()
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=10, output=i % 5)
        out.append(time.perf_counter_ns() - t)
    return out


def percentile(values, q):
    return sorted(values)[int(q * (len(values) - 1))] / 1000


@pytest.mark.parametrize("bad", ["hanging", "raising", "cancelled", "system-exit", "keyboard-interrupt"])
def test_a_bad_sink_costs_the_app_nothing_and_the_other_sinks_get_everything_on_time(tmp_path, bad):
    WRITTEN.append(tmp_path)
    sinks = {"hanging": Hanging(), "raising": Raising(), "cancelled": Raising(asyncio.CancelledError()),
             "system-exit": Raising(SystemExit(3)), "keyboard-interrupt": Raising(KeyboardInterrupt())}
    baseline_sink = Collect()
    tokentrail.init(f"sqlite:///{tmp_path / 'base.db'}", exporters=[baseline_sink], instrument=False, flush_interval=0.1)
    call_latencies(500)  # warm up
    base = call_latencies(pause=0.05)
    base_ended = time.perf_counter()
    assert tokentrail.flush(10)
    base_lag = max(baseline_sink.arrived) - base_ended
    tokentrail.shutdown()

    good, broken = Collect(), sinks[bad]
    tracker = tokentrail.init(f"sqlite:///{tmp_path / 'with.db'}", exporters=[broken, good], instrument=False,
                              flush_interval=0.1, shutdown_timeout=1)
    call_latencies(500)
    began = time.perf_counter()
    with_bad = call_latencies(pause=0.05)
    ended = time.perf_counter()
    deadline = time.monotonic() + 5
    while len(good.records) < 3500 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(good.records) == 3500  # every record, while the bad sink hangs or raises
    lag = max(good.arrived) - ended
    flushed = tokentrail.flush(2)
    stats = tracker.stats()
    store = stats["sinks"][f"sqlite:///{tmp_path / 'with.db'}"]
    assert store["written"] == 3500 and store["failed"] == store["dropped"] == 0
    assert stats["sinks"]["Collect"]["written"] == 3500
    broken_stats = stats["sinks"][type(broken).__name__]
    if bad == "hanging":
        assert flushed is False  # flush waits for every sink, bounded
        assert broken_stats["pending"] > 0 and broken_stats["written"] == 0
    else:
        assert broken_stats["failed"] == 3500 and broken_stats["errors"] == RETRIES * broken.calls // RETRIES
        assert broken.calls % RETRIES == 0  # bounded: each batch tried RETRIES times, then counted as failed
    p50, p99 = percentile(base, 0.5), percentile(base, 0.99)
    b50, b99 = percentile(with_bad, 0.5), percentile(with_bad, 0.99)
    figure(f"{bad} sink", f"app call p50 {p50:.1f} -> {b50:.1f} us, p99 {p99:.1f} -> {b99:.1f} us; "
           f"other sinks got 3,500/3,500, the last {lag * 1000:.0f} ms after the last call (without the bad sink: "
           f"{base_lag * 1000:.0f} ms); "
           f"bad sink: {broken_stats['failed'] or broken_stats['pending']:,} counted {'pending' if bad == 'hanging' else 'failed'}")
    assert b50 <= p50 * 2 + 10  # microseconds: the calling thread does the same deque append
    # On time. A retrying sink in the way would hold every batch for its 0.1 + 0.2 s back-off (the calls come
    # in 30 bursts 50 ms apart, so 30 batches or more: 9 s), a hanging one for ever; the bound leaves room for a shared machine's stalls (0.7 s
    # seen in CI) without letting either through.
    assert lag < base_lag + 2.5
    if bad == "hanging":
        broken.release.set()


MEMORY = """
import os, sys, threading, time, tokentrail

class Hanging:
    def export(self, records):
        threading.Event().wait(600)

class Raising:
    def export(self, records):
        raise OSError("always")

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

sink = {"hanging": Hanging, "raising": Raising}[sys.argv[1]]()
tokentrail.init(store="none", exporters=[sink], instrument=False, queue_size=20_000, flush_interval=0.02, shutdown_timeout=0.5)
blob = "x" * 400

def calls(n):
    for i in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o", feature=blob) as span:
            span.set_tokens(input=1, output=1)
        if i % 500 == 0:
            time.sleep(0.002)

sizes = []
for _ in range(8):                     # 8 x 25,000 calls; the buffers are full after the second round
    calls(25_000)
    time.sleep(0.2)
    sizes.append(rss_mb())
print(" ".join(f"{size:.1f}" for size in sizes))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("bad", ["hanging", "raising"])
def test_memory_stays_bounded_behind_a_sink_that_never_writes(tmp_path, bad):
    result = run(MEMORY, tmp_path, bad, timeout=120)
    assert result.returncode == 0, result.stderr
    sizes = [float(size) for size in result.stdout.split()]
    early, late = max(sizes[:4]), max(sizes[4:])  # the buffers fill in the first rounds, then memory stays flat
    figure(f"memory behind a {bad} sink", f"RSS at most {early:.0f} MB over the first 100,000 calls, at most {late:.0f} MB "
           f"over the next 100,000 (queue_size 20,000; the RSS after each 25,000: {', '.join(f'{x:.0f}' for x in sizes)})")
    # Unbounded, the failed batches grew it ~17 MB per 25,000 calls: ~68 MB over the last four rounds. Bounded,
    # it moves a few MB with the allocator's fragmentation (up to 12 MB seen on a loaded CI machine).
    assert late - early < 30


def test_a_refused_batch_loses_only_its_bad_record_counted_stored_and_shown_by_doctor(tmp_path):
    WRITTEN.append(tmp_path)
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = SQLiteStore(url)
    raising = Raising()

    class Item:
        route = None

        def __init__(self, i):
            self.i = i

        def build(self, settings):  # a record that bypassed coercion: one value SQLite cannot hold
            return LLMCall(id=f"r{self.i:05d}", started_at=datetime.now(timezone.utc), provider="openai",
                           request_model="gpt-4o", input_tokens=2**70 if self.i == 1234 else 3, output_tokens=1)

    pipe = Pipeline(load_settings({"store": None, "flush_interval": 0.05}, config={}, env={}), [store, raising])
    for i in range(2000):
        pipe.submit(Item(i))
    assert pipe.flush(10) is False  # a record was lost: flush says so
    stats = pipe.sink_stats()
    assert stats[url]["rejected"] == 1 and stats[url]["written"] == 1999
    assert stats["Raising"]["failed"] == 2000
    pipe.submit(Item(5000))  # the store notes the losses with its next write
    pipe.flush(10)
    pipe.shutdown(5)
    assert len(store.calls(limit=None)) == 2000  # 1999 + the later one; r01234 alone is missing
    assert {c.id for c in store.calls(limit=None)} == {f"r{i:05d}" for i in [*range(2000), 5000]} - {"r01234"}
    noted = {row["sink"]: row for row in store.losses()}
    assert noted[url]["rejected"] == 1 and noted["Raising"]["failed"] == 2001  # noted a last time at shutdown

    doctor = run("from tokentrail.cli import main; main()", tmp_path, "doctor", "--store", url, timeout=60)
    assert doctor.returncode == 0, doctor.stderr
    assert "records lost on the way to a sink" in doctor.stdout
    rows_shown = [line for line in doctor.stdout.splitlines() if "Raising" in line or "calls.db" in line]
    assert any("Raising" in line and "2,001" in line for line in rows_shown), doctor.stdout
    figure("refused batch", "2,000 records, 1 with a value SQLite refuses: 1,999 written after bisection, 1 counted "
           "'rejected'; a raising exporter's 2,001 counted 'failed'; both noted in tokentrail_stats and shown by doctor")
