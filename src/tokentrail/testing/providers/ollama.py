"""The fake provider speaking Ollama's API: `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`.

JSON answers, or NDJSON streams (one object per line, `application/x-ndjson`)
when the request has `"stream": true` — which is Ollama's default, so a
request that does not say `false` streams, as the real server does. The last
object (`done: true`) carries `done_reason`, `prompt_eval_count`, `eval_count`
and the timings in nanoseconds; a request offering tools gets a call to the
first one. `/api/embed` reports `prompt_eval_count`; the legacy
`/api/embeddings` reports no counts. Errors: `{"error": "..."}` with the status.

    client = FakeProvider().client("ollama")            # ollama.Client on the in-process transport
    client = FakeProvider().client("ollama", asynchronous=True)
"""

from __future__ import annotations

import json
from typing import Any

from .._wire import Failure, Reply, Settings, add_route, count_tokens, json_reply, split_words

CREATED_AT = "2026-01-01T00:00:00.000000Z"
TIMINGS = {"total_duration": 250_000_000, "load_duration": 20_000_000, "prompt_eval_duration": 30_000_000,
           "eval_duration": 200_000_000}
TOOL_CALL_TOKENS = 12  # eval_count of an answer that is a tool call


def error(failure: Failure) -> Reply:
    headers = {} if failure.retry_after is None else {"retry-after": str(failure.retry_after)}
    return json_reply(failure.status, {"error": failure.message}, headers)


def _ndjson(objects: list[dict[str, Any]], settings: Settings) -> Reply:
    frames = [json.dumps(o).encode() + b"\n" for o in objects]
    return Reply(200, {"content-type": "application/x-ndjson"}, frames=frames, latency=settings.latency,
                 frame_delay=settings.frame_delay)


def _done(body: dict[str, Any], output: int) -> dict[str, Any]:
    return {"done": True, "done_reason": "stop", **TIMINGS, "prompt_eval_count": count_tokens(body), "eval_count": output}


def _tool_calls(body: dict[str, Any], settings: Settings) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not (settings.tool_call and isinstance(tools, list) and tools):
        return None
    name = (tools[0].get("function") or {}).get("name") or "tool"
    return [{"function": {"index": 0, "name": name, "arguments": {"query": "fake"}}}]


def _answer(body: dict[str, Any], settings: Settings, piece: Any, last: dict[str, Any]) -> Reply:
    """One generation: a JSON object, or its words streamed with `piece(word)`, then the final object."""
    model = body.get("model") or ""
    words = split_words(settings.reply)
    head = {"model": model, "created_at": CREATED_AT}
    done = _done(body, len(words))
    if body.get("stream") is False:
        return json_reply(200, {**head, **piece(settings.reply), **last, **done})
    objects = [{**head, **piece(w), "done": False} for w in words]
    return _ndjson(objects + [{**head, **piece(""), **last, **done}], settings)


def chat(body: dict[str, Any], settings: Settings) -> Reply:
    calls = _tool_calls(body, settings)
    if calls:  # Ollama sends a tool call whole, in one message, then the final object
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        head = {"model": body.get("model") or "", "created_at": CREATED_AT}
        done = _done(body, TOOL_CALL_TOKENS)
        if body.get("stream") is False:
            return json_reply(200, {**head, "message": message, **done})
        return _ndjson([{**head, "message": message, "done": False},
                        {**head, "message": {"role": "assistant", "content": ""}, **done}], settings)
    return _answer(body, settings, lambda text: {"message": {"role": "assistant", "content": text}}, {})


def generate(body: dict[str, Any], settings: Settings) -> Reply:
    return _answer(body, settings, lambda text: {"response": text}, {"context": [1, 2, 3]})


def embed(body: dict[str, Any], settings: Settings) -> Reply:
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return json_reply(200, {"model": body.get("model") or "", "embeddings": [[0.1, 0.2, 0.3, 0.4] for _ in inputs],
                            "total_duration": 14_000_000, "load_duration": 1_000_000,
                            "prompt_eval_count": count_tokens(body)})


def embeddings(body: dict[str, Any], settings: Settings) -> Reply:
    return json_reply(200, {"embedding": [0.1, 0.2, 0.3, 0.4]})


ROUTES = {"/api/chat": chat, "/api/generate": generate, "/api/embed": embed, "/api/embeddings": embeddings}


def handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    if path == "/api/tags":  # `client.list()`: not an LLM call
        return json_reply(200, {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189,
                                            "digest": "a80c4f17acd5", "details": {"family": "llama"}}]})
    route = ROUTES.get(path)
    if route is None:
        return json_reply(404, {"error": f"404 page not found: {path}"})
    if not data.get("model"):
        return json_reply(400, {"error": "model is required"})
    return route(data, settings)


add_route(lambda method, path, headers: path.startswith("/api/"), handle, error)


def client(fake: Any, asynchronous: bool = False, **kwargs: Any) -> Any:
    """A real `ollama.Client` (or `AsyncClient`) on the fake's in-process transport."""
    import ollama

    kwargs.setdefault("host", "http://127.0.0.1:11434")
    if asynchronous:
        return ollama.AsyncClient(transport=fake.async_transport("httpx"), **kwargs)
    return ollama.Client(transport=fake.transport("httpx"), **kwargs)
