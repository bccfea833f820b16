"""The hot path: the recording switch, routes, `tracking()` / `CallLog`, submit, and the budget check.

Everything a call reads when it starts or ends lives here, so that the
adapters and the manual API depend on this small module and not on `init()`
and what it builds (`tracker.py`, the composition root, switches this state
with `activate()` / `deactivate()`).

Before `init()` nothing is recorded, except inside `tracking()` blocks and
after `track(sink)`: a library may call the manual API without forcing its
users to store anything. After `init()` every call is recorded until
`untrack()`.

`tracking()` is context-local (a contextvar), like `attributes()`: concurrent
requests in a web server each get a `CallLog` of their own calls only.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from contextvars import ContextVar
from typing import Any

from . import log
from .budget import BudgetBook
from .config import load_settings
from .context import reset_quietly
from .errors import BudgetExceeded
from .pipeline import Pipeline, Route
from . import estimate, pricing, semconv
from .sinks.memory import InMemorySink

__all__ = ["route_if_recording", "check_budget", "budgets_active", "submit", "flush", "track", "untrack",
           "is_tracking", "get_active_sink", "tracking", "CallLog", "activate", "deactivate", "current_pipeline",
           "reset", "prepare_worker", "route_var", "State", "install_signal_handlers", "restore_signal_handlers"]

_route: ContextVar[Route | None] = ContextVar("tokentrail.route", default=None)


class _State:
    pipeline: Pipeline | None = None
    budgets: BudgetBook | None = None  # only when a budget can block a call
    default_sink: Any = None  # what get_active_sink() names when nothing overrides it
    recording = False  # the global switch: init()/track() on, untrack() off
    prepared = False  # what the worker needs is imported
    lock = threading.RLock()


# The hot path's two reads, public for the wrappers that inline them (sdkcall): the route of a
# `tracking()` block, and the switch. Only this module writes them.
route_var = _route
State = _State


# -- switched by init() / shutdown() ------------------------------------------------------------------


def activate(pipeline: Pipeline, budgets: BudgetBook | None, default_sink: Any) -> Pipeline | None:
    """Make `pipeline` the one calls go to and turn recording on; returns the pipeline it replaces."""
    with _State.lock:
        old = _State.pipeline
        if old is not None:
            pipeline.override = old.override
        _State.pipeline = pipeline
        _State.budgets = budgets if budgets is not None and budgets.blocking else None
        _State.default_sink = default_sink
        _State.recording = True
    return old


def deactivate() -> Pipeline | None:
    """Stop recording and forget the pipeline (returned, for the caller to shut down)."""
    with _State.lock:
        pipeline = _State.pipeline
        _State.pipeline = _State.budgets = _State.default_sink = None
        _State.recording = False
    return pipeline


def prepare_worker() -> None:
    """Import (on this, the calling thread) everything the worker will use: it imports nothing itself."""
    if not _State.prepared:
        pricing.prepare()
        semconv.prepare()
        estimate.prepare()
        _State.prepared = True


def reset() -> None:
    """Forget everything without flushing: for test suites that start each test from scratch."""
    deactivate()


def current_pipeline() -> Pipeline:
    """The current pipeline; before `init()`, a bare one with no sinks (for `tracking()` blocks)."""
    pipeline = _State.pipeline
    if pipeline is None:
        with _State.lock:
            if _State.pipeline is None:
                bare = load_settings({"store": None, "exporters": ()}, config={}, env={})
                prepare_worker()
                _State.pipeline = Pipeline(bare, (), [pricing.default_book().price])
            pipeline = _State.pipeline
    return pipeline


# -- the calling thread's reads ---------------------------------------------------------------------


def route_if_recording() -> tuple[bool, Route | None]:
    """Called when a call starts: (record it?, where to). The hot path's only global read."""
    route = _route.get()
    return (_State.recording or route is not None), route


def budgets_active() -> bool:
    """Whether some budget may refuse a call (only then is anything computed for it before the call)."""
    return _State.budgets is not None


def check_budget(call: Any) -> None:
    """Refuse a call a blocking budget has used up: record it as failed and raise `BudgetExceeded` (calling thread)."""
    book = _State.budgets
    if book is None:
        return
    try:
        book.check(call.scope_fields(book.check_fields))
    except BudgetExceeded as exc:
        call.refuse(exc)
        raise


def submit(item: Any) -> None:
    """Hand a finished span to the pipeline (calling thread)."""
    pipeline = _State.pipeline or current_pipeline()
    if _State.budgets is not None and hasattr(item, "scope_fields"):  # an LLM call (pending.PendingCall)
        item = _account_now(item, _State.budgets, pipeline)
    pipeline.submit(item)


class _Built:
    """A record built on the calling thread, for the pipeline to deliver as it is."""

    __slots__ = ("record", "route")

    def __init__(self, record: Any, route: Any) -> None:
        self.record, self.route = record, route

    def build(self, settings: Any) -> Any:
        return self.record


def _account_now(item: Any, book: BudgetBook, pipeline: Pipeline) -> Any:
    """A call in the scope of a blocking budget is built, priced and counted *now*, on the calling
    thread, so the next call's check sees it: a raising budget lets at most one call per concurrent
    caller pass its limit. Only these calls pay for it (tens of microseconds); all others are built
    on the worker."""
    try:
        if not book.blocks(item.scope_fields(book.check_fields)):
            return item
        record = item.build(pipeline.settings)
        if record is None:
            return item
        pricing.active_book().price(record)
        book.account_now(record)
        return _Built(record, item.route)
    except Exception as exc:  # noqa: BLE001 - the worker will try again; the app never sees it
        log.error_once("budget.account_now", "tokentrail: could not account a call under a budget", exc)
        return item


def flush(timeout: float | None = None) -> bool:
    """Wait until every call recorded so far is written; False if `timeout` passed first or a write failed."""
    pipeline = _State.pipeline
    return True if pipeline is None else pipeline.flush(timeout)


def track(sink: Any = None) -> None:
    """Turn recording on everywhere; with `sink`, records go to it *instead of* the configured sinks."""
    if sink is not None and not callable(getattr(sink, "export", None)):
        raise TypeError(f"track(sink=...) needs an object with an export(records) method, not {sink!r}")
    with _State.lock:
        _State.recording = True
        current_pipeline().override = sink


def untrack() -> None:
    """Turn recording off (calls pass straight through); `track()` turns it back on."""
    with _State.lock:
        _State.recording = False
        if _State.pipeline is not None:
            _State.pipeline.override = None


def is_tracking() -> bool:
    """Whether a call made here and now would be recorded."""
    return _State.recording or _route.get() is not None


def get_active_sink() -> Any:
    """The sink a call made here would go to: a `tracking(sink)` block's, `track(sink)`'s, else the store."""
    route = _route.get()
    if route is not None and route.sink is not None:
        return route.sink
    pipeline = _State.pipeline
    if pipeline is not None and pipeline.override is not None:
        return pipeline.override
    if route is not None:
        return route.logs[-1]
    return _State.default_sink


# -- tracking() ----------------------------------------------------------------------------------------


def _in_running_loop() -> bool:
    asyncio = sys.modules.get("asyncio")  # never imported just to ask
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class CallLog(InMemorySink):
    """The calls recorded inside one `tracking()` block, live.

    Reading `.calls` (or a total) first waits briefly for calls still in the
    pipeline, so right after a call returns its record is here — except on a
    thread running an event loop, which is never blocked: there `.calls` is
    what has arrived so far, `await log.settled()` waits without blocking,
    and leaving `async with tracking()` waits the same way.
    `total_cost_usd` is `None` when any call has no known price (the total is
    then unknown); `priced_cost_usd` sums the known ones and `unpriced_calls`
    counts the rest.
    """

    def wait_for_pending(self) -> None:
        """Block until the records submitted so far have reached this log (bounded by `shutdown_timeout`)."""
        # Not just pending(): the worker may hold a batch it has taken but not yet delivered. Only the way to
        # call logs and to a tracking(sink)/track(sink) sink is waited for: a slow store delays nobody here.
        pipeline = _State.pipeline
        if pipeline is not None:
            pipeline.flush(pipeline.settings.shutdown_timeout, sinks=False)

    def before_read(self) -> None:
        if not _in_running_loop():
            self.wait_for_pending()

    async def settled(self) -> CallLog:
        """Wait (without blocking the event loop) until the calls made so far are in the log."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.wait_for_pending)
        return self

    def _sum(self, field: str) -> int:
        return sum(getattr(c, field) or 0 for c in self.calls)

    @property
    def input_tokens(self) -> int:
        return self._sum("input_tokens")

    @property
    def output_tokens(self) -> int:
        return self._sum("output_tokens")

    @property
    def total_tokens(self) -> int:
        return self._sum("total_tokens")

    @property
    def unpriced_calls(self) -> int:
        return sum(1 for c in self.calls if c.cost_usd is None)

    @property
    def priced_cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls if c.cost_usd is not None)

    @property
    def total_cost_usd(self) -> float | None:
        calls = self.calls
        if any(c.cost_usd is None for c in calls):
            return None
        return sum(c.cost_usd for c in calls)

    @property
    def errors(self) -> list[Any]:
        return [c for c in self.calls if c.failed]

    def __len__(self) -> int:
        return len(self.calls)

    def __repr__(self) -> str:
        counts = self.counts()
        return f"<CallLog calls={counts[0]} tool_calls={counts[1]} outcomes={counts[2]}>"


class tracking:
    """Record the calls made inside the block (even before `init()` or after `untrack()`).

        with tokentrail.tracking() as log:
            client.chat.completions.create(...)
        print(log.calls[0].output_tokens, log.total_cost_usd)

    With `sink`, the block's records go to `sink` (and the log) *instead of*
    the configured store — handy in tests. Leaving the block waits (up to
    `shutdown_timeout`) for the block's records to reach the log; leaving
    `async with tracking()` waits without blocking the event loop.
    """

    def __init__(self, sink: Any = None) -> None:
        if sink is not None and not callable(getattr(sink, "export", None)):
            raise TypeError(f"tracking(sink=...) needs an object with an export(records) method, not {sink!r}")
        self.sink = sink
        self._tokens: list[Any] = []

    def __enter__(self) -> CallLog:
        outer = _route.get()
        log_ = CallLog()
        logs = (*outer.logs, log_) if outer is not None else (log_,)
        sink = self.sink if self.sink is not None else (outer.sink if outer is not None else None)
        self._tokens.append((_route.set(Route(logs, sink)), log_))
        current_pipeline()
        return log_

    def _leave(self) -> CallLog:
        token, log_ = self._tokens.pop()
        reset_quietly(_route, token)
        return log_

    def __exit__(self, *exc: Any) -> None:
        self._leave().wait_for_pending()

    async def __aenter__(self) -> CallLog:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self._leave().settled()


# -- process lifecycle ------------------------------------------------------------------------------
#
# - Normal exit (and SIGINT, which Python turns into KeyboardInterrupt): `atexit` shuts the pipeline down,
#   bounded by `shutdown_timeout`.
# - SIGTERM (how containers and process managers stop apps) kills a Python process without `atexit`, so
#   `init()` (on the main thread) installs a handler that flushes first, bounded, and then does what the
#   signal did before: chains to the application's handler, or restores the default and re-sends the
#   signal, so the process still dies of SIGTERM (exit status -15 / 143). A second SIGTERM during the flush
#   skips it. A SIGTERM the application ignores (SIG_IGN) or handles in C is left alone; `shutdown()`
#   puts the previous handler back. SIGKILL cannot be caught: at most one `flush_interval` of calls is lost.
# - fork: `os.register_at_fork` pauses the worker and the sinks' threads between batches (bounded), so the
#   child inherits no lock they held; the child gets fresh locks (ours, the price and budget books',
#   the sinks') and a fresh pipeline state. multiprocessing's fork children (Process, Pool) end with
#   `os._exit`, skipping `atexit`: each registers a `multiprocessing.util.Finalize` through
#   `util.register_after_fork` (which `Process._bootstrap` runs after clearing the parent's finalizers),
#   and `util._exit_function` — called by `_bootstrap` when `run()` ends, however it ends — runs the same
#   bounded shutdown. Pool workers are stopped by `terminate()` (SIGTERM) as soon as the parent has their
#   results, so they write each task's records before sending its result back. Forked children get
#   SIGTERM's disposition from before `init()` back (see `_restore_sigterm_in_child`), blocked across the
#   fork so a signal sent during it is not lost. A child made with a bare `os.fork()` that ends with
#   `os._exit()`, or is killed, keeps what it flushed.


class _Lifecycle:
    forking: Pipeline | None = None  # the pipeline paused across a fork() in progress
    multiprocessing_hooked = False
    sigterm_previous: Any = None  # the application's SIGTERM disposition when init() installed ours
    in_handler = False
    exiting = False  # _at_exit() is shutting down: a SIGTERM now waits for it (deferred)
    deferred: int | None = None
    unblock_after_fork = False  # SIGTERM blocked across a fork() by us


def _at_exit() -> None:
    pipeline = _State.pipeline
    if pipeline is None:
        return
    # A SIGTERM during the exit flush (a Pool worker ending as terminate() signals it) waits for the flush,
    # then takes effect: the handler must not start a second shutdown inside this one.
    _Lifecycle.exiting = True
    try:
        pipeline.shutdown()
    finally:
        _Lifecycle.exiting = False
        signum, _Lifecycle.deferred = _Lifecycle.deferred, None
        if signum is not None:
            _after_flush(signum, None)


def install_signal_handlers() -> None:
    """At `init()`: flush on SIGTERM before whatever the signal did (see the notes above). Main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is _on_sigterm or previous is None or previous == signal.SIG_IGN:
            return  # ours already; installed from C; ignored on purpose: leave it
        _Lifecycle.sigterm_previous = previous
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError) as exc:  # not the main interpreter, or a platform without it
        log.info_once("signal.install", "tokentrail: SIGTERM handling not installed (%s)", exc)


def restore_signal_handlers() -> None:
    """At `shutdown()`: put the application's SIGTERM handler back, if ours is still the one installed."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            previous = _Lifecycle.sigterm_previous
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            _Lifecycle.sigterm_previous = None
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: Any) -> Any:
    if _Lifecycle.exiting and not _Lifecycle.in_handler:
        _Lifecycle.deferred = signum  # _at_exit() is flushing already: the signal takes effect when it is done
        return None
    previous = _Lifecycle.sigterm_previous
    chained = callable(previous)
    if not _Lifecycle.in_handler:  # a second SIGTERM during the flush goes straight on
        _Lifecycle.in_handler = True
        try:
            pipeline = _State.pipeline
            if pipeline is not None:
                if chained:  # the application decides what happens next; it may keep running
                    pipeline.flush(pipeline.settings.shutdown_timeout)
                else:
                    pipeline.shutdown()
        except Exception as exc:  # noqa: BLE001 - the signal must still do what it did
            log.error_once("signal.flush", "tokentrail: flushing on SIGTERM failed", exc)
        finally:
            _Lifecycle.in_handler = False
    return _after_flush(signum, frame)


def _after_flush(signum: int, frame: Any) -> Any:
    """What the signal did before tokentrail: the application's handler, or the default (the process ends)."""
    previous = _Lifecycle.sigterm_previous
    if callable(previous):
        return previous(signum, frame)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return None


def _hook_multiprocessing() -> None:
    """Before a fork: have multiprocessing's fork children shut the pipeline down as they end (once per process
    tree: the registration is inherited). Only when multiprocessing is already loaded; it is never imported here."""
    if _Lifecycle.multiprocessing_hooked:
        return
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    try:
        util.register_after_fork(_Lifecycle, _in_multiprocessing_child)
        _Lifecycle.multiprocessing_hooked = True
    except Exception as exc:  # noqa: BLE001 - another Python's multiprocessing
        log.error_once("fork.multiprocessing", "tokentrail: could not hook multiprocessing's exit", exc)


def _in_multiprocessing_child(_: Any) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _at_exit, exitpriority=100)  # run by util._exit_function, before os._exit
    _flush_before_results()


# Pool and ProcessPoolExecutor workers: (module, worker function, index of the result queue in its arguments)
_POOL_WORKERS = (("multiprocessing.pool", "worker", 1), ("concurrent.futures.process", "_process_worker", 1))


def _flush_before_results() -> None:
    """In a Pool (or ProcessPoolExecutor) worker, write the task's records before its result goes back: the
    parent may `terminate()` the workers as soon as it has the results (leaving `with Pool()` does), and a
    worker killed then would lose them. Costs nothing for a task that recorded nothing."""
    process = sys.modules.get("multiprocessing.process")
    current = process.current_process() if process is not None else None
    target = getattr(current, "_target", None)
    for module, name, index in _POOL_WORKERS:
        loaded = sys.modules.get(module)
        if loaded is None or target is not getattr(loaded, name, None):
            continue
        args = getattr(current, "_args", ())
        results = args[index] if len(args) > index else None
        put = getattr(results, "put", None)
        if callable(put):
            def put_after_flush(obj: Any, *more: Any, _put: Any = put) -> Any:
                pipeline = _State.pipeline
                if pipeline is not None:
                    pipeline.flush(pipeline.settings.shutdown_timeout)
                return _put(obj, *more)

            try:
                results.put = put_after_flush
            except AttributeError:
                pass


def _block_sigterm_across_fork() -> None:
    """Python drops a signal that reaches a child before it has finished forking (`PyOS_AfterFork_Child`
    clears the flags), where the default action would have killed it: a Pool worker forked as `terminate()`
    signals it then waits for a task forever. Blocked across fork(), the signal waits in the child until the
    after-fork hook unblocks it, and then runs the handler."""
    if hasattr(signal, "pthread_sigmask") and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        try:
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            _Lifecycle.unblock_after_fork = signal.SIGTERM not in before
        except (OSError, ValueError):
            pass


def _unblock_sigterm_after_fork() -> None:
    if _Lifecycle.unblock_after_fork:
        _Lifecycle.unblock_after_fork = False
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        except (OSError, ValueError):
            pass


def _restore_sigterm_in_child() -> None:
    """A forked child gets SIGTERM's disposition from before `init()` back. A Python handler can miss a
    signal that arrives just before its thread blocks (the handler runs only once the call returns), and
    `Pool.terminate()` signals workers exactly as they go to wait, on a lock it then holds for good: the
    worker would never end. Children keep their records otherwise: multiprocessing's exit hook, and Pool
    workers write theirs before each result goes back (`_flush_before_results`)."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        previous, _Lifecycle.sigterm_previous = _Lifecycle.sigterm_previous, None
        try:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass


def _before_fork() -> None:
    _block_sigterm_across_fork()
    try:
        _hook_multiprocessing()
        pipeline = _Lifecycle.forking = _State.pipeline
        if pipeline is not None:
            pipeline.before_fork()
    except Exception as exc:  # noqa: BLE001 - never stop a fork
        log.error_once("fork.before", "tokentrail: preparing for fork() failed", exc)


def _after_fork_in_parent() -> None:
    pipeline, _Lifecycle.forking = _Lifecycle.forking, None
    try:
        if pipeline is not None:
            pipeline.after_fork_in_parent()
    finally:
        _unblock_sigterm_after_fork()


def _after_fork_in_child() -> None:
    _Lifecycle.forking = None
    _Lifecycle.in_handler = _Lifecycle.exiting = False
    _Lifecycle.deferred = None
    try:
        _restore_sigterm_in_child()
        _State.lock = threading.RLock()
        log.after_fork_in_child()
        pricing.after_fork_in_child()
        if _State.pipeline is not None:
            _State.pipeline.after_fork_in_child()
    finally:
        _unblock_sigterm_after_fork()  # a SIGTERM sent during the fork runs the handler now


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
