"""What a record says in OpenTelemetry's words: span names and attributes, metric attributes, messages.

Pure functions from records to plain dicts, so the `otel` sink (otlp.py) only wires
providers and the tests can check every name against the convention.

- Every attribute name and well-known value comes from the
  `opentelemetry-semantic-conventions` package (`gen_ai_attributes`,
  `server_attributes`, `error_attributes`, `exception_attributes`,
  `http_attributes`), never retyped. A name that an older release of the package
  lacks is not emitted (the rest still is).
- Our fields that the convention has no name for go under `tokentrail.*`
  (`ours(field)`): cost, attribution, workflow, attempt, tags as
  `tokentrail.tag.<key>` (`"team:search"` -> `tokentrail.tag.team = "search"`,
  a bare `"beta"` -> `tokentrail.tag.beta = true`).
- Content (`gen_ai.input.messages`, `gen_ai.output.messages`, tool arguments
  and results) is emitted only when the record has it, that is only with
  `capture_content=True`: the core drops it otherwise. Messages are converted to
  the convention's JSON shape (role + typed parts).
- Request parameters are read under every spelling the adapters record
  (`max_tokens`, `max_completion_tokens`, `maxOutputTokens`, `num_predict`, …).
"""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace
from typing import Any

from ..record import LLMCall, Span, ToolCall

__all__ = ["names", "ours", "llm_span", "tool_span", "step_span", "metric_attributes", "error_attributes",
           "input_messages", "output_messages", "is_failed", "OUR_FIELDS"]

# Our record fields sent as `tokentrail.<field>` on LLM call spans (when set).
OUR_FIELDS = ("cost_usd", "input_cost_usd", "output_cost_usd", "user_id", "customer_id", "feature", "workflow",
              "workflow_run_id", "attempt", "cache_hit", "chunk_count", "error_category", "source")
_ATTRIBUTION = ("user_id", "customer_id", "feature", "workflow", "workflow_run_id", "source", "error_category")


def ours(field: str) -> str:
    """The attribute name of one of our own fields: `tokentrail.<field>`."""
    return f"tokentrail.{field}"


@functools.lru_cache(maxsize=None)
def names() -> SimpleNamespace:
    """The convention's attribute names and values this module uses, read once from the package."""
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g
    from opentelemetry.semconv.attributes import error_attributes, exception_attributes, http_attributes, server_attributes

    def optional(name: str) -> str | None:
        return getattr(g, name, None)

    # request parameter keys as adapters record them -> attribute; the first key found wins
    params = {
        g.GEN_AI_REQUEST_TEMPERATURE: ("temperature",),
        g.GEN_AI_REQUEST_TOP_P: ("top_p", "topP", "p"),
        g.GEN_AI_REQUEST_TOP_K: ("top_k", "topK", "k"),
        g.GEN_AI_REQUEST_MAX_TOKENS: ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens",
                                      "maxTokens", "max_new_tokens", "max_gen_len", "maxTokenCount", "num_predict",
                                      "max_tokens_to_sample"),
        g.GEN_AI_REQUEST_STOP_SEQUENCES: ("stop_sequences", "stop", "stopSequences", "end_sequences"),  # strings
        g.GEN_AI_REQUEST_FREQUENCY_PENALTY: ("frequency_penalty", "frequencyPenalty"),
        g.GEN_AI_REQUEST_PRESENCE_PENALTY: ("presence_penalty", "presencePenalty"),
        optional("GEN_AI_REQUEST_SEED"): ("seed", "random_seed"),
        optional("GEN_AI_REQUEST_CHOICE_COUNT"): ("n", "candidate_count", "candidateCount", "num_generations", "choice_count"),
    }
    ops = g.GenAiOperationNameValues
    return SimpleNamespace(
        OPERATION=g.GEN_AI_OPERATION_NAME,
        PROVIDER=optional("GEN_AI_PROVIDER_NAME") or g.GEN_AI_SYSTEM,  # the older name, in older releases
        REQUEST_MODEL=g.GEN_AI_REQUEST_MODEL,
        REQUEST_STREAM=optional("GEN_AI_REQUEST_STREAM"),
        RESPONSE_ID=g.GEN_AI_RESPONSE_ID,
        RESPONSE_MODEL=g.GEN_AI_RESPONSE_MODEL,
        FINISH_REASONS=g.GEN_AI_RESPONSE_FINISH_REASONS,
        TIME_TO_FIRST_CHUNK=optional("GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK"),
        INPUT_TOKENS=g.GEN_AI_USAGE_INPUT_TOKENS,
        OUTPUT_TOKENS=g.GEN_AI_USAGE_OUTPUT_TOKENS,
        CACHE_WRITE_TOKENS=optional("GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS"),
        CACHE_READ_TOKENS=optional("GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS"),
        REASONING_TOKENS=optional("GEN_AI_USAGE_REASONING_OUTPUT_TOKENS"),
        CONVERSATION_ID=optional("GEN_AI_CONVERSATION_ID"),
        INPUT_MESSAGES=optional("GEN_AI_INPUT_MESSAGES"),
        OUTPUT_MESSAGES=optional("GEN_AI_OUTPUT_MESSAGES"),
        TOOL_NAME=g.GEN_AI_TOOL_NAME,
        TOOL_CALL_ID=g.GEN_AI_TOOL_CALL_ID,
        TOOL_CALL_ARGUMENTS=optional("GEN_AI_TOOL_CALL_ARGUMENTS"),
        TOOL_CALL_RESULT=optional("GEN_AI_TOOL_CALL_RESULT"),
        WORKFLOW_NAME=optional("GEN_AI_WORKFLOW_NAME"),
        AGENT_NAME=g.GEN_AI_AGENT_NAME,
        TOKEN_TYPE=g.GEN_AI_TOKEN_TYPE,
        TOKEN_INPUT=g.GenAiTokenTypeValues.INPUT.value,
        TOKEN_OUTPUT=g.GenAiTokenTypeValues.OUTPUT.value,
        EXECUTE_TOOL=ops.EXECUTE_TOOL.value,
        INVOKE_AGENT=ops.INVOKE_AGENT.value,
        INVOKE_WORKFLOW=getattr(getattr(ops, "INVOKE_WORKFLOW", None), "value", None),
        SERVER_ADDRESS=server_attributes.SERVER_ADDRESS,
        SERVER_PORT=server_attributes.SERVER_PORT,
        ERROR_TYPE=error_attributes.ERROR_TYPE,
        ERROR_OTHER=error_attributes.ErrorTypeValues.OTHER.value,
        EXCEPTION_TYPE=exception_attributes.EXCEPTION_TYPE,
        EXCEPTION_MESSAGE=exception_attributes.EXCEPTION_MESSAGE,
        HTTP_STATUS=http_attributes.HTTP_RESPONSE_STATUS_CODE,
        PARAMS={name: (keys, _strings if name == g.GEN_AI_REQUEST_STOP_SEQUENCES else _number)
                for name, keys in params.items() if name},
    )


# -- values ---------------------------------------------------------------------------------------------


def _put(out: dict[str, Any], name: str | None, value: Any) -> None:
    """Set an attribute when the convention has the name and the value is one OpenTelemetry can carry."""
    if name is None or value is None:
        return
    if isinstance(value, (bool, str, int, float)):
        out[name] = value
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        out[name] = list(value)


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value) or None
    return None


def is_failed(record: Any) -> bool:
    return getattr(record, "error_type", None) is not None or getattr(record, "error_category", None) is not None


def error_attributes(record: Any) -> dict[str, Any]:
    """`error.type` (the exception's class name, else `_OTHER`) for a failed record; empty otherwise."""
    if not is_failed(record):
        return {}
    n = names()
    return {n.ERROR_TYPE: record.error_type or n.ERROR_OTHER}


def _server(out: dict[str, Any], metadata: dict[str, Any] | None) -> None:
    """`server.address` / `server.port`, where an adapter or `set_llm_attributes` put them in metadata."""
    if not metadata:
        return
    n = names()
    address = metadata.get("server_address")
    if isinstance(address, str) and address:
        out[n.SERVER_ADDRESS] = address
        port = metadata.get("server_port")
        if isinstance(port, int) and not isinstance(port, bool):
            out[n.SERVER_PORT] = port
        elif isinstance(port, str) and port.isdigit():
            out[n.SERVER_PORT] = int(port)


def _tags(out: dict[str, Any], tags: list[str] | None) -> None:
    for tag in tags or ():
        key, sep, value = str(tag).partition(":")
        out[ours(f"tag.{key.strip()}")] = value.strip() if sep else True


def _ours(out: dict[str, Any], record: Any, fields: tuple[str, ...]) -> None:
    for field in fields:
        _put(out, ours(field), getattr(record, field, None))
    _put(out, ours("record_id"), record.id)
    _tags(out, record.tags)


# -- spans ----------------------------------------------------------------------------------------------


def llm_span(record: LLMCall) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) of one LLM call: `{operation} {model}` and every `gen_ai.*` field it has."""
    n = names()
    out: dict[str, Any] = {n.OPERATION: record.operation, n.PROVIDER: record.provider}
    _put(out, n.REQUEST_MODEL, record.request_model)
    _put(out, n.RESPONSE_MODEL, record.response_model)
    _put(out, n.RESPONSE_ID, record.response_id)
    _put(out, n.FINISH_REASONS, record.finish_reasons)
    _put(out, n.REQUEST_STREAM, bool(record.stream))
    if record.stream and record.ttft_ms is not None:
        _put(out, n.TIME_TO_FIRST_CHUNK, record.ttft_ms / 1000)
    params = record.request_params or {}
    for name, (keys, convert) in n.PARAMS.items():
        value = next((params[k] for k in keys if params.get(k) is not None), None)
        _put(out, name, convert(value))
    _put(out, n.INPUT_TOKENS, record.input_tokens)
    _put(out, n.OUTPUT_TOKENS, record.output_tokens)
    _put(out, n.CACHE_READ_TOKENS, record.cache_read_tokens)
    _put(out, n.CACHE_WRITE_TOKENS, record.cache_write_tokens)
    _put(out, n.REASONING_TOKENS, record.reasoning_tokens)
    _put(out, n.CONVERSATION_ID, record.session_id)
    _server(out, record.metadata)
    out.update(error_attributes(record))
    if record.failed and record.status_code is not None:
        out[n.HTTP_STATUS] = record.status_code
    if record.input_messages is not None:
        _put(out, n.INPUT_MESSAGES, input_messages(record.input_messages))
    if record.output_text is not None:
        _put(out, n.OUTPUT_MESSAGES, output_messages(record.output_text, record.finish_reasons))
    _ours(out, record, OUR_FIELDS)
    if (record.metadata or {}).get("tokens_estimated"):
        out[ours("tokens_estimated")] = str(record.metadata["tokens_estimated"])
    model = record.request_model or record.response_model
    return (f"{record.operation} {model}" if model else record.operation), out


def tool_span(record: ToolCall) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) of one tool execution: `execute_tool {name}`."""
    n = names()
    out: dict[str, Any] = {n.OPERATION: n.EXECUTE_TOOL, n.TOOL_NAME: record.name}
    _put(out, n.TOOL_CALL_ID, record.tool_call_id)
    _put(out, n.CONVERSATION_ID, record.session_id)
    if record.arguments is not None:
        _put(out, n.TOOL_CALL_ARGUMENTS, _json(record.arguments))
    if record.result is not None:
        _put(out, n.TOOL_CALL_RESULT, _json(record.result))
    out.update(error_attributes(record))
    _ours(out, record, _ATTRIBUTION)
    return f"{n.EXECUTE_TOOL} {record.name}".strip(), out


def step_span(record: Span) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) of a workflow run or a framework's chain/agent/tool: `{operation} {name}`,
    the name under `gen_ai.workflow.name`, `gen_ai.agent.name` or `gen_ai.tool.name` by operation."""
    n = names()
    out: dict[str, Any] = {n.OPERATION: record.operation}
    named = {n.INVOKE_AGENT: n.AGENT_NAME, n.EXECUTE_TOOL: n.TOOL_NAME}.get(record.operation, n.WORKFLOW_NAME)
    _put(out, named, record.name)
    _put(out, n.CONVERSATION_ID, record.session_id)
    out.update(error_attributes(record))
    _ours(out, record, _ATTRIBUTION)
    kind = (record.metadata or {}).get("kind")
    _put(out, ours("kind"), kind if isinstance(kind, str) else None)
    return f"{record.operation} {record.name}".strip(), out


# -- metrics --------------------------------------------------------------------------------------------


def metric_attributes(record: LLMCall) -> dict[str, Any]:
    """The convention's low-cardinality attributes shared by the GenAI client metrics (no `error.type`)."""
    n = names()
    out: dict[str, Any] = {n.OPERATION: record.operation, n.PROVIDER: record.provider}
    _put(out, n.REQUEST_MODEL, record.request_model)
    _put(out, n.RESPONSE_MODEL, record.response_model)
    _server(out, record.metadata)
    return out


# -- content --------------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _part(item: Any) -> list[dict[str, Any]]:
    """One content item (a string, an OpenAI / Anthropic / Gemini part) as the convention's parts."""
    if isinstance(item, str):
        return [{"type": "text", "content": item}]
    if not isinstance(item, dict):
        return [{"type": "text", "content": str(item)}]
    kind = item.get("type")
    if isinstance(item.get("text"), str) and kind in (None, "text", "input_text", "output_text"):
        return [{"type": "text", "content": item["text"]}]
    if kind == "tool_use" or "function_call" in item or "functionCall" in item:
        call = item.get("function_call") or item.get("functionCall") or item
        return [{"type": "tool_call", "id": item.get("id"), "name": call.get("name"),
                 "arguments": call.get("input", call.get("args", call.get("arguments")))}]
    if kind == "tool_result" or "function_response" in item or "functionResponse" in item:
        response = item.get("function_response") or item.get("functionResponse") or item
        return [{"type": "tool_call_response", "id": item.get("tool_use_id") or response.get("id"),
                 "response": response.get("content", response.get("response"))}]
    # images, audio, files: the kind only (their data would swamp the span)
    return [{"type": kind if isinstance(kind, str) else "generic"}]


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, (list, tuple)):
        return [part for item in content for part in _part(item)]
    return _part(content)


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "user", "parts": _parts(message)}
    role = message.get("role") or "user"
    role = "assistant" if role == "model" else role  # Gemini's name
    parts = _parts(message.get("content") if "content" in message else message.get("parts"))
    if role == "tool" and message.get("tool_call_id") is not None:  # OpenAI's tool result message
        parts = [{"type": "tool_call_response", "id": message["tool_call_id"], "response": message.get("content")}]
    for call in message.get("tool_calls") or ():  # OpenAI's assistant tool calls
        call = call if isinstance(call, dict) else {}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                      "arguments": function.get("arguments")})
    return {"role": str(role), "parts": parts}


def input_messages(messages: list[Any]) -> str:
    """`gen_ai.input.messages`: the recorded messages as the convention's JSON (role + parts)."""
    return json.dumps([_message(m) for m in messages], default=str, ensure_ascii=False)


def output_messages(text: str, finish_reasons: list[str] | None) -> str:
    """`gen_ai.output.messages`: the recorded output text as one assistant message."""
    message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    if finish_reasons:
        message["finish_reason"] = finish_reasons[0]
    return json.dumps([message], ensure_ascii=False)
