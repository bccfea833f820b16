"""An in-memory sink: records kept in lists, for tests and for `tracking()`."""

from __future__ import annotations

import threading
from typing import Any, Sequence

from ..record import LLMCall, Outcome, Span, ToolCall

__all__ = ["InMemorySink"]


class InMemorySink:
    kind = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[LLMCall] = []
        self._tool_calls: list[ToolCall] = []
        self._outcomes: list[Outcome] = []
        self._spans: list[Span] = []

    def export(self, records: Sequence[Any]) -> None:
        with self._lock:
            for record in records:
                if isinstance(record, LLMCall):
                    self._calls.append(record)
                elif isinstance(record, ToolCall):
                    self._tool_calls.append(record)
                elif isinstance(record, Outcome):
                    self._outcomes.append(record)
                elif isinstance(record, Span):
                    self._spans.append(record)

    def before_read(self) -> None:
        """Hook for subclasses that must wait for records still in flight."""

    def counts(self) -> tuple[int, int, int]:
        """How many calls, tool calls and outcomes are here now (no waiting)."""
        with self._lock:
            return len(self._calls), len(self._tool_calls), len(self._outcomes)

    @property
    def calls(self) -> list[LLMCall]:
        self.before_read()
        with self._lock:
            return list(self._calls)

    @property
    def tool_calls(self) -> list[ToolCall]:
        self.before_read()
        with self._lock:
            return list(self._tool_calls)

    @property
    def outcomes(self) -> list[Outcome]:
        self.before_read()
        with self._lock:
            return list(self._outcomes)

    @property
    def spans(self) -> list[Span]:
        self.before_read()
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._tool_calls.clear()
            self._outcomes.clear()
            self._spans.clear()
