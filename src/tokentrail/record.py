"""What tokentrail records: `LLMCall`, `ToolCall`, `Outcome`, and the `Span`s they sit under.

They are plain slots dataclasses: cheap to build on the pipeline's worker thread,
and the field order is the column order of every store.

Token rules (the OpenTelemetry convention): `input_tokens` counts *all* input
tokens, cached ones included, and `cache_read_tokens` / `cache_write_tokens` say
how many of them were cache reads and writes; `reasoning_tokens` are part of
`output_tokens`; `total_tokens = input_tokens + output_tokens`, filled in when
either side is known.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["LLMCall", "ToolCall", "Outcome", "Span", "to_dict", "kind_of", "FIELDS", "FIELD_KINDS", "RECORD_TYPES"]


@dataclass(slots=True, kw_only=True)
class LLMCall:
    id: str
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    provider: str = "unknown"
    operation: str = "chat"
    request_model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    input_cost_usd: float | None = None
    output_cost_usd: float | None = None
    stream: bool = False
    ttft_ms: float | None = None
    chunk_count: int | None = None
    finish_reasons: list[str] | None = None
    request_params: dict[str, Any] | None = None
    message_count: int | None = None
    tool_call_count: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_category: str | None = None
    status_code: int | None = None
    attempt: int | None = None
    cache_hit: bool | None = None
    user_id: str | None = None
    customer_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    workflow: str | None = None
    workflow_run_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    input_messages: list[Any] | None = None
    output_text: str | None = None
    source: str = "manual"
    sdk_version: str | None = None

    def __post_init__(self) -> None:
        if self.total_tokens is None and (self.input_tokens is not None or self.output_tokens is not None):
            self.total_tokens = (self.input_tokens or 0) + (self.output_tokens or 0)

    @property
    def model(self) -> str | None:
        """The model as the user asked for it, else as the response named it."""
        return self.request_model or self.response_model

    @property
    def failed(self) -> bool:
        return self.error_type is not None or self.error_category is not None


@dataclass(slots=True, kw_only=True)
class ToolCall:
    id: str
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    name: str = ""
    tool_call_id: str | None = None
    arguments: Any = None
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_category: str | None = None
    user_id: str | None = None
    customer_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    workflow: str | None = None
    workflow_run_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    source: str = "manual"


@dataclass(slots=True, kw_only=True)
class Outcome:
    id: str
    trace_id: str | None = None
    parent_span_id: str | None = None
    recorded_at: datetime | None = None
    name: str = ""
    value: float | None = None
    success: bool = True
    workflow: str | None = None
    workflow_run_id: str | None = None
    user_id: str | None = None
    customer_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True, kw_only=True)
class Span:
    """A structural step that LLM and tool calls sit under: a workflow run, a framework's chain,
    agent, graph node or module. Its `span_id` is the `parent_span_id` of the calls inside it."""

    id: str
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    name: str = ""
    operation: str = "invoke_workflow"
    source: str = "manual"
    error_type: str | None = None
    error_message: str | None = None
    error_category: str | None = None
    user_id: str | None = None
    customer_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    workflow: str | None = None
    workflow_run_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


RECORD_TYPES = (LLMCall, ToolCall, Outcome, Span)

FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in RECORD_TYPES
}

# The one declaration of every field's type, read off the annotations above:
# `int`, `float`, `bool`, `str`, `datetime`, `str_list` (finish reasons, tags),
# `dict` (request params, metadata) or `json` (anything else JSON can hold).
# Coercion (pending.py) and every store's columns (sinks/schema.py) derive from it.
_KIND_OF_ANNOTATION = {
    "int": "int", "float": "float", "bool": "bool", "str": "str", "datetime": "datetime",
    "list[str]": "str_list", "dict[str, Any]": "dict",
}


def _kind(annotation: str) -> str:
    bare = annotation.replace(" | None", "").strip()
    return _KIND_OF_ANNOTATION.get(bare, "json")


FIELD_KINDS: dict[type, dict[str, str]] = {
    cls: {f.name: _kind(str(f.type)) for f in dataclasses.fields(cls)} for cls in RECORD_TYPES
}

_KINDS = {LLMCall: "llm_call", ToolCall: "tool_call", Outcome: "outcome", Span: "span"}


def kind_of(record: Any) -> str:
    """`llm_call`, `tool_call` or `outcome`."""
    return _KINDS[type(record)]


def to_dict(record: Any) -> dict[str, Any]:
    """A JSON-ready dict of a record (datetimes as ISO 8601 strings), with its `type`."""
    out: dict[str, Any] = {"type": kind_of(record)}
    for name in FIELDS[type(record)]:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
