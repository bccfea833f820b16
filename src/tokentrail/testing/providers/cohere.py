"""The fake provider speaking Cohere's API, v2 and v1, as the `cohere` SDK (Fern-generated, httpx) sends it.

Served: `v2/chat`, `v1/chat`, `v1/generate`, `v2/embed`, `v1/embed`, `v2/rerank`, `v1/rerank`.

- Usage is what Cohere bills: `usage.billed_units.{input_tokens, output_tokens}`
  (v2 chat; floats on the wire, as Cohere sends them) with the raw counts in
  `usage.tokens` (more input: the prompt template) and `usage.cached_tokens`
  (`settings.cache_read_tokens`); v1 and embed put theirs in `meta.billed_units`;
  rerank bills `meta.billed_units.search_units`. No response names a model.
- v2 chat streams are SSE with named events: `message-start` (the id),
  `content-start`, `content-delta` per word, `content-end` (or `tool-plan-delta` and
  `tool-call-start/delta/end` for a tool call), and `message-end` with
  `delta.finish_reason` and `delta.usage`. v1 streams are NDJSON (one JSON object
  per line, `event_type` `stream-start`, `text-generation`, … and `stream-end`,
  whose `response` is the whole answer, `meta.billed_units` included for chat;
  generate's has no counts, as Cohere sends it).
- A request offering tools gets a call to the first tool (`TOOL_CALL`).
- Errors: `{"id", "message"}` with the status; a `retry_after` becomes
  `retry-after-ms` (the SDK's backoff reads it; `retry-after: 0` would not count).

    client = FakeProvider().client("cohere")                  # cohere.ClientV2 on the in-process transport
    client = FakeProvider().client("cohere", asynchronous=True)  # cohere.AsyncClientV2
    client = FakeProvider().client("cohere", version=1)       # cohere.Client (v1)
"""

from __future__ import annotations

import json
from typing import Any

from .._wire import Failure, Reply, Settings, add_route, count_tokens, json_reply, next_id, split_words, sse_frames, stream_reply

ROUTES = ("/v2/chat", "/v1/chat", "/v1/generate", "/v2/embed", "/v1/embed", "/v2/rerank", "/v1/rerank")
TEMPLATE_TOKENS = 64  # what Cohere's prompt template adds to the raw input count (not billed)
TOOL_CALL_TOKENS = 14


def _headers() -> dict[str, str]:
    return {"x-trace-id": next_id("trace_"), "x-api-warning": "fake provider"}


def error(failure: Failure) -> Reply:
    if failure.timeout:
        return Reply(timeout=True)
    headers = _headers()
    if failure.retry_after is not None:
        headers["retry-after-ms"] = str(max(1, round(failure.retry_after * 1000)))
    return json_reply(failure.status, {"id": next_id("err-"), "message": failure.message}, headers)


def _input_tokens(body: dict[str, Any]) -> int:
    texts = {"messages": body.get("messages"), "input": [body.get("message"), body.get("chat_history"), body.get("texts"),
                                                         body.get("query"), body.get("documents"), body.get("inputs")],
             "prompt": body.get("prompt"), "system": body.get("preamble"), "tools": body.get("tools")}
    return count_tokens(texts)


def _usage(body: dict[str, Any], settings: Settings, output: int) -> dict[str, Any]:
    billed = _input_tokens(body)
    usage: dict[str, Any] = {"billed_units": {"input_tokens": float(billed), "output_tokens": float(output)},
                             "tokens": {"input_tokens": float(billed + TEMPLATE_TOKENS), "output_tokens": float(output)}}
    if settings.cache_read_tokens:
        usage["cached_tokens"] = float(settings.cache_read_tokens)
    return usage


def _meta(billed: dict[str, float], tokens: dict[str, float] | None = None) -> dict[str, Any]:
    return {"api_version": {"version": "1"}, "billed_units": billed, **({"tokens": tokens} if tokens else {})}


def _tool(body: dict[str, Any], settings: Settings) -> str | None:
    tools = body.get("tools")
    if not (settings.tool_call and isinstance(tools, list) and tools):
        return None
    first = tools[0] or {}
    return (first.get("function") or {}).get("name") or first.get("name") or "tool"


# -- v2 chat -----------------------------------------------------------------------------------------


def chat_v2(body: dict[str, Any], settings: Settings) -> Reply:
    words = split_words(settings.reply)
    tool = _tool(body, settings)
    call = {"id": next_id("call_"), "type": "function", "function": {"name": tool, "arguments": '{"query": "fake"}'}} if tool else None
    usage = _usage(body, settings, TOOL_CALL_TOKENS if tool else len(words))
    rid, finish = next_id("chat-"), "TOOL_CALL" if tool else "COMPLETE"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant"}
        if tool:
            message.update(tool_plan="I will call the tool.", tool_calls=[call])
        else:
            message["content"] = [{"type": "text", "text": settings.reply}]
        return json_reply(200, {"id": rid, "finish_reason": finish, "message": message, "usage": usage}, _headers())

    def event(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, **data}

    start = {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}
    events = [event("message-start", id=rid, delta=start)]
    if tool:
        events += [event("tool-plan-delta", delta={"message": {"tool_plan": "I will call the tool."}}),
                   event("tool-call-start", index=0, delta={"message": {"tool_calls": {**call, "function": {"name": tool, "arguments": ""}}}}),
                   event("tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": call["function"]["arguments"]}}}}),
                   event("tool-call-end", index=0)]
    else:
        events += [event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}})]
        events += [event("content-delta", index=0, delta={"message": {"content": {"text": w}}}) for w in words]
        events += [event("content-end", index=0)]
    events.append(event("message-end", delta={"finish_reason": finish, "usage": usage}))
    return stream_reply(sse_frames(events), settings, _headers())


# -- v1 chat and generate ----------------------------------------------------------------------------


def _ndjson(objects: list[dict[str, Any]], settings: Settings) -> Reply:
    return Reply(200, {"content-type": "application/stream+json", **_headers()}, frames=[json.dumps(o).encode() + b"\n" for o in objects],
                 latency=settings.latency, frame_delay=settings.frame_delay)


def chat_v1(body: dict[str, Any], settings: Settings) -> Reply:
    words = split_words(settings.reply)
    tool = _tool(body, settings)
    usage = _usage(body, settings, TOOL_CALL_TOKENS if tool else len(words))
    generation = next_id("gen-")
    answer: dict[str, Any] = {
        "response_id": next_id("resp-"), "text": "" if tool else settings.reply, "generation_id": generation,
        "finish_reason": "COMPLETE", "chat_history": [{"role": "USER", "message": body.get("message") or ""},
                                                      {"role": "CHATBOT", "message": "" if tool else settings.reply}],
        "meta": _meta(usage["billed_units"], usage["tokens"]),
    }
    if tool:
        answer["tool_calls"] = [{"name": tool, "parameters": {"query": "fake"}}]
    if not body.get("stream"):
        return json_reply(200, answer, _headers())
    objects: list[dict[str, Any]] = [{"is_finished": False, "event_type": "stream-start", "generation_id": generation}]
    if tool:
        objects.append({"is_finished": False, "event_type": "tool-calls-generation", "text": "", "tool_calls": answer["tool_calls"]})
    else:
        objects += [{"is_finished": False, "event_type": "text-generation", "text": w} for w in words]
    objects.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": answer})
    return _ndjson(objects, settings)


def generate(body: dict[str, Any], settings: Settings) -> Reply:
    words = split_words(settings.reply)
    usage = _usage(body, settings, len(words))
    generation = {"id": next_id("gen-"), "text": settings.reply, "finish_reason": "COMPLETE"}
    answer = {"id": next_id("generate-"), "generations": [generation], "prompt": body.get("prompt") or ""}
    if not body.get("stream"):
        return json_reply(200, {**answer, "meta": _meta(usage["billed_units"], usage["tokens"])}, _headers())
    objects = [{"is_finished": False, "event_type": "text-generation", "text": w, "index": 0} for w in words]
    objects.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": answer})
    return _ndjson(objects, settings)


# -- embed and rerank --------------------------------------------------------------------------------


def embed(body: dict[str, Any], settings: Settings, version: int) -> Reply:
    texts = body.get("texts") or [i for i in body.get("inputs") or ()] or []
    vectors = [[0.1, 0.2, 0.3, 0.4] for _ in texts]
    kinds = body.get("embedding_types")
    meta = _meta({"input_tokens": float(_input_tokens(body))})
    if version == 1 and not kinds:
        return json_reply(200, {"id": next_id("embed-"), "response_type": "embeddings_floats", "embeddings": vectors,
                                "texts": texts, "meta": meta}, _headers())
    return json_reply(200, {"id": next_id("embed-"), "response_type": "embeddings_by_type",
                            "embeddings": {kind: vectors for kind in (kinds or ["float"])}, "texts": texts, "meta": meta}, _headers())


def rerank(body: dict[str, Any], settings: Settings) -> Reply:
    documents = body.get("documents") or []
    top = body.get("top_n") or len(documents)
    results = [{"index": i, "relevance_score": round(1 / (i + 1), 4)} for i in range(min(top, len(documents)))]
    return json_reply(200, {"id": next_id("rerank-"), "results": results, "meta": _meta({"search_units": 1.0})}, _headers())


def _handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    route = next(r for r in ROUTES if path.endswith(r))
    if route == "/v2/chat":
        return chat_v2(data, settings)
    if route == "/v1/chat":
        return chat_v1(data, settings)
    if route == "/v1/generate":
        return generate(data, settings)
    if route.endswith("/embed"):
        return embed(data, settings, 2 if route.startswith("/v2") else 1)
    return rerank(data, settings)


def _matches(method: str, path: str, headers: dict[str, str]) -> bool:
    return method.upper() == "POST" and path.endswith(ROUTES)


add_route(_matches, _handle, error)


def client(fake: Any, asynchronous: bool = False, *, version: int = 2, **kwargs: Any) -> Any:
    """A real `cohere.ClientV2` (`version=1`: `cohere.Client`; `asynchronous`: their async twins) on the
    fake's in-process transport, without retries unless `max_retries` says otherwise."""
    import cohere
    import httpx

    kwargs.setdefault("api_key", "fake-cohere-key")
    kwargs.setdefault("max_retries", 0)
    names = {(2, False): "ClientV2", (2, True): "AsyncClientV2", (1, False): "Client", (1, True): "AsyncClient"}
    if asynchronous:
        http = httpx.AsyncClient(transport=fake.async_transport("httpx"))
    else:
        http = httpx.Client(transport=fake.transport("httpx"))
    return getattr(cohere, names[(version, bool(asynchronous))])(httpx_client=http, **kwargs)
