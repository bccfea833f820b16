"""What an adapter declares about one API endpoint, and the request readers every adapter shares.

An adapter says *what* a call is — never how to time, queue or catch it:

- `Endpoint`: the operation and three pure functions over the request body,
  the response and the stream chunks, each returning `(fields, content)`:
  record fields (None values are ignored) and the request messages / response
  text. They run on the pipeline's worker, never in the application's call.
- `Call`: what the adapter's `call_of(instance, args, kwargs)` returns when a
  patched method is called: the endpoint, the request body (a reference, not
  a copy), the model asked for, and whether the result is a stream.

Whether content is kept is decided in the core (`capture_content`): an
endpoint always hands its messages and text over.
"""

from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

from ..usage import known_usage

__all__ = ["Endpoint", "Call", "params", "usage_fields", "json_value", "no_response", "free_count"]

Reader = Callable[[Any], "tuple[dict[str, Any], Any]"]


class Endpoint:
    """One API endpoint: its operation and how to read its request, response and stream chunks.

    `keep(result)` runs on the calling thread when the call returns and says
    what to hold until the worker runs (default: the result itself); SDKs
    that hand back raw bytes or text keep those, which costs nothing to hold.
    `chunk(item)` does the same per stream item. What is kept is decoded
    (`json_value`: bytes and text parsed as JSON) before `response`/`chunks` see it.
    """

    __slots__ = ("operation", "request", "response", "chunks", "keep", "chunk")

    def __init__(
        self,
        operation: str,
        request: Reader,
        response: Reader,
        chunks: Callable[[list[Any]], tuple[dict[str, Any], Any]] | None = None,
        *,
        keep: Callable[[Any], Any] | None = None,
        chunk: Callable[[Any], Any] | None = None,
    ) -> None:
        self.operation, self.request, self.response, self.chunks = operation, request, response, chunks
        self.keep, self.chunk = keep, chunk


class Call(NamedTuple):
    """A call an adapter recognised: record it with this endpoint (`call_of` returns None to let it pass)."""

    endpoint: Endpoint
    body: Any = None
    model: Any = None
    stream: bool = False


# The SDKs' markers for "argument not given" (falsy sentinels), which may sit in a request body.
_NOT_GIVEN = ("Omit", "NotGiven", "Unset", "OptionalNullable", "UnsetType")


def params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    """The request's generation parameters; structured ones reduced to their `type` (no content)."""
    out = {}
    for name in names:
        value = body.get(name)
        if value is None or type(value).__name__ in _NOT_GIVEN:
            continue
        if isinstance(value, dict):
            value = value.get("type") or value.get("effort") or {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
        out[name] = value
    return out or None


# Our token fields from any usage spelling, the unknown ones left out (no wrapper frame: every record reads it).
usage_fields = known_usage


def json_value(raw: Any) -> Any:
    """Bytes or text parsed as JSON (None when they are not: `[DONE]`, audio, a torn body); anything else as it is."""
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


def no_response(data: Any) -> tuple[dict[str, Any], Any]:
    """For endpoints whose response has nothing to record (audio bytes, an empty body)."""
    return {}, None


def free_count(counted: Any) -> dict[str, Any]:
    """The fields of a token-counting call (Anthropic's `count_tokens`, Gemini's `countTokens`, Bedrock's
    `CountTokens`): not billed, so it costs 0, and the count goes in `metadata["counted_input_tokens"]`
    rather than `input_tokens`, so token totals stay what was consumed."""
    return {"cost_usd": 0.0, "input_cost_usd": 0.0, "output_cost_usd": 0.0,
            "metadata": {"counted_input_tokens": counted}}
