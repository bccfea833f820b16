"""The fake provider speaking Groq's API: OpenAI-shaped bodies under `/openai/v1/…`, as GroqCloud sends them.

What differs from OpenAI's wire format, and is served here: `usage` carries
Groq's timings (`queue_time`, `prompt_time`, `completion_time`, `total_time`,
seconds); every response has `x_groq.id`; a stream's last chunk (the one with
`finish_reason`) carries `x_groq.usage` whether or not the request asked for
usage, and a top-level `usage` chunk follows only with
`stream_options.include_usage`; transcriptions answer `{"text", "x_groq"}`
(plus `duration` and `segments` with `verbose_json`); speech answers WAV bytes.
Errors: `{"error": {"message", "type", "code"}}` with an `x-request-id` header.

(Real Groq answers `n > 1` with a 400; the fake serves `n` choices, as OpenAI does.)

    client = FakeProvider().client("groq")              # groq.Groq on the in-process transport
    client = FakeProvider().client("groq", asynchronous=True)
"""

from __future__ import annotations

import time
from typing import Any

from .._wire import Failure, Reply, Settings, add_route, count_tokens, json_reply, next_id, openai_embeddings, split_words, sse_frames, stream_reply

PREFIX = "/openai/v1/"

_ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
           403: ("permission_error", None), 404: ("invalid_request_error", "model_not_found"),
           413: ("invalid_request_error", "request_too_large"), 429: ("tokens", "rate_limit_exceeded"),
           498: ("flex_tier_capacity_exceeded", None), 500: ("internal_server_error", None), 503: ("service_unavailable", None)}


def _headers() -> dict[str, str]:
    return {"x-request-id": next_id("req_")}


def error(failure: Failure) -> Reply:
    kind, code = _ERRORS.get(failure.status, ("api_error", None))
    headers = _headers()
    if failure.retry_after is not None:
        headers["retry-after"] = str(failure.retry_after)
    return json_reply(failure.status, {"error": {"message": failure.message, "type": kind, "code": code}}, headers)


def _usage(body: dict[str, Any], settings: Settings, output: int, model: str) -> dict[str, Any]:
    prompt = count_tokens(body) + settings.cache_read_tokens
    reasoning = settings.reasoning_tokens if settings.reasoning_tokens is not None else (8 if "gpt-oss" in model or "qwen3" in model else 0)
    usage: dict[str, Any] = {"queue_time": 0.0125, "prompt_tokens": prompt, "prompt_time": 0.0021,
                             "completion_tokens": output + reasoning, "completion_time": 0.0342,
                             "total_tokens": prompt + output + reasoning, "total_time": 0.0363}
    if settings.cache_read_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": settings.cache_read_tokens}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _tool_calls(body: dict[str, Any], settings: Settings) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not (settings.tool_call and isinstance(tools, list) and tools):
        return None
    name = (tools[0].get("function") or {}).get("name") or "tool"
    return [{"id": next_id("call_"), "type": "function", "function": {"name": name, "arguments": '{"query": "fake"}'}}]


def chat(body: dict[str, Any], settings: Settings) -> Reply:
    model = body.get("model", "llama-3.3-70b-versatile")
    n = int(body.get("n") or 1)
    words = split_words(settings.reply)
    calls = _tool_calls(body, settings)
    rid, request_id, created = next_id("chatcmpl-"), next_id("req_"), int(time.time())
    usage = _usage(body, settings, len(words) * n, model)
    finish = "tool_calls" if calls else "stop"
    base = {"id": rid, "created": created, "model": model, "system_fingerprint": "fp_fakegroq"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if calls else settings.reply, **({"tool_calls": calls} if calls else {})}
        choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
        return json_reply(200, {**base, "object": "chat.completion", "choices": choices, "usage": usage,
                                "usage_breakdown": None, "x_groq": {"id": request_id}, "service_tier": "on_demand"},
                          {"x-request-id": request_id})

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> tuple[None, dict[str, Any]]:
        return None, {**base, "object": "chat.completion.chunk", "choices": choices, **extra}

    def choice(i: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}

    events = [chunk([choice(i, {"role": "assistant", "content": ""}) for i in range(n)], x_groq={"id": request_id})]
    if calls:
        events += [chunk([choice(i, {"tool_calls": [{"index": 0, **calls[0]}]})]) for i in range(n)]
    else:
        events += [chunk([choice(i, {"content": w})]) for w in words for i in range(n)]
    events += [chunk([choice(i, {}, finish)], **({"x_groq": {"id": request_id, "usage": usage}} if i == n - 1 else {}))
               for i in range(n)]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(chunk([], usage=usage))
    events.append((None, "[DONE]"))
    return stream_reply(sse_frames(events), settings, {"x-request-id": request_id})


def transcription(data: dict[str, Any], settings: Settings) -> Reply:
    request_id = next_id("req_")
    body: dict[str, Any] = {"text": settings.reply, "x_groq": {"id": request_id}}
    if data.get("response_format") == "verbose_json":
        body.update(task="transcribe", language="English", duration=3.5,
                    segments=[{"id": 0, "start": 0.0, "end": 3.5, "text": settings.reply}])
    if data.get("response_format") == "text":
        return Reply(200, {"content-type": "text/plain", "x-request-id": request_id}, settings.reply.encode())
    return json_reply(200, body, {"x-request-id": request_id})


def speech(data: dict[str, Any], settings: Settings) -> Reply:
    return Reply(200, {"content-type": "audio/wav", **_headers()}, b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32)


def handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    endpoint = path[len(PREFIX):]
    if endpoint == "models":
        return json_reply(200, {"object": "list", "data": [{"id": "llama-3.3-70b-versatile", "object": "model", "created": 0,
                                                            "owned_by": "Meta", "active": True, "context_window": 131072}]})
    route = {"chat/completions": chat, "embeddings": openai_embeddings, "audio/transcriptions": transcription,
             "audio/translations": transcription, "audio/speech": speech}.get(endpoint)
    if route is None:
        return error(Failure(404, f"Unknown request URL: POST {path}. Please check the URL for typos."))
    reply = route(data, settings)
    reply.headers.setdefault("x-request-id", next_id("req_"))
    return reply


add_route(lambda method, path, headers: path.startswith(PREFIX), handle, error)


def client(fake: Any, asynchronous: bool = False, **kwargs: Any) -> Any:
    """A real `groq.Groq` (or `AsyncGroq`) on the fake's in-process transport (no retries unless asked)."""
    import groq
    import httpx  # groq is built on httpx (not httpx2)

    kwargs.setdefault("api_key", "gsk-fake")
    kwargs.setdefault("max_retries", 0)
    if asynchronous:
        return groq.AsyncGroq(http_client=httpx.AsyncClient(transport=fake.async_transport("httpx")), **kwargs)
    return groq.Groq(http_client=httpx.Client(transport=fake.transport("httpx")), **kwargs)
