"""The `ollama` SDK (>= 0.4): every call through `Client._request` / `AsyncClient._request`.

Recorded: `chat` (tools, streams), `generate` (`text_completion`), `embed`
and the legacy `embeddings` (`embeddings`), from the client classes and the
module-level `ollama.chat(...)` & co. (they use a default `Client`). Model
management (`pull`, `list`, `show`, …) and web search pass through untouched.

- Streams: with `stream=True` the SDK returns a generator (an async one from
  `AsyncClient`) whose HTTP request starts on the first iteration; the core's
  stream proxy records it, timed from the call. A stream left before its last
  object has no counts and `metadata["stream_incomplete"]`.
- Usage: the last object (`done: true`) has `prompt_eval_count` (input, the
  whole prompt) and `eval_count` (output); newer servers add
  `prompt_eval_cached_count` (`cache_read_tokens`). Servers before mid-2024
  left `prompt_eval_count` out when the prompt came from their cache: input
  tokens are then unknown, not 0. The legacy `embeddings` endpoint reports no
  counts: its tokens are unknown. There is no response id.
- `done_reason` is the finish reason; tool calls are counted from the
  message(s). Ollama's timings (nanoseconds on the wire) are kept in metadata
  in ms: `load_duration_ms`, `prompt_eval_duration_ms`, `eval_duration_ms`,
  `total_duration_ms`, and `eval_tokens_per_s`.
- Request parameters: the `options` (temperature, num_predict, num_ctx, …)
  and `format`, `think`, `keep_alive`, under Ollama's own names.
- Cost: a model served by Ollama runs on your hardware, so a call costs $0
  (`cost_usd = 0.0`; `pricing.LOCAL_PROVIDERS`, for every call with provider
  `ollama`, this SDK's or not) — unless you priced the model yourself
  (`prices=` / `[prices]`), then that price applies. (Ollama's model names would otherwise
  match cloud prices: `deepseek-r1:8b` is not DeepSeek's API.)
- Errors: `ollama.ResponseError` (`status_code`; -1 for an error inside a
  stream) and the builtin `ConnectionError` when no server runs
  (`connection`); a stream raises `httpx.ConnectError` instead (also
  `connection`).
"""

from __future__ import annotations

from typing import Any

from ..shapes import fields_of, pick
from .endpoint import Call, Endpoint, no_response, params, usage_fields
from .method_point import method

NAME = "ollama"
DISTRIBUTION = "ollama"
MIN_VERSION = (0, 4)
PATCHES = (
    method("ollama._client", "Client", "_request", "sync"),
    method("ollama._client", "AsyncClient", "_request", "async"),
)

_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "num_predict", "num_ctx", "seed", "stop",
            "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "mirostat", "num_keep")
_GENERATE = ("format", "think", "keep_alive", "logprobs", "top_logprobs", "raw")  # not `stream`: the SDK always sends it; the record says it
_EMBED = ("truncate", "dimensions", "keep_alive")
_DURATIONS = ("load_duration", "prompt_eval_duration", "eval_duration", "total_duration")
def request_params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    options = body.get("options")
    found = (params(options, _OPTIONS) or {}) if isinstance(options, dict) else {}
    return {**found, **(params(body, names) or {})} or None


# -- requests ----------------------------------------------------------------------------------------


def chat_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    messages = body.get("messages")
    return {"request_params": request_params(body, _GENERATE),
            "message_count": len(messages) if isinstance(messages, list) else None}, messages or None


def generate_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    messages = [{"role": role, "content": body[key]} for role, key in (("system", "system"), ("user", "prompt")) if body.get(key)]
    return {"request_params": request_params(body, _GENERATE), "message_count": len(messages)}, messages or None


def embed_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {"request_params": request_params(body, _EMBED)}, body.get("input")


def embeddings_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {"request_params": request_params(body, ("keep_alive",))}, body.get("prompt")


# -- responses ---------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def final_fields(data: Any) -> dict[str, Any]:
    """What the last object (`done: true`) says: model, finish reason, counts, timings.

    Timings are returned as top-level names, which the core files under
    `metadata` (a `metadata` dict from a stream's reader would be dropped:
    the core sets the stream's own metadata first).
    """
    data = fields_of(data)  # several of these fields are optional: a dict answers "missing" cheaply
    reason = pick(data, "done_reason")
    fields = {
        "response_model": pick(data, "model"),
        "finish_reasons": [reason] if isinstance(reason, str) and reason else None,
        **usage_fields({"input_tokens": pick(data, "prompt_eval_count"), "output_tokens": pick(data, "eval_count"),
                        # newer servers: the prompt tokens read from the KV cache (part of prompt_eval_count);
                        # ollama-python 0.6 drops the field, a release that keeps it gets it recorded
                        "cache_read_tokens": pick(data, "prompt_eval_cached_count")}),
    }
    for name in _DURATIONS:
        value = pick(data, name)
        if _number(value):
            fields[f"{name}_ms"] = value / 1e6
    count, spent = pick(data, "eval_count"), pick(data, "eval_duration")
    if _number(count) and _number(spent) and spent > 0:
        fields["eval_tokens_per_s"] = count / (spent / 1e9)
    return fields


def _tool_calls(message: Any) -> int:
    calls = pick(message, "tool_calls")
    return len(calls) if isinstance(calls, (list, tuple)) else 0


def chat_response(data: Any) -> tuple[dict[str, Any], Any]:
    message = pick(data, "message")
    return {**final_fields(data), "tool_call_count": _tool_calls(message)}, pick(message, "content") or None


def generate_response(data: Any) -> tuple[dict[str, Any], Any]:
    return final_fields(data), pick(data, "response") or None


def embed_response(data: Any) -> tuple[dict[str, Any], Any]:
    return final_fields(data), None


def _stream_end(chunks: list[Any]) -> dict[str, Any]:
    """The final object (`done: true`), else the first one (a stream left early: only the model is known)."""
    final = next((c for c in reversed(chunks) if pick(c, "done") is True), None)
    if final is not None:
        return final_fields(final)
    return {"response_model": pick(chunks, 0, "model")}


def _text(pieces: Any) -> str | None:
    return "".join(p for p in pieces if isinstance(p, str)) or None


def chat_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    messages = [pick(c, "message") for c in chunks]
    fields = {**_stream_end(chunks), "tool_call_count": sum(_tool_calls(m) for m in messages)}
    return fields, _text(pick(m, "content") for m in messages)


def generate_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    return _stream_end(chunks), _text(pick(c, "response") for c in chunks)


ENDPOINTS = {
    "/api/chat": Endpoint("chat", chat_request, chat_response, chat_chunks),
    "/api/generate": Endpoint("text_completion", generate_request, generate_response, generate_chunks),
    "/api/embed": Endpoint("embeddings", embed_request, embed_response),
    "/api/embeddings": Endpoint("embeddings", embeddings_request, no_response),
}


def call_of(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """`_request(cls, method, path, *, stream=False, json=body)`: the endpoint its path names, or None."""
    path = args[2] if len(args) > 2 else kwargs.get("url")
    endpoint = ENDPOINTS.get(path) if isinstance(path, str) else None
    if endpoint is None:
        return None
    body = kwargs.get("json")
    model = body.get("model") if type(body) is dict else None
    return Call(endpoint, body, model, bool(kwargs.get("stream")))


def provider_of(client: Any) -> str:
    return NAME  # the local server or Ollama's cloud: Ollama either way


def base_url_of(client: Any) -> Any:
    # The httpx client the SDK made for its host (read by name: `_client` is the SDK's attribute, and
    # the architecture test reserves `obj._name` spellings for tokentrail's own privates).
    return getattr(client, "_client").base_url
