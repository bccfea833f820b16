"""Budgets: spending limits that warn, or stop a call before money is spent.

    tokentrail.init(budgets=[
        tokentrail.Budget(limit_usd=50, period="day"),                                   # everything
        tokentrail.Budget(limit_usd=5, period="month", scope={"customer_id": "*"},       # each customer
                          action="raise"),
    ])

- `period`: `call`, `hour`, `day`, `month` (calendar periods in UTC) or `total`.
- `scope`: attribution fields a call must match (`customer_id`, `user_id`,
  `feature`, `session_id`, `workflow`, `provider`, `model`); a value of `"*"`
  keeps one counter per distinct value (a limit for each customer). `None`: all calls.
- `action="warn"`: when spending crosses the limit, one warning on the
  `tokentrail` logger (budget, spend, limit, scope) and `on_exceed(event)`.
- `webhook="https://…"`: the same event is also posted as JSON to that URL, from a
  thread of its own with a bounded timeout; failures are counted, never raised
  (`alerts.py`: the body, the timeout, the counters in `Tracker.stats()["alerts"]`).
- `action="raise"`: the same, and once the limit is reached every further
  call in scope raises `BudgetExceeded` *before* the provider is called; the
  refused call is recorded with `error_category="budget"`. The call that
  crosses the limit is let through (its cost is known only after it), so
  spending can pass the limit by at most one call per concurrent caller.

The worker keeps the counters (`account`, after pricing); the check on the
calling thread (`check`) is a dict lookup per budget. Counters are seeded from
the store at `init()`, so a restart does not reset a monthly budget.

Shared budgets. With a store that keeps a budget ledger (PostgreSQL, and
SQLite for processes on one host: `budget_sync`), the counters are the
fleet's: every process publishes its own spend per budget, scope and period
and reads everyone else's, on a thread of its own every `SHARE_INTERVAL_S`
(0.5 s) — never on the calling thread, whose check stays a dict lookup. A
counter is this process's spend, exact and live, plus the others' as of the
last sync; what the store held when the first process of a period started is
counted once for the fleet (the ledger's `seed` row). So with P processes, a
raising budget stops every process, and spending can pass the limit by at
most what the *other* processes spend in one sync round trip (about
2 × `SHARE_INTERVAL_S`: their publish, then our read) plus one call per
concurrent caller — e.g. 4 processes at $1/s each: ≤ 3 × $1/s × 1 s + 4 calls.
A process that exits publishes its spend as it leaves. Every process of the
fleet should declare the same budgets (a budget is known by its label); a
process without them spends without counting against them until the calls
it wrote are seen by the next period's seed. A store that cannot be reached
leaves the counters where they were (this process's own spend still counts).
Per-process otherwise: another process's spending is seen at its next start.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from . import alerts, log
from .errors import BudgetExceeded, ConfigError
from .record import LLMCall
from .semconv import normalize_provider

__all__ = ["Budget", "BudgetEvent", "BudgetBook", "parse_budgets", "BudgetExceeded", "SHARE_INTERVAL_S"]

SHARE_INTERVAL_S = 0.5  # shared budgets: how often a process publishes its spend and reads the fleet's

PERIODS = ("call", "hour", "day", "month", "total")
ACTIONS = ("warn", "raise")
SCOPE_FIELDS = ("user_id", "customer_id", "feature", "session_id", "workflow", "provider", "model")
ANY = "*"


@dataclass(frozen=True)
class Budget:
    """A spending limit; see the module docstring."""

    limit_usd: float | None = None
    limit_tokens: int | None = None
    period: str = "day"
    scope: Mapping[str, str] | None = None
    action: str = "warn"
    name: str | None = None
    on_exceed: Callable[[BudgetEvent], Any] | None = field(default=None, compare=False)
    webhook: str | None = field(default=None, compare=False, repr=False)  # may hold a secret: not in repr

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError(f"tokentrail: bad Budget({self.label}): {'; '.join(problems)}")
        if self.scope is not None:
            object.__setattr__(self, "scope", {k: str(v) for k, v in self.scope.items()})

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        limits = [f"${_number_text(self.limit_usd)}" if self.limit_usd is not None else "",
                  f"{_number_text(self.limit_tokens)} tokens" if self.limit_tokens is not None else ""]
        scope = ",".join(f"{k}={v}" for k, v in (self.scope or {}).items()) or "all"
        return f"{' + '.join(x for x in limits if x)}/{self.period} ({scope})"


def _number_text(value: Any) -> str:
    """A limit as users wrote it: 5 -> "5", 0.5 -> "0.5"; anything else as its repr (it is an error)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)


def _problems(budget: Budget) -> list[str]:
    problems = []
    for name in ("limit_usd", "limit_tokens"):
        value = getattr(budget, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
            problems.append(f"{name} must be a number > 0, not {value!r}")
    if budget.limit_usd is None and budget.limit_tokens is None:
        problems.append("give limit_usd and/or limit_tokens")
    if budget.period not in PERIODS:
        problems.append(f"period must be one of {', '.join(PERIODS)}, not {budget.period!r}")
    if budget.action not in ACTIONS:
        problems.append(f"action must be one of {', '.join(ACTIONS)}, not {budget.action!r}")
    if budget.period == "call" and budget.action == "raise":
        problems.append("a per-call budget is known only after the call, so it can only warn (action='warn')")
    if budget.scope is not None:
        if not isinstance(budget.scope, Mapping):
            problems.append(f"scope must be a dict of field -> value, not {budget.scope!r}")
        else:
            unknown = set(budget.scope) - set(SCOPE_FIELDS)
            if unknown:
                problems.append(f"unknown scope field(s) {sorted(unknown)}; accepted: {', '.join(SCOPE_FIELDS)}")
    if budget.on_exceed is not None and not callable(budget.on_exceed):
        problems.append("on_exceed must be callable")
    if budget.webhook is not None:
        problem = alerts.webhook_problem(budget.webhook)
        if problem:
            problems.append(problem)
    return problems


def parse_budgets(name: str, value: Any, source: str) -> tuple[Budget, ...]:
    """Budgets from `init(budgets=[...])` (Budget objects or dicts) or `[[budgets]]` tables in the config file."""
    if value is None:
        return ()
    if isinstance(value, (Budget, Mapping)):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"tokentrail: bad value for `{name}` from {source}: {value!r}; accepted: a list of Budget or tables") from None
    out = []
    for index, item in enumerate(items):
        if isinstance(item, Budget):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"tokentrail: bad `{name}` entry {index} from {source}: {item!r}; accepted: Budget(...) or a table")
        unknown = set(item) - {"limit_usd", "limit_tokens", "period", "scope", "action", "name", "webhook"}
        if unknown:
            raise ConfigError(f"tokentrail: bad `{name}` entry {index} from {source}: unknown key(s) {sorted(unknown)}")
        try:
            out.append(Budget(**item))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (`{name}` entry {index} from {source})") from None
    return tuple(out)


@dataclass(frozen=True)
class BudgetEvent:
    """Passed to `on_exceed`: which budget, for which scope and period, spent how much."""

    budget: Budget
    scope: dict[str, str]
    period: str
    spent_usd: float
    spent_tokens: int
    call: Any = None  # the LLMCall that crossed the limit
    at: datetime | None = None  # when it was noticed (UTC)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: what a budget's `webhook` receives (alerts.py shows an example)."""
        call = self.call
        budget = self.budget
        return {
            "event": "budget.exceeded",
            "budget": budget.label,
            "action": budget.action,
            "scope": dict(self.scope),
            "period": budget.period,
            "period_key": None if budget.period == "call" else self.period,
            "limit_usd": budget.limit_usd,
            "limit_tokens": budget.limit_tokens,
            "spent_usd": round(self.spent_usd, 10),
            "spent_tokens": self.spent_tokens,
            "call": None if call is None else {
                "id": call.id,
                "provider": call.provider,
                "model": call.request_model or call.response_model,
                "feature": call.feature,
                "customer_id": call.customer_id,
                "user_id": call.user_id,
                "session_id": call.session_id,
                "workflow": call.workflow,
                "cost_usd": call.cost_usd,
                "total_tokens": call.total_tokens,
                "started_at": call.started_at.isoformat() if call.started_at is not None else None,
            },
            "time": self.at.isoformat() if self.at is not None else None,
        }


def period_key(period: str, moment: datetime) -> str:
    if period == "hour":
        return moment.strftime("%Y-%m-%dT%H")
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "month":
        return moment.strftime("%Y-%m")
    return "total"


def period_start(period: str, moment: datetime) -> datetime | None:
    if period == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def _period_end(period: str, start: datetime) -> datetime:
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


class _PeriodKeys:
    """`period_key` for epoch seconds, remembering the current period's bounds: the calling
    thread's check is then two float comparisons, not a datetime and a strftime."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[float, float, str]] = {}

    def key(self, period: str, seconds: float) -> str:
        if period == "total":
            return "total"
        current = self._current.get(period)
        if current is not None and current[0] <= seconds < current[1]:
            return current[2]
        moment = _utc(seconds)
        start = period_start(period, moment)
        key = period_key(period, moment)
        self._current[period] = (start.timestamp(), _period_end(period, start).timestamp(), key)
        return key


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class BudgetBook:
    """The budgets in force and their counters: `check` on the calling thread, `account` on the worker."""

    def __init__(self, budgets: Sequence[Budget], clock: Callable[[], float] = time.time) -> None:
        self.budgets = tuple(budgets)
        self.blocking = tuple((i, b) for i, b in enumerate(self.budgets) if b.action == "raise")
        # The scope fields some blocking budget needs: the calling thread computes only these.
        self.check_fields = frozenset(k for _, b in self.blocking for k in (b.scope or ()))
        self.clock = clock
        # (budget index, scope values, period key) -> [usd, tokens]
        self.counters: dict[tuple[int, tuple[str, ...], str], list[float]] = {}
        self._warned: set[tuple[int, tuple[str, ...], str]] = set()
        self._keys = _PeriodKeys()
        self._accounted: set[str] = set()  # ids accounted on the calling thread, not yet seen by the worker
        self._lock = threading.Lock()  # the calling threads and the worker both add to the counters
        # Shared budgets (see the module docstring): this process's spend and the others', per counter key.
        self._shared: Any = None  # the store keeping the ledger
        self._own: dict[tuple[int, tuple[str, ...], str], list[float]] = {}
        self._others: dict[tuple[int, tuple[str, ...], str], list[float]] = {}
        self._run_id = ""
        self._sync_pid = 0
        self._stop = threading.Event()
        # Spend alerts: one sender for the budgets with a webhook (its thread starts at the first event).
        self.alerts = alerts.WebhookSender() if any(b.webhook for b in self.budgets) else None

    def after_fork(self) -> None:
        """A fresh lock in a forked child: a thread of the parent may have held it at fork time. A shared
        book's child is a process of its own in the ledger: its own spend starts at nothing."""
        self._lock = threading.Lock()
        if self._shared is not None:
            for key, spent in self._own.items():
                base = self.counters.get(key)
                if base is not None:
                    base[0] -= spent[0]
                    base[1] -= spent[1]
            self._own = {}
            self._stop = threading.Event()
            self._start_sync()

    # -- matching -------------------------------------------------------------------------------

    @staticmethod
    def _scope_values(budget: Budget, fields: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The counter's scope key for a call with these fields, or None when the call is out of scope."""
        if not budget.scope:
            return ()
        values = []
        for name, wanted in budget.scope.items():
            have = fields.get(name)
            if have is None or (wanted != ANY and str(have) != wanted):
                return None
            values.append(str(have))
        return tuple(values)

    # -- calling thread -----------------------------------------------------------------------

    def check(self, fields: Mapping[str, Any]) -> None:
        """Raise `BudgetExceeded` when a blocking budget in scope is used up."""
        now = None
        for index, budget in self.blocking:
            scope = self._scope_values(budget, fields)
            if scope is None:
                continue
            if now is None:
                now = self.clock()
            spent = self.counters.get((index, scope, self._keys.key(budget.period, now)))
            if spent is not None and self._over(budget, spent):
                raise BudgetExceeded(
                    f"budget {budget.label} is used up: {self._describe(budget, spent)}"
                    + (f" for {dict(zip(budget.scope, scope))}" if budget.scope else "")
                )

    @staticmethod
    def _over(budget: Budget, spent: list[float]) -> bool:
        return (budget.limit_usd is not None and spent[0] >= budget.limit_usd) or (
            budget.limit_tokens is not None and spent[1] >= budget.limit_tokens
        )

    @staticmethod
    def _describe(budget: Budget, spent: list[float]) -> str:
        parts = []
        if budget.limit_usd is not None:
            parts.append(f"spent ${spent[0]:.4f} of ${budget.limit_usd:g}")
        if budget.limit_tokens is not None:
            parts.append(f"{int(spent[1])} of {budget.limit_tokens} tokens")
        return ", ".join(parts) + f" this {budget.period}"

    def blocks(self, fields: Mapping[str, Any]) -> bool:
        """Whether a call with these fields is in the scope of a blocking budget."""
        return any(self._scope_values(budget, fields) is not None for _, budget in self.blocking)

    # -- worker (and the calling thread, for calls a blocking budget watches) ---------------------

    def account(self, record: Any) -> None:
        """Add a priced `LLMCall` to every budget in scope (pipeline processor, after pricing).

        A call under a blocking budget is accounted on the calling thread as it
        ends (`runtime.submit`), so the next call already sees it; the worker's
        pass then skips it (each record id is counted once).
        """
        if type(record) is not LLMCall:
            return
        with self._lock:
            if record.id in self._accounted:
                self._accounted.discard(record.id)
                return
            self._account(record)

    def account_now(self, record: Any) -> None:
        """Account a record on the calling thread; the worker's later `account` of it is a no-op."""
        if type(record) is not LLMCall:
            return
        with self._lock:
            self._account(record)
            self._accounted.add(record.id)

    def _account(self, record: Any) -> None:
        usd, tokens = record.cost_usd or 0.0, record.total_tokens or 0
        if not usd and not tokens:
            return
        fields = record_fields(record)
        seconds = record.started_at.timestamp() if record.started_at is not None else self.clock()
        for index, budget in enumerate(self.budgets):
            scope = self._scope_values(budget, fields)
            if scope is None:
                continue
            if budget.period == "call":
                spent = [usd, tokens]
                key = (index, scope, record.id)
            else:
                key = (index, scope, self._keys.key(budget.period, seconds))
                spent = self.counters.setdefault(key, [0.0, 0])
                spent[0] += usd
                spent[1] += tokens
                if self._shared is not None:
                    own = self._own.setdefault(key, [0.0, 0])
                    own[0] += usd
                    own[1] += tokens
            if key not in self._warned and self._over(budget, spent):
                if budget.period != "call":
                    self._warned.add(key)
                self._exceeded(budget, dict(zip(budget.scope or (), scope)), key[2], spent, record)

    def _exceeded(self, budget: Budget, scope: dict[str, str], period: str, spent: list[float], record: Any = None) -> None:
        where = f" for {scope}" if scope else ""
        log.logger.warning("tokentrail: budget %s exceeded%s: %s", budget.label, where, self._describe(budget, spent))
        if budget.on_exceed is None and budget.webhook is None:
            return
        event = BudgetEvent(budget, scope, period, spent[0], int(spent[1]), record, _utc(self.clock()))
        if budget.on_exceed is not None:
            try:
                budget.on_exceed(event)
            except Exception as exc:  # noqa: BLE001
                log.error_once("budget.on_exceed", f"tokentrail: on_exceed of budget {budget.label} raised", exc)
        if budget.webhook is not None and self.alerts is not None:
            try:
                self.alerts.post(budget.webhook, event.to_dict())  # a queue put: the sending is another thread's
            except Exception as exc:  # noqa: BLE001
                log.error_once("budget.webhook", f"tokentrail: could not queue the webhook of budget {budget.label}", exc)

    def seed(self, store: Any) -> None:
        """Start the counters from what the store already holds for the current periods; with a store that
        keeps a budget ledger, share them with every process that writes to it (module docstring)."""
        if callable(getattr(store, "budget_sync", None)) and any(b.period != "call" for b in self.budgets):
            self._share(store)
            return
        self._seed_counters(store)

    def _seed_counters(self, store: Any) -> None:
        now = _utc(self.clock())
        for index, budget in enumerate(self.budgets):
            if budget.period == "call":
                continue
            fixed = {k: v for k, v in (budget.scope or {}).items() if v != ANY}
            grouped = [k for k, v in (budget.scope or {}).items() if v == ANY]
            rows = store.summary(group_by=grouped, since=period_start(budget.period, now), where=fixed or None)
            for row in rows:
                scope = tuple(str(fixed[k]) if k in fixed else str(row[k]) for k in (budget.scope or {}))
                if any(row.get(k) is None for k in grouped):
                    continue
                key = (index, scope, period_key(budget.period, now))
                self.counters[key] = [row["cost_usd"] or 0.0, row["total_tokens"] or 0]


    # -- shared budgets ----------------------------------------------------------------------------

    def _share(self, store: Any) -> None:
        self._shared = store
        self._run_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        now = _utc(self.clock())
        try:
            self._seed_counters(store)  # what the store holds now, offered as the period's seed
            seeds: dict[tuple[int, str], list[tuple[str, float, int]]] = {}
            for (index, scope, period), spent in self.counters.items():
                seeds.setdefault((index, period), []).append((_scope_text(scope), spent[0], int(spent[1])))
            for index, budget in enumerate(self.budgets):
                if budget.period != "call":
                    period = period_key(budget.period, now)
                    store.budget_seed(budget.label, period, seeds.get((index, period), []))
            self.counters.clear()
            self.sync()
        except Exception as exc:  # noqa: BLE001 - a store that is down: counted locally until it is back
            log.error_once("budget.share", "tokentrail: could not read the shared budgets from the store; "
                           "counting this process's spend until it can", exc)
        self._start_sync()
        on_close = getattr(store, "on_close", None)
        if callable(on_close):
            on_close(self._last_sync)  # shutdown() closes the store: publish this process's spend first
        atexit.register(self._last_sync)

    def _start_sync(self) -> None:
        self._sync_pid = os.getpid()
        thread = threading.Thread(target=self._sync_loop, args=(self._stop,), name="tokentrail-budgets", daemon=True)
        thread.start()

    def _sync_loop(self, stop: threading.Event) -> None:
        while not stop.wait(SHARE_INTERVAL_S):
            if self._sync_pid != os.getpid() or getattr(self._shared, "closed", False):
                return
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001
                log.error_once("budget.sync", "tokentrail: could not share budget spend through the store; will retry", exc)

    def _last_sync(self) -> None:
        self._stop.set()
        if self._sync_pid != os.getpid() or self._shared is None or getattr(self._shared, "closed", False):
            return
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - leaving: the calls themselves are in the store
            pass

    def close(self) -> None:
        """Publish this process's spend a last time and stop sharing (the tracker's shutdown)."""
        self._last_sync()

    def sync(self) -> None:
        """Publish this process's spend, read the others', and set the counters to their sum (sync thread)."""
        store = self._shared
        now = self.clock()
        with self._lock:
            own = [(self.budgets[index].label, _scope_text(scope), period, spent[0], int(spent[1]))
                   for (index, scope, period), spent in self._own.items()]
        periods = sorted({self._keys.key(b.period, now) for b in self.budgets if b.period != "call"})
        by_label = {b.label: i for i, b in enumerate(self.budgets)}
        others: dict[tuple[int, tuple[str, ...], str], list[float]] = {}
        for label, scope, period, usd, tokens in store.budget_sync(self._run_id, own, periods):
            index = by_label.get(label)
            if index is not None:
                others[(index, tuple(json.loads(scope)), period)] = [usd, tokens]
        with self._lock:
            self._others = others
            for key in set(self.counters) | set(others) | set(self._own):
                mine = self._own.get(key, (0.0, 0))
                theirs = others.get(key, (0.0, 0))
                self.counters[key] = [mine[0] + theirs[0], mine[1] + theirs[1]]


def _scope_text(values: Sequence[str]) -> str:
    """A counter's scope values as the ledger keys them."""
    return json.dumps(list(values), separators=(",", ":"))


def record_fields(record: Any) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "customer_id": record.customer_id,
        "feature": record.feature,
        "session_id": record.session_id,
        "workflow": record.workflow,
        "provider": record.provider,
        "model": record.request_model or record.response_model,
    }


def call_fields(needed: frozenset[str], attrs: Mapping[str, Any] | None, explicit: Mapping[str, Any], workflow: Any, provider: Any, model: Any) -> dict[str, Any]:
    """The scope fields (only those in `needed`) of a call about to start (calling thread)."""
    fields: dict[str, Any] = {}
    for name in needed:
        if name == "workflow":
            fields[name] = workflow.name if workflow is not None else None
        elif name == "provider":
            fields[name] = normalize_provider(provider, model)
        elif name == "model":
            fields[name] = model
        else:
            value = explicit.get(name)
            fields[name] = value if value is not None else (attrs or {}).get(name)
    return fields
