"""The fake provider's answers, in the OpenAI and Anthropic wire formats (pure functions).

`respond(request)` turns one HTTP request into a `Reply`: a status, headers
and either a JSON body or a list of SSE frames, plus the delays to play them
with. The in-process transport and the HTTP server both serve these replies,
so the SDKs parse exactly what a real provider would send.

Token counts are deterministic: input is ~1 token per 4 characters of the
request's text, output is one token per word of the reply.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    frames: list[bytes] | None = None  # SSE frames, for streams
    latency: float = 0.0  # before the first byte
    frame_delay: float = 0.0  # between frames
    timeout: bool = False  # never answer: the client times out


@dataclass
class Failure:
    """A scripted failure: the next `times` requests (matching `path`, if given) fail this way."""

    status: int = 500
    message: str = "fake failure"
    retry_after: float | None = None
    timeout: bool = False
    times: int = 1
    path: str | None = None


@dataclass
class Settings:
    reply: str = "Hello from the fake provider."
    latency: float = 0.0
    frame_delay: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int | None = None  # None: o-series models reason, others do not
    tool_call: bool = True  # answer a request that offers tools with a call to the first tool
    failures: list[Failure] = field(default_factory=list)


def next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def count_tokens(body: dict[str, Any]) -> int:
    fields = {k: body.get(k) for k in ("messages", "input", "prompt", "system", "tools", "instructions")}
    return max(1, sum(len(t) for t in _texts(fields)) // 4)


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"content-type": "application/json", **(headers or {})}, json.dumps(data).encode())


def sse_frames(events: list[tuple[str | None, Any]]) -> list[bytes]:
    frames = []
    for event, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        frames.append(((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode())
    return frames


def stream_reply(frames: list[bytes], settings: Settings, headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, {"content-type": "text/event-stream", **(headers or {})}, frames=frames,
                 latency=settings.latency, frame_delay=settings.frame_delay)


def split_words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def reasoning_tokens_for(settings: Settings, model: str) -> int:
    if settings.reasoning_tokens is not None:
        return settings.reasoning_tokens
    return 8 if model[:2] in ("o1", "o3", "o4") or model.startswith("gpt-5") else 0


# -- errors --------------------------------------------------------------------------------------

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                       404: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                          529: "overloaded_error"}


def error_reply(flavor: str, failure: Failure) -> Reply:
    headers = {"x-request-id" if flavor == "openai" else "request-id": next_id("req_")}
    if failure.retry_after is not None:
        headers["retry-after"] = str(failure.retry_after)
    if failure.timeout:
        return Reply(timeout=True)
    if flavor == "openai":
        body = {"error": {"message": failure.message, "type": _OPENAI_ERROR_TYPES.get(failure.status, "error"),
                          "param": None, "code": None}}
    else:
        body = {"type": "error", "error": {"type": _ANTHROPIC_ERROR_TYPES.get(failure.status, "api_error"),
                                           "message": failure.message}}
    return json_reply(failure.status, body, headers)


# -- OpenAI ----------------------------------------------------------------------------------------


def _openai_usage(body: dict[str, Any], settings: Settings, output: int, model: str) -> dict[str, Any]:
    prompt = count_tokens(body) + settings.cache_read_tokens
    reasoning = reasoning_tokens_for(settings, model)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output + reasoning,
        "total_tokens": prompt + output + reasoning,
        "prompt_tokens_details": {"cached_tokens": settings.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _response_model(model: str) -> str:
    """Providers answer with the dated snapshot of an alias."""
    return {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}.get(model, model)


def _tool_calls(body: dict[str, Any], settings: Settings) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not (settings.tool_call and tools):
        return None
    name = (tools[0].get("function") or {}).get("name") or tools[0].get("name") or "tool"
    return [{"id": next_id("call_"), "type": "function", "function": {"name": name, "arguments": '{"query": "fake"}'}}]


def openai_chat(body: dict[str, Any], settings: Settings) -> Reply:
    model = body.get("model", "gpt-4o-mini")
    n = int(body.get("n") or 1)
    words = split_words(settings.reply)
    calls = _tool_calls(body, settings)
    rid, created, served = next_id("chatcmpl-"), int(time.time()), _response_model(model)
    usage = _openai_usage(body, settings, len(words) * n, model)
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        choices = [{"index": i, "message": {"role": "assistant", "content": None if calls else settings.reply,
                                             "refusal": None, **({"tool_calls": calls} if calls else {})},
                    "logprobs": None, "finish_reason": finish} for i in range(n)]
        return json_reply(200, {"id": rid, "object": "chat.completion", "created": created, "model": served,
                           "choices": choices, "usage": usage, "system_fingerprint": "fp_fake"},
                     {"x-request-id": next_id("req_")})

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> tuple[None, dict[str, Any]]:
        return None, {"id": rid, "object": "chat.completion.chunk", "created": created, "model": served,
                      "system_fingerprint": "fp_fake", "choices": choices, **extra}

    events = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(n)])]
    if calls:
        events += [chunk([{"index": i, "delta": {"tool_calls": [{"index": 0, **calls[0]}]}, "finish_reason": None}]) for i in range(n)]
    else:
        events += [chunk([{"index": i, "delta": {"content": w}, "finish_reason": None}]) for w in words for i in range(n)]
    events += [chunk([{"index": i, "delta": {}, "finish_reason": finish}]) for i in range(n)]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(chunk([], usage=usage))
    events.append((None, "[DONE]"))
    return stream_reply(sse_frames(events), settings, {"x-request-id": next_id("req_")})


def openai_responses(body: dict[str, Any], settings: Settings) -> Reply:
    model = body.get("model", "gpt-4o-mini")
    words = split_words(settings.reply)
    reasoning = reasoning_tokens_for(settings, model)
    prompt = count_tokens(body) + settings.cache_read_tokens
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": settings.cache_read_tokens},
             "output_tokens": len(words) + reasoning, "output_tokens_details": {"reasoning_tokens": reasoning},
             "total_tokens": prompt + len(words) + reasoning}
    rid, mid = next_id("resp_"), next_id("msg_")
    message = {"type": "message", "id": mid, "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": settings.reply, "annotations": []}]}
    response = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": _response_model(model), "output": [message], "usage": usage, "error": None,
                "incomplete_details": None, "instructions": body.get("instructions"), "metadata": {},
                "parallel_tool_calls": True, "temperature": body.get("temperature", 1.0), "tool_choice": "auto",
                "tools": [], "top_p": 1.0}
    if not body.get("stream"):
        return json_reply(200, response, {"x-request-id": next_id("req_")})
    seq = itertools.count()
    in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": mid, "output_index": 0, "content_index": 0}
    part = message["content"][0]

    def event(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    events = [event("response.created", response=in_progress),
              event("response.output_item.added", output_index=0, item={**message, "status": "in_progress", "content": []}),
              event("response.content_part.added", **where, part={**part, "text": ""})]
    events += [event("response.output_text.delta", **where, delta=w, logprobs=[]) for w in words]
    events += [event("response.output_text.done", **where, text=settings.reply, logprobs=[]),
               event("response.content_part.done", **where, part=part),
               event("response.output_item.done", output_index=0, item=message),
               event("response.completed", response=response)]
    return stream_reply(sse_frames(events), settings, {"x-request-id": next_id("req_")})


def openai_completions(body: dict[str, Any], settings: Settings) -> Reply:
    model = body.get("model", "gpt-3.5-turbo-instruct")
    words = split_words(settings.reply)
    usage = _openai_usage(body, settings, len(words), model)
    rid = next_id("cmpl-")
    if not body.get("stream"):
        return json_reply(200, {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
                           "choices": [{"text": settings.reply, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                           "usage": usage})
    events = [(None, {"id": rid, "object": "text_completion", "model": model,
                      "choices": [{"text": w, "index": 0, "logprobs": None, "finish_reason": None}]}) for w in words]
    events.append((None, {"id": rid, "object": "text_completion", "model": model,
                          "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}))
    events.append((None, "[DONE]"))
    return stream_reply(sse_frames(events), settings)


def openai_embeddings(body: dict[str, Any], settings: Settings) -> Reply:
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    vector = [0.1, 0.2, 0.3, 0.4]
    if body.get("encoding_format") == "base64":
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    else:
        encoded = vector
    tokens = count_tokens(body)
    return json_reply(200, {"object": "list", "model": body.get("model", "text-embedding-3-small"),
                       "data": [{"object": "embedding", "index": i, "embedding": encoded} for i in range(len(inputs))],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def openai_images(body: dict[str, Any], settings: Settings) -> Reply:
    n = int(body.get("n") or 1)
    data: dict[str, Any] = {"created": int(time.time()), "data": [{"url": f"https://fake.invalid/image/{i}.png"} for i in range(n)]}
    if str(body.get("model", "")).startswith("gpt-image"):
        tokens = count_tokens(body)
        data["usage"] = {"input_tokens": tokens, "output_tokens": 1056 * n, "total_tokens": tokens + 1056 * n,
                         "input_tokens_details": {"text_tokens": tokens, "image_tokens": 0}}
    return json_reply(200, data)


def openai_transcription(body: dict[str, Any], settings: Settings) -> Reply:
    data: dict[str, Any] = {"text": settings.reply}
    if str(body.get("model", "")).startswith("gpt-4o"):
        data["usage"] = {"type": "tokens", "input_tokens": 120, "output_tokens": len(split_words(settings.reply)),
                         "total_tokens": 120 + len(split_words(settings.reply))}
    else:
        data["usage"] = {"type": "duration", "seconds": 3}
    return json_reply(200, data)


def openai_speech(body: dict[str, Any], settings: Settings) -> Reply:
    return Reply(200, {"content-type": "audio/mpeg"}, b"ID3fake-mp3-bytes" * 8, latency=settings.latency)


def openai_moderation(body: dict[str, Any], settings: Settings) -> Reply:
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    result = {"flagged": False, "categories": {"violence": False, "hate": False}, "category_scores": {"violence": 0.001, "hate": 0.0}}
    return json_reply(200, {"id": next_id("modr-"), "model": body.get("model") or "omni-moderation-latest",
                       "results": [result for _ in inputs]})


# -- Anthropic -----------------------------------------------------------------------------------


def anthropic_messages(body: dict[str, Any], settings: Settings, model: str | None = None) -> Reply:
    model = model or body.get("model", "claude-3-5-haiku-latest")
    words = split_words(settings.reply)
    calls = _tool_calls(body, settings)
    usage = {"input_tokens": count_tokens(body), "output_tokens": len(words),
             "cache_creation_input_tokens": settings.cache_write_tokens,
             "cache_read_input_tokens": settings.cache_read_tokens}
    served = {"claude-3-5-haiku-latest": "claude-3-5-haiku-20241022", "claude-3-5-sonnet-latest": "claude-3-5-sonnet-20241022"}.get(model, model)
    mid = next_id("msg_")
    content: list[dict[str, Any]] = [{"type": "text", "text": settings.reply}]
    stop = "end_turn"
    if calls:
        content.append({"type": "tool_use", "id": next_id("toolu_"), "name": calls[0]["function"]["name"], "input": {"query": "fake"}})
        stop = "tool_use"
    message = {"id": mid, "type": "message", "role": "assistant", "model": served, "content": content,
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
    headers = {"request-id": next_id("req_")}
    if not body.get("stream"):
        return json_reply(200, message, headers)
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start}),
                                            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                                            ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}) for w in words]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if calls:
        block = content[1]
        events += [("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {**block, "input": {}}}),
                   ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}),
                   ("content_block_stop", {"type": "content_block_stop", "index": 1})]
    events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": len(words)}}),
               ("message_stop", {"type": "message_stop"})]
    return stream_reply(sse_frames(events), settings, headers)


def anthropic_count_tokens(body: dict[str, Any], settings: Settings) -> Reply:
    return json_reply(200, {"input_tokens": count_tokens(body)})


# -- routing -----------------------------------------------------------------------------------------

OPENAI_ROUTES = {
    "chat/completions": openai_chat,
    "responses": openai_responses,
    "completions": openai_completions,
    "embeddings": openai_embeddings,
    "images/generations": openai_images,
    "audio/transcriptions": openai_transcription,
    "audio/translations": openai_transcription,
    "audio/speech": openai_speech,
    "moderations": openai_moderation,
}


def _multipart_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """The text fields of a multipart/form-data body (enough for `model`)."""
    boundary = content_type.partition("boundary=")[2].strip('"')
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + boundary.encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        if b'name="' in head and b"filename=" not in head:
            name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
            fields[name] = value.rstrip(b"\r\n").decode(errors="replace")
    return fields


# Routes other providers' modules add (tokentrail/testing/providers/*.py): tried before the built-in ones.
# Each: (matches(method, path, headers) -> bool, handler(data, settings, path, headers) -> Reply,
#        error(failure) -> Reply in that provider's error format).
EXTRA_ROUTES: list[tuple[Any, Any, Any]] = []


def add_route(matches: Any, handler: Any, error: Any) -> None:
    """Serve requests `matches(method, path, headers)` accepts with `handler(data, settings, path, headers)`;
    scripted failures are answered with `error(failure)`."""
    EXTRA_ROUTES.append((matches, handler, error))


def respond(method: str, path: str, headers: dict[str, str], body: bytes, settings: Settings) -> Reply:
    """One request in, one reply out (after `settings.latency`); scripted failures first."""
    reply = _route(method, path, headers, body, settings)
    reply.latency = reply.latency or settings.latency
    return reply


def _route(method: str, path: str, headers: dict[str, str], body: bytes, settings: Settings) -> Reply:
    path = path.split("?", 1)[0]
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        data = _multipart_fields(body, content_type)
    else:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
    flavor = "anthropic" if ("anthropic" in path or "/v1/messages" in path or "/model/" in path or "/v1/complete" in path) else "openai"
    extra = next(((handler, error) for matches, handler, error in EXTRA_ROUTES if matches(method, path, headers)), None)
    errors = extra[1] if extra is not None else (lambda failure: error_reply(flavor, failure))
    forced = headers.get("x-fake-error")
    if forced:
        return errors(Failure(status=int(forced), message=f"forced {forced}", retry_after=0 if forced == "429" else None))
    for failure in list(settings.failures):
        if failure.path is None or failure.path in path:
            failure.times -= 1
            if failure.times <= 0:
                settings.failures.remove(failure)
            if failure.timeout:
                return Reply(timeout=True)
            return errors(failure)
    if extra is not None:
        return extra[0](data, settings, path, headers)
    if method.upper() == "GET" and path.endswith("/models"):
        return json_reply(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "fake"}]})
    if method.upper() != "POST":
        return json_reply(404, {"error": {"message": f"no such fake route {method} {path}"}})
    if path.endswith("/v1/messages/count_tokens") or path.endswith("count-tokens:rawPredict"):
        return anthropic_count_tokens(data, settings)
    if path.endswith("/v1/messages"):
        return anthropic_messages(data, settings)
    if "/model/" in path:  # Bedrock: /model/{model}/invoke[-with-response-stream]
        model = path.split("/model/", 1)[1].rsplit("/", 1)[0]
        if path.endswith("invoke-with-response-stream"):
            return json_reply(400, {"message": "the fake provider does not speak Bedrock's binary event stream"})
        return anthropic_messages({**data, "stream": False}, settings, model=model)
    if ":rawPredict" in path or ":streamRawPredict" in path:  # Vertex
        model = path.rsplit("/models/", 1)[1].split(":", 1)[0]
        return anthropic_messages({**data, "stream": path.endswith(":streamRawPredict")}, settings, model=model)
    for suffix, route in OPENAI_ROUTES.items():
        if path.endswith("/" + suffix):
            return route(data, settings)
    return json_reply(404, {"error": {"message": f"no such fake route {method} {path}", "type": "invalid_request_error"}})
