"""The fake provider speaking Mistral's API, as `mistralai` (>= 2) sends it to La Plateforme, Azure and Vertex AI.

Served: chat completions and FIM (`/v1/chat/completions`, `/v1/fim/completions`),
agents completions (`/v1/agents/completions`), embeddings (`/v1/embeddings`),
moderations (`/v1/moderations`, `/v1/chat/moderations`) and the Conversations API
(`/v1/conversations` start, `/v1/conversations/{id}` append,
`/v1/conversations/{id}/restart`), and `GET /v1/models`. The Azure client's paths (`…/chat/completions`
under its endpoint) and Vertex AI's (`…/publishers/mistralai/models/{model}:rawPredict`
and `:streamRawPredict`, chat or FIM by the body) are served too.

- Usage is OpenAI-shaped: `prompt_tokens`, `completion_tokens`, `total_tokens`,
  and `prompt_tokens_details.cached_tokens` when `settings.cache_read_tokens` is set.
- Streams (`"stream": true`): SSE `data:` lines; the last chunk (the one with
  `finish_reason`) carries `usage`, then `data: [DONE]`. Conversation streams are
  named events (`conversation.response.started`, `message.output.delta`,
  `conversation.response.done` with the usage) and end without `[DONE]`.
- A request offering tools is answered with a call to the first tool.
- Errors: `{"object": "error", "message", "type", "param", "code"}`, and 422 as
  FastAPI's `{"detail": [{"loc", "msg", "type"}]}`; a `retry_after` becomes
  `retry-after-ms` (the SDK's backoff reads it).

    client = FakeProvider().client("mistral")           # mistralai.client.Mistral, sync and async on the fake
    client = FakeProvider().client("mistral", cloud="azure")   # MistralAzure; cloud="gcp": MistralGCP
"""

from __future__ import annotations

import time
from typing import Any

from .._wire import Failure, Reply, Settings, add_route, count_tokens, json_reply, next_id, split_words, sse_frames, stream_reply

_ERROR_TYPES = {400: "invalid_request_error", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                429: "rate_limited", 500: "internal_server_error", 503: "service_unavailable"}
_SERVED = {"mistral-small-latest": "mistral-small-2506", "mistral-large-latest": "mistral-large-2411",
           "codestral-latest": "codestral-2501"}
AGENT_MODEL = "mistral-medium-latest"  # the model the fake's agents run on


def _headers() -> dict[str, str]:
    return {"x-kong-request-id": next_id("req_")}


def error(failure: Failure) -> Reply:
    headers = _headers()
    if failure.retry_after is not None:
        headers["retry-after-ms"] = str(max(1, round(failure.retry_after * 1000)))
    if failure.timeout:
        return Reply(timeout=True)
    if failure.status == 422:
        body: dict[str, Any] = {"detail": [{"loc": ["body", "messages"], "msg": failure.message, "type": "value_error"}]}
    else:
        body = {"object": "error", "message": failure.message, "type": _ERROR_TYPES.get(failure.status, "api_error"),
                "param": None, "code": str(1000 + failure.status)}
    return json_reply(failure.status, body, headers)


def _usage(body: dict[str, Any], settings: Settings, output: int) -> dict[str, Any]:
    texts = {**body, "input": body.get("inputs", body.get("input")), "prompt": [body.get("prompt"), body.get("suffix")]}
    prompt = count_tokens(texts) + settings.cache_read_tokens
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
    if settings.cache_read_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": settings.cache_read_tokens}
    return usage


def _tool_calls(body: dict[str, Any], settings: Settings) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not (settings.tool_call and isinstance(tools, list) and tools):
        return None
    name = ((tools[0] or {}).get("function") or {}).get("name") or "tool"
    return [{"id": next_id("call")[-9:], "type": "function", "function": {"name": name, "arguments": '{"query": "fake"}'},
             "index": 0}]


def completion(body: dict[str, Any], settings: Settings, model: str | None = None) -> Reply:
    """A chat, FIM or agents completion: JSON, or SSE chunks with the usage on the last one."""
    served = model or _SERVED.get(body.get("model") or "", body.get("model")) or AGENT_MODEL
    words = split_words(settings.reply)
    calls = _tool_calls(body, settings)
    output = len(words) if not calls else 12
    rid, created, usage = next_id("cmpl-"), int(time.time()), _usage(body, settings, output)
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        message = {"role": "assistant", "content": "" if calls else settings.reply, "tool_calls": calls, "prefix": False}
        return json_reply(200, {"id": rid, "object": "chat.completion", "model": served, "created": created,
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage},
                          _headers())

    def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> tuple[None, dict[str, Any]]:
        return None, {"id": rid, "object": "chat.completion.chunk", "created": created, "model": served,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}

    events = [chunk({"role": "assistant", "content": ""})]
    if calls:
        events.append(chunk({"tool_calls": calls}))
    else:
        events += [chunk({"content": w}) for w in words]
    events += [chunk({"content": ""}, finish, usage=usage), (None, "[DONE]")]
    return stream_reply(sse_frames(events), settings, _headers())


def embeddings(body: dict[str, Any], settings: Settings) -> Reply:
    inputs = body.get("inputs", body.get("input"))
    inputs = inputs if isinstance(inputs, list) else [inputs]
    tokens = count_tokens({"input": inputs})
    return json_reply(200, {"id": next_id("embd-"), "object": "list", "model": body.get("model") or "mistral-embed",
                            "data": [{"object": "embedding", "embedding": [0.1, 0.2, 0.3, 0.4], "index": i}
                                     for i in range(len(inputs))],
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}, _headers())


def moderations(body: dict[str, Any], settings: Settings) -> Reply:
    inputs = body.get("inputs", body.get("input"))
    inputs = inputs if isinstance(inputs, list) else [inputs]
    result = {"categories": {"sexual": False, "hate_and_discrimination": False},
              "category_scores": {"sexual": 0.0001, "hate_and_discrimination": 0.0002}}
    tokens = count_tokens({"input": inputs})
    return json_reply(200, {"id": next_id("mod-"), "model": body.get("model") or "mistral-moderation-latest",
                            "results": [result for _ in inputs],
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}, _headers())


def conversation(body: dict[str, Any], settings: Settings, conversation_id: str | None = None) -> Reply:
    """The Conversations API: one `message.output` entry and the usage; named SSE events when streamed."""
    conversation_id = conversation_id or next_id("conv_")
    model = body.get("model") or AGENT_MODEL
    agent_id = body.get("agent_id")
    words = split_words(settings.reply)
    usage = {**_usage(body, settings, len(words)), "connector_tokens": None, "connectors": None}
    mid, now = next_id("msg_"), "2026-01-01T00:00:00Z"
    if not body.get("stream"):
        entry = {"object": "entry", "type": "message.output", "created_at": now, "completed_at": now, "id": mid,
                 "agent_id": agent_id, "model": model, "role": "assistant", "content": settings.reply}
        return json_reply(200, {"object": "conversation.response", "conversation_id": conversation_id,
                                "outputs": [entry], "usage": usage}, _headers())
    events: list[tuple[str | None, Any]] = [("conversation.response.started", {
        "type": "conversation.response.started", "created_at": now, "conversation_id": conversation_id})]
    events += [("message.output.delta", {"type": "message.output.delta", "created_at": now, "output_index": 0, "id": mid,
                                         "content_index": 0, "model": model, "agent_id": agent_id, "role": "assistant",
                                         "content": w}) for w in words]
    events.append(("conversation.response.done", {"type": "conversation.response.done", "created_at": now, "usage": usage}))
    return stream_reply(sse_frames(events), settings, _headers())


def models(settings: Settings) -> Reply:
    cards = [{"id": name, "object": "model", "created": 0, "owned_by": "mistralai", "type": "base",
              "capabilities": {"completion_chat": True, "function_calling": True, "completion_fim": name.startswith("codestral")}}
             for name in _SERVED]
    return json_reply(200, {"object": "list", "data": cards}, _headers())


def _handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    if path.endswith("/v1/models"):
        return models(settings)
    if "/publishers/mistralai/models/" in path:  # Vertex AI: the model is in the path, chat or FIM by the body
        model = path.rsplit("/models/", 1)[1].split(":", 1)[0]
        return completion({**data, "stream": path.endswith(":streamRawPredict")}, settings, model)
    if path.endswith(("/chat/completions", "/fim/completions", "/agents/completions")):
        return completion(data, settings)
    if path.endswith("/embeddings"):
        return embeddings(data, settings)
    if path.endswith("/moderations"):
        return moderations(data, settings)
    if "/v1/conversations" in path:
        rest = path.split("/v1/conversations", 1)[1].strip("/")
        return conversation(data, settings, rest.split("/", 1)[0] or None)
    return json_reply(404, {"object": "error", "message": f"no such fake route {path}", "type": "not_found",
                            "param": None, "code": "1404"})


def _matches(method: str, path: str, headers: dict[str, str]) -> bool:
    agent = headers.get("user-agent", "")
    mistral = "mistral" in agent or "/publishers/mistralai/" in path or headers.get("host", "").endswith("mistral.ai")
    return mistral and (method.upper() == "POST" or path.endswith("/v1/models"))


add_route(_matches, _handle, error)


def client(fake: Any, asynchronous: bool = False, *, cloud: str | None = None, **kwargs: Any) -> Any:
    """A real `mistralai.client.Mistral` on the fake's in-process transports — one client serves both
    `chat.complete(...)` and `chat.complete_async(...)`, so `asynchronous` changes nothing.

    `cloud="azure"` gives a `MistralAzure` (endpoint `https://fake.services.ai.azure.com/models`),
    `cloud="gcp"` a `MistralGCP` (project `fake-project`, a fixed access token); extra arguments
    (`retry_config`, `timeout_ms`, …) go to the client.
    """
    import httpx2

    kwargs.setdefault("client", httpx2.Client(transport=fake.transport("httpx2")))
    kwargs.setdefault("async_client", httpx2.AsyncClient(transport=fake.async_transport("httpx2")))
    if cloud == "azure":
        from mistralai.azure.client import MistralAzure

        kwargs.setdefault("server_url", "https://fake.services.ai.azure.com/models")
        return MistralAzure(api_key=kwargs.pop("api_key", "fake-azure-key"), **kwargs)
    if cloud == "gcp":
        from mistralai.gcp.client import MistralGCP

        return MistralGCP(project_id=kwargs.pop("project_id", "fake-project"),
                          access_token=kwargs.pop("access_token", "fake-token"), **kwargs)
    if cloud is not None:
        raise ValueError(f"cloud must be 'azure', 'gcp' or None, not {cloud!r}")
    from mistralai.client import Mistral

    return Mistral(api_key=kwargs.pop("api_key", "fake-mistral-key"), **kwargs)
