"""The callback point: frameworks that report their calls through callbacks (LiteLLM, LangChain, LlamaIndex, DSPy).

A framework's handler keeps one `Runs` and tells it what the framework
reports, keyed by the framework's own run ids:

    runs = Runs("langchain")
    runs.start_span(run_id, "my-chain", kind="chain", parent=parent_run_id)   # a chain, agent, module: a Span
    runs.start_call(run_id, provider="openai", model="gpt-4o", parent=parent_run_id)
    runs.first_chunk(run_id)                                             # time to first token
    runs.end_call(run_id, usage=usage_dict, response_id="…", output="…")  # or error=exc
    runs.end_span(run_id)

Each call is recorded once, by the innermost layer that sees it (DESIGN.md):
a framework call is opened as a span that *defers*. An SDK call made inside
it (LangChain's ChatOpenAI through the openai SDK) records itself, takes the
framework call's labels and parent, and counts itself there; the framework
call then records nothing. Only when nothing underneath recorded (a fake
model, a provider reached through the framework's own HTTP code) does the
framework's call become the record. When the framework ran its callbacks in
another context than the call (some async and thread-pool paths), the two
records meet on the worker by response id and the framework's is dropped.

Spans are never reset out of the context (a callback may end in another
context than it started in: `ContextVar.reset` would fail there); they are
marked closed, and new spans walk out past closed ones. Every method here is
safe to call with unexpected input: nothing raises into the framework.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingCall, PendingSpan
from ..runtime import check_budget, route_if_recording, submit
from ..usage import normalize_usage

__all__ = ["Runs", "FrameworkCall", "FrameworkSpan"]

_perf_ns = time.perf_counter_ns


# A framework's kind of step -> the operation its span records (OpenTelemetry's names where they fit).
_OPERATIONS = {"agent": "invoke_agent", "tool": "execute_tool"}


class FrameworkSpan(PendingSpan):
    """A chain, agent, graph node or module: the parent of the calls made inside it, recorded as a `Span`."""

    __slots__ = ()

    def __init__(self, name: str, kind: str, source: str, route: Any) -> None:
        super().__init__(name, _OPERATIONS.get(kind, "invoke_workflow"), source, route)
        self.fields["metadata"] = {"kind": kind}


class FrameworkCall(PendingCall):
    """An LLM call a framework reported; recorded only when no layer underneath recorded it."""

    absorbs = False
    defers = True
    __slots__ = ("inner", "labels", "usage")

    def __init__(self, provider: Any, model: Any, operation: Any, source: str, route: Any, labels: dict[str, Any]) -> None:
        self.inner = 0  # records made underneath (by an SDK patch): they stand for this call
        self.labels = labels
        self.usage = None
        super().__init__(provider, model, operation, source, route)

    def finish(self, error: BaseException | str | None = None) -> None:
        if self.end_ns is not None:
            return
        if error is not None and self.error is None:
            self.error = error
        self.end_ns = _perf_ns()
        if not self.inner:
            submit(self)

    def extract(self, settings: Any) -> None:
        if self.usage is not None:
            for name, value in normalize_usage(self.usage).items():
                if value is not None:
                    self.fields.setdefault(name, value)
        if self.labels:
            self.fields["metadata"] = {**self.labels, **(self.fields.get("metadata") or {})}


def _step_out(run: Any) -> None:
    """An ended run that is still this context's current span gives way to its nearest open ancestor:
    it must not stay the parent of later calls, nor keep its error (and the frames of its traceback) alive.
    (In another context than the one it was opened in, there is nothing to do.)"""
    if current_span.get() is run:
        outer = run.outer
        while outer is not None and outer.end_ns is not None:
            outer = getattr(outer, "outer", None)
        current_span.set(outer)


class Runs:
    """A framework's runs in flight, by its run ids. Thread-safe; never raises into the framework."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._open: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def _under(self, parent: Any) -> None:
        """Make the run the framework named as parent (else whatever this context holds) the current span,
        so the span or call opened next takes it as its parent."""
        with self._lock:
            found = self._open.get(parent) if parent is not None else None
        if found is not None and found is not current_span.get():
            current_span.set(found)

    def _opened(self, key: Any, run: Any) -> Any:
        with self._lock:
            self._open[key] = run
        current_span.set(run)  # never reset (see the module docstring): closed runs are walked past
        return run

    def start_span(self, key: Any, name: Any, *, kind: str = "chain", parent: Any = None) -> FrameworkSpan | None:
        """A chain/agent/module started: the calls inside it get it as parent."""
        try:
            recording, route = route_if_recording()
            if not recording:
                return None
            self._under(parent)
            return self._opened(key, FrameworkSpan(str(name), kind, self.source, route))
        except Exception as exc:  # noqa: BLE001
            log.error_once(f"callback.{self.source}.span", f"tokentrail: {self.source} reported a span we could not read", exc)
            return None

    def end_span(self, key: Any, error: BaseException | str | None = None) -> None:
        with self._lock:
            span = self._open.pop(key, None)
        if isinstance(span, FrameworkSpan):
            span.finish(error)
            _step_out(span)

    def start_call(self, key: Any, *, provider: Any = None, model: Any = None, operation: Any = "chat",
                   parent: Any = None, labels: dict[str, Any] | None = None, **fields: Any) -> FrameworkCall | None:
        """An LLM call started. Raises only `BudgetExceeded` (a budget set to `raise` refused it)."""
        try:
            recording, route = route_if_recording()
            if not recording:
                return None
            self._under(parent)
            call = FrameworkCall(provider, model, operation, self.source, route, dict(labels or {}))
            if fields:
                call.fields.update(fields)
            check_budget(call)
            return self._opened(key, call)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error_once(f"callback.{self.source}.start", f"tokentrail: {self.source} reported a call we could not read", exc)
            return None

    def first_chunk(self, key: Any) -> None:
        """The first streamed token or chunk arrived (time to first token)."""
        with self._lock:
            call = self._open.get(key)
        if isinstance(call, FrameworkCall) and call.first_chunk_ns is None:
            call.first_chunk_ns = _perf_ns()

    def end_call(self, key: Any, *, usage: Any = None, output: Any = None, messages: Any = None,
                 error: BaseException | str | None = None, **fields: Any) -> None:
        """The call ended: its usage (any spelling `normalize_usage` reads), output text, fields, or error."""
        with self._lock:
            call = self._open.pop(key, None)
        if not isinstance(call, FrameworkCall):
            return
        try:
            call.usage = usage
            if output is not None:
                call.content_out = output
            if messages is not None:
                call.content_in = messages
            for name, value in fields.items():
                if value is not None:
                    call.fields[name] = value
            call.finish(error)
            _step_out(call)
        except Exception as exc:  # noqa: BLE001
            log.error_once(f"callback.{self.source}.end", f"tokentrail: {self.source} reported an end we could not read", exc)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)
