"""The `anthropic` SDK (>= 0.32): Messages (and `beta.messages`), streams, `count_tokens`, legacy completions.

Everything goes through `SyncAPIClient.request` / `AsyncAPIClient.request`,
including the `messages.stream()` helper (its `text_stream` and
`get_final_message()` read the same chunks we see) and the Bedrock and Vertex
clients shipped in the package, which record `aws.bedrock` and `gcp.vertex_ai`.

Anthropic reports cache reads and writes apart from `input_tokens`; the record
adds them in (`input_tokens` counts all input, as OpenTelemetry does).
`messages.count_tokens` is not billed: it is recorded with its operation
(`count_tokens`), a cost of 0, and the count in `metadata["counted_input_tokens"]`
rather than in `input_tokens`, so token totals stay what was consumed.
"""

from __future__ import annotations

from itertools import repeat
from operator import not_
from typing import Any

from ..semconv import provider_from_url
from ..shapes import pick
from .endpoint import Endpoint, free_count, params, usage_fields
from .request_point import stainless_call_of, stainless_patches

NAME = "anthropic"
DISTRIBUTION = "anthropic"
MIN_VERSION = (0, 32)
PATCHES = stainless_patches("anthropic")

_PARAMS = ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "tool_choice", "thinking", "service_tier", "stream")


_PARAM_SET = frozenset(_PARAMS)


def messages_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    messages = body.get("messages")
    messages = list(messages) if isinstance(messages, (list, tuple)) else []
    if body.get("system"):
        messages = [{"role": "system", "content": body["system"]}, *messages]
    present = [key for key in body if key in _PARAM_SET]  # a request sets few of the parameters
    if len(present) > 1:
        present.sort(key=_PARAMS.index)
    request_params = params(body, tuple(present))
    budget = pick(body, "thinking", "budget_tokens")
    if request_params is not None and budget is not None:
        request_params["thinking_budget_tokens"] = budget
    return {"request_params": request_params, "message_count": len(messages)}, messages or None


def _text(blocks: Any) -> str | None:
    texts = [pick(b, "text") for b in blocks or () if pick(b, "type") == "text"]
    return "".join(t for t in texts if isinstance(t, str)) or None


def messages_response(data: Any) -> tuple[dict[str, Any], Any]:
    if type(data) is dict:  # parsed JSON (the worker's usual case): plain lookups
        content = data.get("content") or ()
        if type(content) is list and all(type(block) is dict for block in content):
            stop = data.get("stop_reason")
            texts = [block.get("text") for block in content if block.get("type") == "text"]
            fields = {"response_id": data.get("id"), "response_model": data.get("model"),
                      "finish_reasons": [stop] if stop else None,
                      "tool_call_count": sum(1 for b in content if b.get("type") in ("tool_use", "server_tool_use"))}
            fields.update(usage_fields(data.get("usage")))
            return fields, "".join(t for t in texts if isinstance(t, str)) or None
    content = pick(data, "content") or ()
    return {
        "response_id": pick(data, "id"),
        "response_model": pick(data, "model"),
        "finish_reasons": [pick(data, "stop_reason")] if pick(data, "stop_reason") else None,
        "tool_call_count": sum(1 for b in content if pick(b, "type") in ("tool_use", "server_tool_use")),
        **usage_fields(pick(data, "usage")),
    }, _text(content)


def messages_chunks(events: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    text: list[str] = []
    tools = 0
    chunks = 0
    for event in events:
        if type(event) is dict:  # parsed JSON (the worker's usual case): plain lookups
            kind = event.get("type")
            if kind == "content_block_delta":
                delta = event.get("delta")
                piece = delta.get("text") if type(delta) is dict else pick(delta, "text")
                if type(piece) is str:
                    text.append(piece)
                chunks += 1
                continue
        else:
            kind = pick(event, "type")
        if kind != "ping":  # the SDK does not yield pings
            chunks += 1
        if kind == "message_start":
            message = pick(event, "message")
            fields["response_id"] = pick(message, "id")
            fields["response_model"] = pick(message, "model")
            usage.update(_usage_dict(pick(message, "usage")))
        elif kind == "content_block_start":
            tools += pick(event, "content_block", "type") in ("tool_use", "server_tool_use")
        elif kind == "content_block_delta":
            piece = pick(event, "delta", "text")
            if isinstance(piece, str):
                text.append(piece)
        elif kind == "message_delta":
            usage.update(_usage_dict(pick(event, "usage")))  # output_tokens there is cumulative
            if pick(event, "delta", "stop_reason"):
                fields["finish_reasons"] = [pick(event, "delta", "stop_reason")]
    fields["tool_call_count"] = tools
    fields["chunk_count"] = chunks
    fields.update(usage_fields(usage or None))
    return fields, "".join(text) or None


_TEXT_EVENTS = (b'{"type":"content_block_delta"', b'{"type": "content_block_delta"')


def _messages_plan(payloads: list[bytes]) -> list[bool]:
    """Which events the worker must parse when content is not kept: all but `content_block_delta`
    (pieces of text or of a tool's arguments). The type is the first key of every event Anthropic sends."""
    return list(map(not_, map(bytes.startswith, payloads, repeat(_TEXT_EVENTS))))


messages_chunks.sse_plan = _messages_plan  # type: ignore[attr-defined]


def _usage_dict(usage: Any) -> dict[str, Any]:
    keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    return {k: v for k in keys if (v := pick(usage, k)) is not None}


def count_tokens_response(data: Any) -> tuple[dict[str, Any], Any]:
    return free_count(pick(data, "input_tokens")), None


def completion_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {"request_params": params(body, ("max_tokens_to_sample", "temperature", "top_p", "top_k", "stream"))}, body.get("prompt")


def completion_response(data: Any) -> tuple[dict[str, Any], Any]:
    return {"response_id": pick(data, "id"), "response_model": pick(data, "model"),
            "finish_reasons": [pick(data, "stop_reason")] if pick(data, "stop_reason") else None}, pick(data, "completion")


def completion_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    last = chunks[-1] if chunks else None
    text = "".join(p for p in (pick(c, "completion") for c in chunks) if isinstance(p, str))
    return {"response_id": pick(last, "id"), "response_model": pick(last, "model"),
            "finish_reasons": [pick(last, "stop_reason")] if pick(last, "stop_reason") else None}, text or None


MESSAGES = Endpoint("chat", messages_request, messages_response, messages_chunks)
ENDPOINTS = {
    "/v1/messages": MESSAGES,
    "/v1/messages/count_tokens": Endpoint("count_tokens", messages_request, count_tokens_response),
    "/v1/complete": Endpoint("text_completion", completion_request, completion_response, completion_chunks),
}


call_of = stainless_call_of(ENDPOINTS)


def provider_of(client: Any) -> str:
    kind = type(client).__name__
    if "Bedrock" in kind:
        return "aws.bedrock"
    if "Vertex" in kind:
        return "gcp.vertex_ai"
    return provider_from_url(str(getattr(client, "base_url", "")), default="anthropic")
