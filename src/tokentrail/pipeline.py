"""The pipeline: a bounded queue the calling thread appends to, and one worker thread.

The calling thread's whole cost is `Pipeline.submit`: a length check and a
`deque.append` (both atomic under the GIL, no lock). The worker wakes every
half `flush_interval` (or at once when `flush()` asks or a batch is full), turns
each pending item into records (`item.build(settings)`), runs the
processors (pricing, budget counters), and hands each sink its share of the
batch.

- Full queue: the item is dropped and counted; the application never waits.
- Each sink has its own bounded buffer (`queue_size` records) and thread (a
  "lane"): a slow, hanging or failing sink never delays another, the worker or
  the application. A failed batch is retried by its lane (`RETRIES` attempts
  in all, backing off from `flush_interval`), then counted `failed`; a full
  buffer drops and counts (`dropped`); records a store refuses after splitting
  the batch are counted `rejected`. Anything a sink raises, `BaseException`s
  included, is caught. Counters per sink: `sink_stats()`; a store with
  `write_stats(rows)` gets this process's losses noted in it (shown by
  `tokentrail doctor`). Call logs (`tracking()`) are in-memory and filled by
  the worker directly.
- `flush(timeout)` puts a marker in the queue; the worker, passing it, puts a
  mark in each busy sink's buffer, and `flush` waits for all of them.
  `shutdown()` flushes within `shutdown_timeout` and stops the threads. Both
  are bounded: a dead sink never hangs the process. What shutdown leaves
  unwritten is counted and reported in one line (how many, for which sink).
- Fork: the worker and the lanes are paused between batches around `fork()`
  (bounded), so the child inherits no lock they held; the child starts with
  an empty queue and buffers, fresh locks and no threads (they start on its
  first record); items queued before the fork belong to the parent.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any, Callable, Sequence

from . import log
from .config import Settings
from .errors import RecordsRejected
from .sinks.memory import InMemorySink

__all__ = ["Pipeline", "Route", "sink_name", "RETRIES"]

RETRIES = 3  # export attempts per batch and sink
MAX_BACKOFF_S = 30.0
IDLE_S = 30.0  # the thread of a sink given to tracking(sink) ends after this long without work
FORK_WAIT_S = 1.0  # how long fork() may wait for the worker and the sinks to finish the batch in hand


class Route:
    """Where a call made inside `tracking()` goes: its call logs, and either a
    replacement sink or the default sinks as well."""

    __slots__ = ("logs", "sink")

    def __init__(self, logs: tuple[Any, ...], sink: Any = None) -> None:
        self.logs = logs
        self.sink = sink


class _Marker:
    __slots__ = ("event", "lanes")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.lanes: list[tuple[Any, threading.Event]] = []  # the sinks' marks, set when they pass them


_ASYNC_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                                                          "SIGALRM") if hasattr(signal, name))


def _block_signals() -> None:
    """tokentrail's threads take no asynchronous signal, so the kernel hands them to the application's threads.
    Python runs signal handlers on the main thread only, and a SIGTERM that lands on another thread does not
    wake a main thread blocked in a wait (a Pool worker waiting for a task never ran its handler and never
    ended). Threads a sink starts from ours inherit the mask."""
    if hasattr(signal, "pthread_sigmask"):
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
        except (OSError, ValueError):
            pass


class _Wake(SimpleQueue):
    """The worker's wake-up call, safe to ring from a signal handler: `SimpleQueue.put` is reentrant, where
    `threading.Event.set` would deadlock on its own lock if the handler interrupted another `set()`."""

    def set(self) -> None:
        self.put(None)

    def wait(self, timeout: float) -> None:
        try:
            self.get(timeout=timeout)
        except Empty:
            pass

    def clear(self) -> None:
        try:
            while True:
                self.get_nowait()
        except Empty:
            pass


def _run_id() -> str:
    """Names this process's counters in a store: host, pid and start time."""
    host = os.uname().nodename if hasattr(os, "uname") else ""
    return f"{host}:{os.getpid()}:{time.time_ns() // 1_000_000:x}"


def sink_name(sink: Any) -> str:
    """How a sink is named in stats, stored notes and messages: a store's URL, `jsonl:PATH`, an
    exporter's kind, else its class name."""
    url = getattr(sink, "url", None)
    if isinstance(url, str):
        return url
    kind = getattr(sink, "kind", None)
    path = getattr(sink, "path", None)
    if isinstance(kind, str):
        return f"{kind}:{path}" if path is not None else kind
    return type(sink).__name__


_MEMORY_EXPORT = InMemorySink.export
SINK_STATS = ("written", "dropped", "failed", "rejected", "errors")


class _Mark:
    """A flush's mark in one sink's buffer: set when the sink has passed it."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class _Lane:
    """One sink's bounded buffer and the thread that writes it.

    The build worker `put`s batches; the lane's thread exports them in order,
    retrying a failed batch (up to `RETRIES` attempts, backing off from
    `flush_interval`; at once while a flush or shutdown waits), then counting
    it `failed`. A full buffer drops the newest records (`dropped`); a sink
    that says some records can never be written (`RecordsRejected`) has them
    counted `rejected`. Anything a sink raises — `BaseException`s such as
    `asyncio.CancelledError` or `SystemExit` too — stops that batch only.
    """

    def __init__(self, pipeline: Pipeline, sink: Any, name: str, persistent: bool) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.name = name
        self.persistent = persistent  # a configured sink: its thread waits for work for good
        self.limit = max(pipeline.settings.queue_size, 1)
        self.stats = dict.fromkeys(SINK_STATS, 0)
        self.last_error: str | None = None
        self.noted = 0  # the pipeline's loss generation this lane last wrote to its store
        self.reset()

    def reset(self) -> None:
        """Fresh locks, an empty buffer and no thread (at start, and in a forked child)."""
        self.cond = threading.Condition(threading.Lock())
        self.busy = threading.Lock()  # held while exporting: a fork waits for it (bounded)
        self.items: deque[Any] = deque()
        self.queued = 0  # records waiting in `items`
        self.inflight = 0  # records being exported
        self.marks = 0  # flush marks waiting in `items`
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.export_started: float | None = None

    # -- build worker ------------------------------------------------------------------------------

    def put(self, records: list[Any]) -> None:
        dropped = 0
        with self.cond:
            room = self.limit - self.queued
            if len(records) > room:
                dropped = len(records) - max(room, 0)
                records = records[:max(room, 0)]
            if records:
                self.items.append(records)
                self.queued += len(records)
                self._ensure_thread()
                self.cond.notify()
        if dropped:
            self.pipeline.count(self, "dropped", dropped)
            log.warn_once(f"sink.full.{self.name}", "tokentrail: %s is not keeping up: its buffer of %d records is full; "
                          "dropping its records (counted) until it catches up", self.name, self.limit)

    def mark(self) -> threading.Event | None:
        """A flush mark behind what this sink has now; None when it has nothing to write."""
        with self.cond:
            if not self.items and not self.inflight:
                return None
            mark = _Mark()
            self.items.append(mark)
            self.marks += 1
            self._ensure_thread()
            self.cond.notify_all()  # a retry backing off goes at once
            return mark.event

    def _ensure_thread(self) -> None:  # under self.cond
        if self.thread is None and not self.stopping:
            thread = threading.Thread(target=self._run, name=f"tokentrail-sink-{self.name}"[:60], daemon=True)
            self.thread = thread
            thread.start()

    # Reads without the lock (ints and a reference, consistent under the GIL): a signal handler that flushes
    # may run on a thread interrupted while holding it.
    def idle(self) -> bool:
        return self.thread is None and not self.items and not self.inflight

    def pending(self) -> int:
        return self.queued + self.inflight

    # -- the lane's thread -------------------------------------------------------------------------

    def _run(self) -> None:
        _block_signals()
        items, cond = self.items, self.cond
        while True:
            with cond:
                while not items:
                    if self.stopping:
                        break
                    cond.wait(None if self.persistent else IDLE_S)
                    if not items and not self.persistent and not self.stopping:
                        self.thread = None  # idle: the next put starts a thread again
                        return
                if not items:  # stopping, all written: note the losses a last time
                    last_note = self.noted != self.pipeline.loss_generation
                    break
                item = items.popleft()
                if type(item) is _Mark:
                    self.marks -= 1
                    item.event.set()
                    continue
                self.queued -= len(item)
                self.inflight = len(item)
            try:
                self._write(item)
            finally:
                with cond:
                    self.inflight = 0
            if self.noted != self.pipeline.loss_generation and callable(getattr(self.sink, "write_stats", None)):
                self.pipeline.note_losses(self)
        try:
            if last_note and callable(getattr(self.sink, "write_stats", None)):
                self.pipeline.note_losses(self)
        finally:
            with cond:
                self.thread = None

    def _write(self, records: list[Any]) -> None:
        attempt = 0
        while True:
            error: BaseException | None = None
            with self.busy:
                self.export_started = time.monotonic()
                try:
                    self.sink.export(records)
                except BaseException as exc:  # noqa: BLE001 - nothing a sink raises may stop the lane
                    error = exc
                finally:
                    self.export_started = None
            if error is None:
                self.pipeline.count(self, "written", len(records))
                return
            if isinstance(error, RecordsRejected):
                rejected = min(max(error.count, 0), len(records))
                self.pipeline.count(self, "written", len(records) - rejected)
                self.pipeline.count(self, "rejected", rejected)
                cause = error.cause if error.cause is not None else error
                self.last_error = f"{type(cause).__name__}: {cause}"
                log.error_once(f"sink.rejected.{self.name}", f"tokentrail: {self.name} refused {rejected} of "
                               f"{len(records)} records ({self.last_error}); the others were written, the refused "
                               "ones are counted 'rejected'")
                return
            attempt += 1
            self.last_error = f"{type(error).__name__}: {error}"
            self.pipeline.count(self, "errors", 1)
            if attempt >= RETRIES:
                self.pipeline.count(self, "failed", len(records))
                log.error_once(f"sink.lost.{self.name}", f"tokentrail: gave up on {len(records)} records for "
                               f"{self.name} after {RETRIES} attempts ({self.last_error}); losses are counted per sink")
                return
            log.error_once(f"sink.{self.name}", f"tokentrail: writing to {self.name} failed; will retry", error)
            delay = min(self.pipeline.settings.flush_interval * 2 ** (attempt - 1), MAX_BACKOFF_S)
            with self.cond:
                self.cond.wait_for(lambda: self.marks or self.stopping, delay)

    def stop(self) -> None:
        """Let the thread write what it has, then end."""
        self.stopping = True
        if self.cond.acquire(timeout=1.0):  # bounded: see idle()
            try:
                self.cond.notify_all()
            finally:
                self.cond.release()

    def join(self, deadline: float) -> bool:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            return not thread.is_alive()
        return thread is None


class Pipeline:
    def __init__(self, settings: Settings, sinks: Sequence[Any] = (), processors: Sequence[Callable[[Any], None]] = ()) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.processors = list(processors)
        self.override: Any = None  # set by track(sink): replaces the default sinks
        self._max = settings.queue_size
        self._batch = settings.batch_size
        self._reset_runtime()
        self.stats: dict[str, int] = dict.fromkeys(("processed", "written", "dropped", "sink_errors", "lost", "finish_errors", "deduplicated", "rejected"), 0)
        self._stats_lock = threading.Lock()
        self.loss_generation = 0  # rises with every loss counted: a store lane notes the losses when it moved
        self._run_id = _run_id()
        self._lanes: dict[int, _Lane] = {}
        names: set[str] = set()
        for sink in self.sinks:
            if id(sink) in self._lanes or getattr(type(sink), "export", None) is _MEMORY_EXPORT:
                continue
            name = base = sink_name(sink)
            n = 1
            while name in names:
                n += 1
                name = f"{base}#{n}"
            names.add(name)
            self._lanes[id(sink)] = _Lane(self, sink, name, persistent=True)
        self._flushed_losses = self._losses()  # losses as of the last flush()

    def _reset_runtime(self) -> None:
        self._queue: deque[Any] = deque()
        self._wake = _Wake()
        self._start_lock = threading.Lock()
        self._busy = threading.Lock()  # held while the worker builds a batch: a fork waits for it (bounded)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._held: list[Any] = []  # the locks before_fork() took

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
        # Bounded: a signal handler that flushes may run on a thread that holds this lock.
        if not self._start_lock.acquire(timeout=1.0):
            return
        try:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="tokentrail-pipeline", daemon=True)
            self._thread = thread
            thread.start()
        finally:
            self._start_lock.release()

    def flush(self, timeout: float | None = None, *, sinks: bool = True) -> bool:
        """Wait until everything submitted before this call is written.

        False when `timeout` passed first, or when any record submitted since
        the previous flush was dropped, failed to build, or could not be written.
        With `sinks=False` only the records' way to call logs and to sinks given
        to `tracking(sink)` / `track(sink)` is waited for, not the configured
        sinks (so a slow store never delays leaving a `tracking()` block).
        """
        if self._on_own_thread():
            return False  # a sink flushing from inside the pipeline would wait on itself
        if not self._queue and not self._busy.locked() and all(lane.idle() or lane.pending() == 0 and not lane.items
                                                                 for lane in list(self._lanes.values())):
            # Nothing queued, nothing being built, nothing in any sink's hands: done (no round trip).
            losses = self._losses()
            clean = losses == self._flushed_losses
            if sinks:
                self._flushed_losses = losses
            return clean
        deadline = None if timeout is None else time.monotonic() + timeout
        thread = self._thread
        if self._stopping and (thread is None or not thread.is_alive()):
            return not self._queue and all(lane.idle() for lane in list(self._lanes.values()))
        marker = _Marker()
        self._queue.append(marker)
        if thread is None:
            self._start()
        self._wake.set()
        done = marker.event.wait(timeout)
        if done:
            for lane, event in marker.lanes:
                if not sinks and lane.persistent:
                    continue
                if not event.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    done = False
                    break
        losses = self._losses()
        clean = losses == self._flushed_losses
        if sinks:  # a call log's wait does not take a loss from the next full flush's answer
            self._flushed_losses = losses
        return done and clean

    def _on_own_thread(self) -> bool:
        current = threading.current_thread()
        return current is self._thread or any(lane.thread is current for lane in list(self._lanes.values()))

    def _losses(self) -> tuple[int, int, int]:
        return self.stats["dropped"], self.stats["lost"], self.stats["finish_errors"]

    def count(self, lane: _Lane, key: str, n: int) -> None:
        """Add to a sink's counter and the pipeline's totals (lane threads)."""
        if n <= 0:
            return
        locked = self._stats_lock.acquire(timeout=1.0)  # bounded: a signal handler may count on an interrupted holder
        try:
            lane.stats[key] += n
            if key == "written":
                self.stats["written"] += n
            elif key == "errors":
                self.stats["sink_errors"] += n
            else:  # dropped, failed, rejected: records this sink will never have
                self.stats["lost"] += n
                if key == "rejected":
                    self.stats["rejected"] += n
                self.loss_generation += 1
        finally:
            if locked:
                self._stats_lock.release()

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per sink: `written`, `dropped` (its buffer was full), `failed` (given up after retries or at exit),
        `rejected` (records the sink refused), `errors` (failed export attempts), `pending`, `last_error`."""
        out: dict[str, dict[str, Any]] = {}
        for lane in list(self._lanes.values()):
            with self._stats_lock:
                row: dict[str, Any] = dict(lane.stats)
            row["pending"] = lane.pending()
            row["last_error"] = lane.last_error
            out[lane.name] = row
        return out

    def loss_rows(self) -> list[dict[str, Any]]:
        """This process's losses, one row per sink that lost records (and `(queue)` for calls never built), to store."""
        rows = []
        with self._stats_lock:
            queue = {"dropped": self.stats["dropped"], "failed": self.stats["finish_errors"], "rejected": 0, "written": 0}
            entries = [("(queue)", queue)] + [(lane.name, dict(lane.stats)) for lane in list(self._lanes.values())]
        for name, counts in entries:
            if counts["dropped"] or counts["failed"] or counts["rejected"]:
                rows.append({"run_id": self._run_id, "pid": os.getpid(), "sink": name, "written": counts["written"],
                             "dropped": counts["dropped"], "failed": counts["failed"], "rejected": counts["rejected"]})
        return rows

    def note_losses(self, lane: _Lane) -> None:
        """Write this process's loss counts to `lane`'s store (its `write_stats(rows)`), from the lane's thread."""
        generation = self.loss_generation
        rows = self.loss_rows()
        try:
            if rows:
                lane.sink.write_stats(rows)
            lane.noted = generation
        except BaseException as exc:  # noqa: BLE001
            lane.noted = generation  # not again until something else is lost
            log.error_once(f"sink.stats.{lane.name}", f"tokentrail: could not note losses in {lane.name}", exc)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within `timeout` (default `shutdown_timeout`), stop the worker and the sinks' threads, close the sinks.

        Records still not written when the time is up are counted `failed` for
        their sink and reported in one line on the `tokentrail` logger (stderr
        when the application configured no logging): how many, and where to.
        """
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        busy = self._thread is not None or self._queue or not all(lane.idle() for lane in list(self._lanes.values()))
        ok = self.flush(timeout) if busy else True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()
        stuck = [lane for lane in lanes if not lane.join(deadline)]
        unwritten = self._count_unwritten(stuck)
        closed: set[int] = set()
        for sink in (*self.sinks, self.override):
            lane = self._lanes.get(id(sink))
            if sink is None or id(sink) in closed or (lane is not None and lane in stuck):
                continue  # a sink still writing is not closed under its thread
            closed.add(id(sink))
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001
                    log.error_once(f"sink.close.{type(sink).__name__}", f"tokentrail: closing {sink!r} failed", exc)
        return ok and not unwritten

    def _count_unwritten(self, stuck: list[_Lane]) -> int:
        """Count and report (one line) what shutdown leaves unwritten: records in sinks still busy, and calls
        never built (those count for each default sink)."""
        unbuilt = sum(1 for item in list(self._queue) if type(item) is not _Marker)
        per_sink: dict[str, int] = {}
        reasons: dict[str, str] = {}
        for lane in stuck:
            n = lane.pending()
            if n:
                per_sink[lane.name] = n
                self.count(lane, "failed", n)
                started = lane.export_started
                reasons[lane.name] = (f"an export to it was still running after {time.monotonic() - started:.1f} s"
                                      if started is not None else "it was still retrying")
                if lane.last_error:
                    reasons[lane.name] += f"; last error: {lane.last_error}"
        if unbuilt:
            locked = self._stats_lock.acquire(timeout=1.0)  # bounded, as in count()
            self.stats["lost"] += unbuilt
            self.loss_generation += 1
            if locked:
                self._stats_lock.release()
            for sink in [self.override] if self.override is not None else self.sinks:
                lane = self._lanes.get(id(sink))
                name = lane.name if lane is not None else sink_name(sink)
                per_sink[name] = per_sink.get(name, 0) + unbuilt
                reasons.setdefault(name, "the pipeline had not processed them yet")
        if per_sink:
            where = "; ".join(f"{n:,} record{'' if n == 1 else 's'} for {name} ({reasons[name]})" for name, n in per_sink.items())
            log.logger.error("tokentrail: shutdown_timeout (%.1f s) ran out before everything was written; lost: %s",
                             self.settings.shutdown_timeout, where)
        return sum(per_sink.values())

    # -- fork ----------------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Wait (at most `FORK_WAIT_S` in all) until the worker and the sinks' threads are between batches, and
        hold them there through the fork: the child then inherits no lock they held (ours, the price book's,
        the SQLite library's own mutexes). A sink stuck in an export for longer is not waited for."""
        deadline = time.monotonic() + FORK_WAIT_S
        held = []
        current = threading.current_thread()
        if self._thread is not None and self._thread is not current and self._busy.acquire(timeout=FORK_WAIT_S):
            held.append(self._busy)
        for lane in list(self._lanes.values()):
            started = lane.export_started
            if lane.thread is current or (started is not None and time.monotonic() - started > FORK_WAIT_S):
                continue
            if lane.busy.acquire(timeout=max(0.0, deadline - time.monotonic())):
                held.append(lane.busy)
        self._held = held

    def after_fork_in_parent(self) -> None:
        held, self._held = self._held, []
        for lock in held:
            lock.release()

    def after_fork_in_child(self) -> None:
        """The child starts with an empty queue, empty sink buffers, fresh locks, no threads (they start on its
        first record) and counters of its own; what was queued before the fork belongs to the parent."""
        self._reset_runtime()
        self._stats_lock = threading.Lock()
        for key in self.stats:
            self.stats[key] = 0
        self.loss_generation = 0
        self._flushed_losses = self._losses()
        self._run_id = _run_id()
        for lane in list(self._lanes.values()):
            lane.reset()
            lane.stats = dict.fromkeys(SINK_STATS, 0)
            lane.last_error, lane.noted = None, 0
        owners = [getattr(process, "__self__", None) for process in self.processors]
        for obj in (*self.sinks, *owners):
            hook = getattr(obj, "after_fork", None)
            if callable(hook):
                try:
                    hook()
                except Exception as exc:  # noqa: BLE001
                    log.error_once("fork.hook", f"tokentrail: {obj!r}.after_fork() failed", exc)

    def pending(self) -> int:
        """Calls waiting to be built (the sinks' own buffers are in `sink_stats()`)."""
        return len(self._queue)

    # -- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        # Waking every half interval bounds how long a call waits to be written by `flush_interval` (so what
        # SIGKILL can take), as long as building and writing half an interval's calls takes under half of it.
        _block_signals()
        queue, interval = self._queue, self.settings.flush_interval / 2
        while True:
            if not queue:
                if self._stopping:
                    return
                self._wake.wait(interval)
                self._wake.clear()
                self._prune()
                continue
            items: list[Any] = []
            marker = None
            with self._busy:  # taken before the items leave the queue: flush() sees them in one place or the other
                while queue and len(items) < self._batch:
                    item = queue.popleft()
                    if type(item) is _Marker:
                        marker = item
                        break
                    items.append(item)
                if items:
                    try:
                        self._process(items)
                    except BaseException as exc:  # noqa: BLE001 - the worker must survive anything
                        log.error_once("pipeline", "tokentrail: the pipeline failed on a batch", exc)
            if marker is not None:
                marker.lanes = [(lane, event) for lane in list(self._lanes.values()) if (event := lane.mark()) is not None]
                marker.event.set()

    def _process(self, items: list[Any]) -> None:
        settings, processors = self.settings, self.processors
        default_targets = [self.override] if self.override is not None else self.sinks
        per_sink: dict[int, tuple[Any, list[Any]]] = {}
        default_records: list[Any] = []
        processed = 0
        for item in items:
            try:
                record = item.build(settings)
                if record is None:  # a framework's call a lower layer recorded already
                    self.stats["deduplicated"] += 1
                    continue
                for process in processors:
                    process(record)
            except BaseException as exc:  # noqa: BLE001 - whatever building raises costs one record only
                self.stats["finish_errors"] += 1
                log.error_once(f"finish.{type(item).__name__}", "tokentrail: could not build a record", exc)
                continue
            processed += 1  # counted into the stats once per batch
            route = item.route
            if route is None:
                default_records.append(record)
                continue
            targets = [*route.logs, route.sink] if route.sink is not None else [*route.logs, *default_targets]
            for sink in targets:
                per_sink.setdefault(id(sink), (sink, []))[1].append(record)
        self.stats["processed"] += processed
        if default_records:
            for sink in default_targets:
                entry = per_sink.get(id(sink))
                if entry is None:
                    per_sink[id(sink)] = (sink, default_records)
                else:
                    entry[1].extend(default_records)
        for sink, records in per_sink.values():
            self._deliver(sink, records)

    def _prune(self) -> None:
        """Forget the idle lanes of sinks that are not configured (`tracking(sink)` blocks that ended)."""
        for key, lane in list(self._lanes.items()):
            if not lane.persistent and lane.sink is not self.override and lane.idle():
                del self._lanes[key]

    def _deliver(self, sink: Any, records: list[Any]) -> None:
        """Hand a sink its records: call logs (in-memory sinks) at once, every other sink through its own lane."""
        if getattr(type(sink), "export", None) is _MEMORY_EXPORT:
            try:
                sink.export(records)
                with self._stats_lock:
                    self.stats["written"] += len(records)
            except BaseException as exc:  # noqa: BLE001
                with self._stats_lock:
                    self.stats["lost"] += len(records)
                    self.loss_generation += 1
                log.error_once("sink.memory", "tokentrail: a call log could not take its records", exc)
            return
        lane = self._lanes.get(id(sink))
        if lane is None:
            lane = self._lanes[id(sink)] = _Lane(self, sink, sink_name(sink), persistent=False)
        lane.put(records)
