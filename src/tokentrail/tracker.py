"""`init()`, `Tracker` and `shutdown()`: the composition root.

This is the one place that reads the settings, opens the sinks (through the
sinks registry), builds the price book, the budgets and the pipeline, and
patches SDKs. What calls read while they run (the recording switch, routes,
the budget check) lives in `runtime.py`, which this module switches with
`runtime.activate()` / `runtime.deactivate()`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from . import context, log, pricing, runtime
from .budget import BudgetBook
from .config import UNSET, Settings, load_settings
from .errors import ConfigError
from .pipeline import Pipeline
from .pricing import PriceBook

__all__ = ["Tracker", "init", "shutdown"]


class Tracker:
    """What `init()` returns: the settings in effect, the sinks, and the pipeline's counters."""

    def __init__(self, settings: Settings, sinks: Sequence[Any]) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.sinks = list(sinks)
        self._store = self.sinks[0] if settings.enabled and settings.store is not None and self.sinks else None
        self.prices = PriceBook(settings.prices, settings.model_aliases)
        self.budgets = BudgetBook(settings.budgets) if settings.budgets else None
        processors: list[Callable[[Any], None]] = [self.prices.price]
        if self.budgets is not None:
            processors.append(self.budgets.account)
        self.pipeline = Pipeline(settings, self.sinks, processors)
        if self.budgets is not None and self.budgets.alerts is not None:
            # At exit, the last calls are accounted before the alerts' queue is drained (alerts.py).
            self.budgets.alerts.before_exit = lambda: self.pipeline.flush(settings.shutdown_timeout)

    @property
    def store(self) -> Any:
        """The store records are written to (`None` with `store="none"`)."""
        return self._store

    def flush(self, timeout: float | None = None) -> bool:
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self.pipeline.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters, `pending`, `unpriced`, and `sinks`: per sink.

        - `processed`: calls built into records; `deduplicated`: framework calls a lower layer recorded
        - `dropped`: calls dropped at the full queue (never built); `finish_errors`: calls that failed to build
        - `written`: records handed to sinks successfully (summed over sinks); `sink_errors`: failed export attempts
        - `lost`: records some sink will never have (its buffer was full, it failed `RETRIES` times, it
          rejected them, or shutdown ran out of time); `rejected`: the part a store refused as bad values
        - `pending`: calls waiting to be built; `unpriced`: calls with no known price
        - `alerts` (with a budget `webhook`): `{sent, failed, dropped, pending, last_error}` of the posted events
        - `sinks`: `{name: {written, dropped, failed, rejected, errors, pending, last_error}}`, a store named
          by its URL (`sqlite:///calls.db`), `jsonl:PATH`, `console`, else the sink's class name
        """
        stats = {**self.pipeline.stats, "pending": self.pipeline.pending(), "unpriced": self.prices.unpriced,
                 "sinks": self.pipeline.sink_stats()}
        if self.budgets is not None and self.budgets.alerts is not None:
            stats["alerts"] = self.budgets.alerts.snapshot()
        return stats

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
    retention: Any = UNSET,
    config: Any = None,
) -> Tracker:
    """Configure tokentrail and start recording; returns the active `Tracker`.

    Every argument left out is taken from `TOKENTRAIL_*` variables, then the
    config file, then the defaults (`store="sqlite:///tokentrail.db"`).
    With `instrument=True` (the default) every installed SDK tokentrail has
    an adapter for is patched, now or when it is imported; a list patches
    those named. A bad value raises `ConfigError`; a store that cannot be
    opened raises `StoreError`. Calling `init()` again replaces the previous tracker (its
    pending records are flushed first). With `enabled=false` nothing is set up
    and nothing is recorded; the returned Tracker has `enabled=False`, no sinks and no store.
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
        "retention": retention,
    }
    settings = load_settings(arguments, config=config)
    if not settings.enabled:
        # Still a Tracker, so an application that uses it (stats, flush) runs the same with tracking off.
        log.logger.info("tokentrail: disabled by `enabled` (%s); nothing is recorded", settings.sources.get("enabled"))
        return Tracker(settings, [])
    from . import instrument as registry

    names = () if settings.instrument is True or not settings.instrument else settings.instrument
    unknown = [n for n in names if n not in registry.ADAPTERS]
    if unknown:
        raise ConfigError(f"tokentrail: bad value for `instrument` from {settings.sources.get('instrument')}: "
                          f"{unknown}; accepted: true, false, or a list of {', '.join(registry.ADAPTERS)}")
    runtime.prepare_worker()
    tracker = Tracker(settings, _open_sinks(settings))
    if tracker.budgets is not None and tracker.store is not None:
        tracker.budgets.seed(tracker.store)  # a restart does not reset this month's spending
    pricing.use_book(tracker.prices)
    runtime.install_signal_handlers()  # SIGTERM keeps what was recorded before it (runtime.py, process lifecycle)
    context.install_readers(tracker.sinks)  # the otel sink's read_parent, the mlflow sink's read_labels
    old = runtime.activate(tracker.pipeline, tracker.budgets, tracker.sinks[0] if tracker.sinks else None)
    if old is not None:
        old.shutdown()
    if settings.instrument:
        registry.instrument(*names)
    return tracker


def _open_sinks(settings: Settings) -> list[Any]:
    from .sinks import make_exporter, open_store

    sinks: list[Any] = []
    if settings.store is not None:
        sinks.append(open_store(settings.store))
        if settings.retention is not None and callable(getattr(sinks[0], "keep", None)):
            sinks[0].keep(*settings.retention)  # pruned from the store's own thread (sinks/sqlstore.py)
    for spec in settings.exporters:
        try:
            sinks.append(make_exporter(spec))
        except OSError as exc:
            raise ConfigError(f"tokentrail: cannot open exporter {spec!r}: {exc}") from None
    return sinks


def shutdown(timeout: float | None = None) -> bool:
    """Flush (bounded by `shutdown_timeout`) and stop; recording stops until the next `init()`."""
    pipeline = runtime.deactivate()
    context.clear_readers()
    pricing.use_book(None)
    runtime.restore_signal_handlers()
    return True if pipeline is None else pipeline.shutdown(timeout)
