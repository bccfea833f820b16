"""`console`: one short line per record on stderr, for development.

One line always: error messages, names and model ids are folded onto one line
(newlines and runs of spaces become one space) and long messages are cut.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO

from ..record import LLMCall, Outcome, Span, ToolCall

__all__ = ["ConsoleSink", "describe"]

_MESSAGE_MAX = 200


def _line(text: object, limit: int = _MESSAGE_MAX) -> str:
    """`text` on one line, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
        parts = [_line(record.provider), _line(record.model or "?"), record.operation, _tokens(record), cost]
        if record.duration_ms is not None:
            parts.append(f"{record.duration_ms:.0f} ms")
        if record.error_category:
            parts.append(f"ERROR {record.error_category}: {_line(record.error_message or record.error_type)}")
        return " ".join(parts)
    if isinstance(record, ToolCall):
        status = f" ERROR {_line(record.error_message)}" if record.error_type else ""
        return f"tool {_line(record.name)} {record.duration_ms or 0:.0f} ms{status}"
    if isinstance(record, Outcome):
        return f"outcome {_line(record.name)}={record.value} success={record.success} workflow={record.workflow}"
    if isinstance(record, Span):
        status = f" ERROR {_line(record.error_message)}" if record.error_type else ""
        return f"{record.operation} {_line(record.name)} {record.duration_ms or 0:.0f} ms{status}"
    return _line(repr(record))


class ConsoleSink:
    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def export(self, records: Sequence[Any]) -> None:
        stream = self.stream or sys.stderr
        stream.write("".join(f"tokentrail: {describe(r)}\n" for r in records))
        stream.flush()
