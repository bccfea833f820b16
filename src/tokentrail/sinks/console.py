"""`console`: one short line per record on stderr, for development."""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO

from ..record import LLMCall, Outcome, Span, ToolCall

__all__ = ["ConsoleSink", "describe"]


def _tokens(call: LLMCall) -> str:
    if call.input_tokens is None and call.output_tokens is None:
        return "tokens ?"
    text = f"{call.input_tokens or 0}->{call.output_tokens or 0} tok"
    if call.cache_read_tokens:
        text += f" ({call.cache_read_tokens} cached)"
    return text


def describe(record: Any) -> str:
    """A one-line human summary of a record."""
    if isinstance(record, LLMCall):
        cost = "$?" if record.cost_usd is None else f"${record.cost_usd:.6f}"
        parts = [record.provider, record.model or "?", record.operation, _tokens(record), cost]
        if record.duration_ms is not None:
            parts.append(f"{record.duration_ms:.0f} ms")
        if record.error_category:
            parts.append(f"ERROR {record.error_category}: {record.error_message or record.error_type}")
        return " ".join(parts)
    if isinstance(record, ToolCall):
        status = f" ERROR {record.error_message}" if record.error_type else ""
        return f"tool {record.name} {record.duration_ms or 0:.0f} ms{status}"
    if isinstance(record, Outcome):
        return f"outcome {record.name}={record.value} success={record.success} workflow={record.workflow}"
    if isinstance(record, Span):
        status = f" ERROR {record.error_message}" if record.error_type else ""
        return f"{record.operation} {record.name} {record.duration_ms or 0:.0f} ms{status}"
    return repr(record)


class ConsoleSink:
    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def export(self, records: Sequence[Any]) -> None:
        stream = self.stream or sys.stderr
        stream.write("".join(f"tokentrail: {describe(r)}\n" for r in records))
        stream.flush()
