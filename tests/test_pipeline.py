import threading
import time

import tokentrail
from tokentrail.config import load_settings
from tokentrail.pipeline import Pipeline


class Collect:
    def __init__(self):
        self.records = []
        self.threads = set()

    def export(self, records):
        self.threads.add(threading.current_thread().name)
        self.records.extend(records)


class Broken:
    def __init__(self, failures=10**9):
        self.failures = failures
        self.calls = 0
        self.records = []

    def export(self, records):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("disk on fire")
        self.records.extend(records)


class Hanging:
    def __init__(self):
        self.release = threading.Event()

    def export(self, records):
        self.release.wait(30)


class Item:
    """A pending item that records which thread finished it."""

    route = None

    def __init__(self, n):
        self.n = n
        self.finished_on = None

    def build(self, settings):
        self.finished_on = threading.current_thread().name
        return self


def settings(**kw):
    return load_settings({"store": None, **kw}, config={}, env={})


def test_worker_finishes_and_writes_calling_thread_only_enqueues():
    sink = Collect()
    pipe = Pipeline(settings(), [sink])
    items = [Item(i) for i in range(10)]
    for item in items:
        pipe.submit(item)
    assert pipe.flush(5)
    assert [r.n for r in sink.records] == list(range(10))
    assert {i.finished_on for i in items} == {"tokentrail-pipeline"}
    assert sink.threads == {"tokentrail-sink-Collect"}  # each sink is written by a thread of its own
    pipe.shutdown()


class Failing(Item):
    def build(self, settings):
        raise ValueError("unreadable")


class Recorded(Item):
    def build(self, settings):
        return None  # a framework's call that a lower layer recorded


def test_the_counts_say_what_became_of_each_call(tt_warnings):
    sink = Collect()
    pipe = Pipeline(settings(), [sink])
    for item in [Item(0), Failing(1), Item(2), Recorded(3), Item(4), Failing(5)]:
        pipe.submit(item)
    assert not pipe.flush(5)  # two calls could not be built: not everything was kept
    assert (pipe.stats["processed"], pipe.stats["finish_errors"], pipe.stats["deduplicated"]) == (3, 2, 1)
    assert [r.n for r in sink.records] == [0, 2, 4]
    pipe.shutdown()


def test_full_queue_drops_and_counts_never_blocks(tt_warnings):
    sink = Hanging()
    pipe = Pipeline(settings(queue_size=5, batch_size=1), [sink])
    start = time.perf_counter()
    for i in range(50):
        pipe.submit(Item(i))
    assert time.perf_counter() - start < 0.5
    # Dropped at the full queue, or (when the worker got to them) at the hanging sink's full buffer; counted either way.
    assert pipe.stats["dropped"] + pipe.sink_stats()["Hanging"]["dropped"] >= 35
    assert any("queue full" in m or "not keeping up" in m for m in tt_warnings())
    assert pipe.flush(0.2) is False  # the sink hangs: flush gives up in time
    sink.release.set()
    pipe.shutdown(2)


def test_failing_sink_is_logged_once_counted_and_others_still_get_records(caplog):
    good, bad = Collect(), Broken()
    pipe = Pipeline(settings(flush_interval=0.01), [bad, good])
    flushed = []
    for i in range(3):
        pipe.submit(Item(i))
        flushed.append(pipe.flush(5))
    assert len(good.records) == 3
    assert pipe.stats["sink_errors"] >= 3
    logged = [r for r in caplog.records if "Broken" in r.getMessage() and "failed" in r.getMessage()]
    assert len(logged) == 1
    assert flushed == [False] * 3  # each flush waited for the retries and saw its record lost to the broken sink
    assert pipe.sink_stats()["Broken"]["failed"] == 3 and pipe.sink_stats()["Collect"]["written"] == 3
    pipe.shutdown(1)


def test_transient_sink_failure_is_retried_and_nothing_lost():
    flaky = Broken(failures=1)
    pipe = Pipeline(settings(flush_interval=0.01), [flaky])
    pipe.submit(Item(1))
    assert pipe.flush(5) is True  # first write failed, the retry at flush succeeded
    assert [r.n for r in flaky.records] == [1]
    assert pipe.stats["lost"] == 0
    pipe.shutdown()


def test_shutdown_is_bounded_by_a_hanging_sink():
    sink = Hanging()
    pipe = Pipeline(settings(shutdown_timeout=0.3), [sink])
    pipe.submit(Item(1))
    start = time.perf_counter()
    assert pipe.shutdown() is False
    assert time.perf_counter() - start < 2
    sink.release.set()


def test_flush_before_anything_and_after_shutdown():
    assert tokentrail.flush(1) is True
    pipe = Pipeline(settings(), [Collect()])
    assert pipe.flush(1) is True
    pipe.shutdown()
    assert pipe.shutdown() is True  # idempotent


def test_finish_error_is_counted_not_raised(caplog):
    class Bad(Item):
        def build(self, settings):
            raise RuntimeError("cannot build")

    sink = Collect()
    pipe = Pipeline(settings(), [sink])
    pipe.submit(Bad(0))
    pipe.submit(Item(1))
    assert pipe.flush(5) is False
    assert [r.n for r in sink.records] == [1]
    assert pipe.stats["finish_errors"] == 1
    pipe.shutdown()


def test_each_sink_has_its_own_lane_a_base_exception_costs_one_batch_and_stats_are_per_sink():
    import asyncio

    class Cancelling:
        def __init__(self):
            self.calls, self.records = 0, []

        def export(self, records):
            self.calls += 1
            if self.calls == 1:
                raise asyncio.CancelledError()  # a BaseException: once, then the retry succeeds
            self.records.extend(records)

    good, odd, hang = Collect(), Cancelling(), Hanging()
    pipe = Pipeline(settings(flush_interval=0.01, shutdown_timeout=0.5), [hang, odd, good])
    for i in range(5):
        pipe.submit(Item(i))
    assert pipe.flush(0.5) is False  # the hanging sink has not written: flush waits for every sink, bounded
    assert len(good.records) == 5 and len(odd.records) == 5
    stats = pipe.sink_stats()
    assert stats["Collect"]["written"] == 5 and stats["Cancelling"] == {**stats["Cancelling"], "written": 5, "errors": 1, "failed": 0}
    assert stats["Hanging"]["pending"] == 5
    assert pipe.flush(2, sinks=False) is True  # a call log's wait: not on the configured sinks
    assert pipe.shutdown() is False  # bounded; the hanging sink's 5 are counted and reported
    assert pipe.sink_stats()["Hanging"]["failed"] == 5
    hang.release.set()


def test_shutdown_reports_what_it_leaves_unwritten_in_one_line(caplog):
    sink = Hanging()
    pipe = Pipeline(settings(shutdown_timeout=0.2), [sink])
    for i in range(7):
        pipe.submit(Item(i))
    assert pipe.shutdown() is False
    lines = [r.getMessage() for r in caplog.records if "shutdown_timeout" in r.getMessage()]
    assert len(lines) == 1 and "7 records for Hanging" in lines[0] and "lost" in lines[0]
    sink.release.set()


def test_a_full_sink_buffer_drops_and_counts_for_that_sink_only():
    sink, good = Hanging(), Collect()
    pipe = Pipeline(settings(queue_size=10, batch_size=1, flush_interval=0.01), [sink, good])
    for i in range(40):
        pipe.submit(Item(i))
        time.sleep(0.001)
    pipe.flush(2, sinks=False)
    deadline = time.monotonic() + 2
    while pipe.sink_stats()["Collect"]["written"] + pipe.stats["dropped"] < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = pipe.sink_stats()
    assert stats["Hanging"]["dropped"] > 0 and stats["Collect"]["dropped"] == 0
    assert stats["Collect"]["written"] + pipe.stats["dropped"] == 40
    sink.release.set()
    pipe.shutdown(1)
