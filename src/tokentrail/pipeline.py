"""The pipeline: a bounded queue the calling thread appends to, and one worker thread.

The calling thread's whole cost is `Pipeline.submit`: a length check and a
`deque.append` (both atomic under the GIL, no lock). The worker wakes every
`flush_interval` (or at once when `flush()` asks or a batch is full), turns
each pending item into records (`item.build(settings)`), runs the
processors (pricing, budget counters), and hands each sink its share of the
batch.

- Full queue: the item is dropped and counted; the application never waits.
- A sink that raises is logged once per kind and counted; the other sinks
  still get the batch, and the failed batch is retried on the next cycles (up
  to `RETRIES` times) before it is counted as lost.
- `flush(timeout)` puts a marker in the queue and waits for the worker to pass
  it; `shutdown()` flushes within `shutdown_timeout` and stops the worker. Both
  are bounded: a dead sink never hangs the process.
- After `os.fork()` the child starts with an empty queue and no worker (one
  starts on its first record); items queued before the fork belong to the parent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from . import log
from .config import Settings

__all__ = ["Pipeline", "Route"]

RETRIES = 3


class Route:
    """Where a call made inside `tracking()` goes: its call logs, and either a
    replacement sink or the default sinks as well."""

    __slots__ = ("logs", "sink")

    def __init__(self, logs: tuple[Any, ...], sink: Any = None) -> None:
        self.logs = logs
        self.sink = sink


class _Marker:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Pipeline:
    def __init__(self, settings: Settings, sinks: Sequence[Any] = (), processors: Sequence[Callable[[Any], None]] = ()) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.processors = list(processors)
        self.override: Any = None  # set by track(sink): replaces the default sinks
        self._max = settings.queue_size
        self._batch = settings.batch_size
        self._reset_runtime()
        self.stats: dict[str, int] = dict.fromkeys(("processed", "written", "dropped", "sink_errors", "lost", "finish_errors", "deduplicated"), 0)
        self._flushed_losses = self._losses()  # losses as of the last flush()

    def _reset_runtime(self) -> None:
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._retry: list[tuple[Any, list[Any], int, float]] = []  # (sink, records, attempts so far, due)

    # -- calling thread ------------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        queue = self._queue
        if len(queue) >= self._max:
            self.stats["dropped"] += 1
            log.warn_once("queue.full", "tokentrail: queue full (%d); dropping records until the worker catches up", self._max)
            return
        queue.append(item)
        if self._thread is None:
            self._start()
        elif len(queue) == self._batch:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="tokentrail-pipeline", daemon=True)
            thread.start()
            self._thread = thread

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is written.

        False when `timeout` passed first, or when any record submitted since
        the previous flush was dropped, failed to build, or could not be written.
        """
        if threading.current_thread() is self._thread:
            return False  # a sink flushing from inside the worker would wait on itself
        thread = self._thread
        if self._stopping and (thread is None or not thread.is_alive()):
            return not self._queue and not self._retry
        marker = _Marker()
        self._queue.append(marker)
        if thread is None:
            self._start()
        self._wake.set()
        done = marker.event.wait(timeout)
        losses = self._losses()
        clean = losses == self._flushed_losses
        self._flushed_losses = losses
        return done and clean and not self._retry

    def _losses(self) -> tuple[int, int, int]:
        return self.stats["dropped"], self.stats["lost"], self.stats["finish_errors"]

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within `timeout` (default `shutdown_timeout`), stop the worker, close the sinks."""
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        ok = self.flush(timeout) if self._thread is not None or self._queue else True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        for sink in (*self.sinks, self.override):
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001
                    log.error_once(f"sink.close.{type(sink).__name__}", f"tokentrail: closing {sink!r} failed", exc)
        return ok

    def after_fork_in_child(self) -> None:
        self._reset_runtime()
        for sink in self.sinks:
            hook = getattr(sink, "after_fork", None)
            if callable(hook):
                hook()

    def pending(self) -> int:
        return len(self._queue)

    # -- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        queue, interval = self._queue, self.settings.flush_interval
        while True:
            if not queue:
                if self._retry:
                    self._deliver_retries(force=self._stopping)
                if self._stopping:
                    return
                self._wake.wait(interval)
                self._wake.clear()
                continue
            items: list[Any] = []
            marker = None
            while queue and len(items) < self._batch:
                item = queue.popleft()
                if type(item) is _Marker:
                    marker = item
                    break
                items.append(item)
            if items:
                try:
                    self._process(items)
                except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                    log.error_once("pipeline", "tokentrail: the pipeline failed on a batch", exc)
            if marker is not None:
                if self._retry:
                    self._deliver_retries(force=True)
                marker.event.set()

    def _process(self, items: list[Any]) -> None:
        settings, processors = self.settings, self.processors
        default_targets = [self.override] if self.override is not None else self.sinks
        per_sink: dict[int, tuple[Any, list[Any]]] = {}
        default_records: list[Any] = []
        for item in items:
            try:
                record = item.build(settings)
                if record is None:  # a framework's call a lower layer recorded already
                    self.stats["deduplicated"] += 1
                    continue
                for process in processors:
                    process(record)
            except Exception as exc:  # noqa: BLE001
                self.stats["finish_errors"] += 1
                log.error_once(f"finish.{type(item).__name__}", "tokentrail: could not build a record", exc)
                continue
            self.stats["processed"] += 1
            route = item.route
            if route is None:
                default_records.append(record)
                continue
            targets = [*route.logs, route.sink] if route.sink is not None else [*route.logs, *default_targets]
            for sink in targets:
                per_sink.setdefault(id(sink), (sink, []))[1].append(record)
        if default_records:
            for sink in default_targets:
                entry = per_sink.get(id(sink))
                if entry is None:
                    per_sink[id(sink)] = (sink, default_records)
                else:
                    entry[1].extend(default_records)
        for sink, records in per_sink.values():
            self._export(sink, records, 0)

    def _export(self, sink: Any, records: list[Any], attempts: int) -> None:
        try:
            sink.export(records)
            self.stats["written"] += len(records)
        except Exception as exc:  # noqa: BLE001 - a sink must never stop the others
            self.stats["sink_errors"] += 1
            log.error_once(f"sink.{type(sink).__name__}", f"tokentrail: writing to {sink!r} failed; will retry", exc)
            if attempts + 1 < RETRIES:
                due = time.monotonic() + self.settings.flush_interval * 2**attempts
                self._retry.append((sink, records, attempts + 1, due))
            else:
                self.stats["lost"] += len(records)
                log.error_once(f"sink.lost.{type(sink).__name__}", f"tokentrail: gave up writing {len(records)} records to {sink!r}")

    def _deliver_retries(self, force: bool = False) -> None:
        now = time.monotonic()
        retry, self._retry = self._retry, []
        for entry in retry:
            sink, records, attempts, due = entry
            if force or now >= due:
                self._export(sink, records, attempts)
            else:
                self._retry.append(entry)
