"""The process-wide tracker: `init()`, the recording switch, and `tracking()` blocks.

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
import threading
from contextvars import ContextVar
from typing import Any, Callable, Sequence

from . import log
from .budget import BudgetBook, call_fields
from .config import UNSET, Settings, load_settings
from .context import reset_quietly
from .errors import BudgetExceeded, ConfigError
from . import pricing
from .pricing import PriceBook
from .pipeline import Pipeline, Route
from .sinks.memory import InMemorySink

__all__ = ["Tracker", "init", "flush", "shutdown", "track", "untrack", "is_tracking", "get_active_sink", "tracking", "CallLog"]

_route: ContextVar[Route | None] = ContextVar("tokentrail.route", default=None)


class _State:
    tracker: Tracker | None = None
    pipeline: Pipeline | None = None
    budgets: BudgetBook | None = None  # only when a budget can block a call
    recording = False  # the global switch: init()/track() on, untrack() off
    lock = threading.RLock()


class Tracker:
    """What `init()` returns: the settings in effect, the sinks, and the pipeline's counters."""

    def __init__(self, settings: Settings, sinks: Sequence[Any]) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self._store = self.sinks[0] if settings.store is not None and self.sinks else None
        self.prices = PriceBook(settings.prices, settings.model_aliases)
        self.budgets = BudgetBook(settings.budgets) if settings.budgets else None
        processors: list[Callable[[Any], None]] = [self.prices.price]
        if self.budgets is not None:
            processors.append(self.budgets.account)
        self.pipeline = Pipeline(settings, self.sinks, processors)

    @property
    def store(self) -> Any:
        """The store records are written to (`None` with `store="none"`)."""
        return self._store

    def flush(self, timeout: float | None = None) -> bool:
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self.pipeline.shutdown(timeout)

    def stats(self) -> dict[str, int]:
        """Pipeline counters (`processed`, `written`, `dropped`, `sink_errors`, `lost`, …),
        `pending`, and `unpriced` (calls with no known price)."""
        return {**self.pipeline.stats, "pending": self.pipeline.pending(), "unpriced": self.prices.unpriced}

    def __repr__(self) -> str:
        return f"<tokentrail.Tracker store={self.settings.store!r} sinks={len(self.sinks)}>"


def init(
    store: Any = UNSET,
    *,
    exporters: Any = UNSET,
    capture_content: Any = UNSET,
    content_max_chars: Any = UNSET,
    queue_size: Any = UNSET,
    batch_size: Any = UNSET,
    flush_interval: Any = UNSET,
    shutdown_timeout: Any = UNSET,
    enabled: Any = UNSET,
    budgets: Any = UNSET,
    prices: Any = UNSET,
    model_aliases: Any = UNSET,
    instrument: Any = UNSET,
    config: Any = None,
) -> Tracker | None:
    """Configure tokentrail and start recording; returns the active `Tracker`.

    Every argument left out is taken from `TOKENTRAIL_*` variables, then the
    config file, then the defaults (`store="sqlite:///tokentrail.db"`).
    With `instrument=True` (the default) every installed SDK tokentrail has
    an adapter for is patched, now or when it is imported; a list patches
    those named. A bad value raises `ConfigError`; a store that cannot be
    opened raises `StoreError`. Calling `init()` again replaces the previous tracker (its
    pending records are flushed first). With `enabled=false` nothing is set up
    and `None` is returned.
    """
    arguments = {
        "store": store,
        "exporters": exporters,
        "capture_content": capture_content,
        "content_max_chars": content_max_chars,
        "queue_size": queue_size,
        "batch_size": batch_size,
        "flush_interval": flush_interval,
        "shutdown_timeout": shutdown_timeout,
        "enabled": enabled,
        "budgets": budgets,
        "prices": prices,
        "model_aliases": model_aliases,
        "instrument": instrument,
    }
    settings = load_settings(arguments, config=config)
    if not settings.enabled:
        log.logger.info("tokentrail: disabled by `enabled` (%s)", settings.sources.get("enabled"))
        return None
    sinks = _open_sinks(settings)
    tracker = Tracker(settings, sinks)
    if tracker.budgets is not None and tracker.store is not None:
        tracker.budgets.seed(tracker.store)  # a restart does not reset this month's spending
    with _State.lock:
        old = _State.pipeline
        _State.tracker, _State.pipeline = tracker, tracker.pipeline
        _State.budgets = tracker.budgets if tracker.budgets is not None and tracker.budgets.blocking else None
        _State.recording = True
        pricing.active_book = lambda: tracker.prices
    if old is not None:
        tracker.pipeline.override = old.override
        old.shutdown()
    if settings.instrument:
        # `tokentrail.instrument` is the public function; the registry is the submodule of that name.
        from .instrument import instrument as patch_sdks

        patch_sdks(*(() if settings.instrument is True else settings.instrument))
    return tracker


def _open_sinks(settings: Settings) -> list[Any]:
    from .sinks import make_exporter

    sinks: list[Any] = []
    if settings.store is not None:
        from .sinks.sqlite import SQLiteStore

        sinks.append(SQLiteStore(settings.store))
    for spec in settings.exporters:
        try:
            sinks.append(make_exporter(spec))
        except OSError as exc:
            raise ConfigError(f"tokentrail: cannot open exporter {spec!r}: {exc}") from None
    return sinks


def _pipeline() -> Pipeline:
    """The current pipeline; before `init()`, a bare one with no default sinks."""
    pipeline = _State.pipeline
    if pipeline is None:
        with _State.lock:
            if _State.pipeline is None:
                _State.pipeline = Pipeline(load_settings({"store": None, "exporters": ()}, config={}, env={}), (), [pricing._default_book().price])
            pipeline = _State.pipeline
    return pipeline


def route_if_recording() -> tuple[bool, Route | None]:
    """Called when a call starts: (record it?, where to). The hot path's only global read."""
    route = _route.get()
    return (_State.recording or route is not None), route


def check_budget(call: Any) -> None:
    """Refuse a call a blocking budget has used up: record it as failed and raise `BudgetExceeded` (calling thread)."""
    book = _State.budgets
    if book is None:
        return
    fields = call_fields(book.check_fields, call._attrs, call.fields, call._workflow, call.provider, call.model)
    try:
        book.check(fields)
    except BudgetExceeded as exc:
        call.error_category = "budget"
        call._end(exc)
        raise


def submit(item: Any) -> None:
    """Hand a finished span to the pipeline (calling thread)."""
    (_State.pipeline or _pipeline()).submit(item)


def flush(timeout: float | None = None) -> bool:
    """Wait until every call recorded so far is written; False if `timeout` passed first or a write failed."""
    pipeline = _State.pipeline
    return True if pipeline is None else pipeline.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush (bounded by `shutdown_timeout`) and stop; recording stops until the next `init()`."""
    with _State.lock:
        pipeline = _State.pipeline
        _State.pipeline = _State.tracker = _State.budgets = None
        _State.recording = False
        pricing.active_book = pricing._default_book
    return True if pipeline is None else pipeline.shutdown(timeout)


def track(sink: Any = None) -> None:
    """Turn recording on everywhere; with `sink`, records go to it *instead of* the configured sinks."""
    if sink is not None and not callable(getattr(sink, "export", None)):
        raise TypeError(f"track(sink=...) needs an object with an export(records) method, not {sink!r}")
    with _State.lock:
        _State.recording = True
        _pipeline().override = sink


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
    tracker = _State.tracker
    return tracker.sinks[0] if tracker is not None and tracker.sinks else None


class CallLog(InMemorySink):
    """The calls recorded inside one `tracking()` block, live.

    Reading `.calls` (or a total) first waits briefly for calls still in the
    pipeline, so right after a call returns its record is here.
    `total_cost_usd` is `None` when any call has no known price (the total is
    then unknown); `priced_cost_usd` sums the known ones and `unpriced_calls`
    counts the rest.
    """

    def _settled(self) -> None:
        # Not just pending(): the worker may hold a batch it has taken but not yet delivered.
        pipeline = _State.pipeline
        if pipeline is not None:
            pipeline.flush(pipeline.settings.shutdown_timeout)

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
        return f"<CallLog calls={len(self._calls)} tool_calls={len(self._tool_calls)} outcomes={len(self._outcomes)}>"


class tracking:
    """Record the calls made inside the block (even before `init()` or after `untrack()`).

        with tokentrail.tracking() as log:
            client.chat.completions.create(...)
        print(log.calls[0].output_tokens, log.total_cost_usd)

    With `sink`, the block's records go to `sink` (and the log) *instead of*
    the configured store — handy in tests. Leaving the block waits (up to
    `shutdown_timeout`) for the block's records to reach the log. Usable with
    `async with` too.
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
        _pipeline()
        return log_

    def __exit__(self, *exc: Any) -> None:
        token, log_ = self._tokens.pop()
        reset_quietly(_route, token)
        log_._settled()

    async def __aenter__(self) -> CallLog:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)


def _at_exit() -> None:
    pipeline = _State.pipeline
    if pipeline is not None:
        pipeline.shutdown()


def _after_fork_in_child() -> None:
    _State.lock = threading.RLock()
    log._lock = threading.Lock()
    if _State.pipeline is not None:
        _State.pipeline.after_fork_in_child()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
