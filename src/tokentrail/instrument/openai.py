"""The `openai` SDK (>= 1.0): every endpoint through `SyncAPIClient.request` / `AsyncAPIClient.request`.

Recorded: chat completions (with `parse`, the `stream()` helpers, tools, `n>1`),
Responses (and its stream events), text completions, embeddings, images,
audio transcriptions / translations / speech, moderations. Everything else the
SDK does (files, batches, assistants, …) passes through untouched.

The provider is the client's: `AzureOpenAI` -> `azure.ai.openai`; any other
`base_url` -> the provider its host implies (Groq, DeepSeek, Together,
OpenRouter, Ollama on :11434, …), or `openai` when unknown (a local vLLM).

OpenAI reports token usage in a stream only when the request asks for it
(`stream_options={"include_usage": True}`); tokentrail does not add it, since
that would change the chunks your code sees. Without it a stream's tokens (and
so its cost) are unknown.

openai 0.27 / 0.28 (`openai.ChatCompletion.create`, `openai.Completion.create`,
`openai.Embedding.create` and their `acreate`) has no such client: when one of
those releases is installed, this adapter patches `APIRequestor.request` /
`arequest` instead and reads the same `ENDPOINTS` there (`openai_legacy`'s
table, chosen at import from the installed version, at the end of this module).
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate, count, repeat
from operator import add, not_
from typing import Any

from ..semconv import provider_from_url
from ..shapes import items, pick
from .endpoint import Endpoint, no_response, params, usage_fields
from .request_point import stainless_call_of, stainless_patches

NAME = "openai"
DISTRIBUTION = "openai"
MIN_VERSION = (0, 27)  # 0.27 and 0.28 through openai_legacy's patch table (end of module)
PATCHES = stainless_patches("openai")

_CHAT_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "frequency_penalty",
                "presence_penalty", "seed", "stop", "n", "reasoning_effort", "service_tier", "logprobs",
                "top_logprobs", "parallel_tool_calls", "tool_choice", "response_format", "stream")
_RESPONSES_PARAMS = ("temperature", "top_p", "max_output_tokens", "service_tier", "tool_choice", "truncation",
                     "reasoning", "parallel_tool_calls", "stream", "previous_response_id")


# -- chat completions ------------------------------------------------------------------------------


_CHAT_PARAM_SET = frozenset(_CHAT_PARAMS)


def _present(body: dict[str, Any], names: tuple[str, ...], known: frozenset[str]) -> tuple[str, ...]:
    """The names of `names` the body has, in their order: a request sets few of the many parameters."""
    found = known.intersection(body)  # in C: a comprehension's frame cost more than its three keys
    return tuple(found) if len(found) < 2 else tuple(sorted(found, key=names.index))


def chat_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    messages = body.get("messages")
    return _with_end_user({"request_params": params(body, _present(body, _CHAT_PARAMS, _CHAT_PARAM_SET)),
                           "message_count": len(messages) if isinstance(messages, list) else None}, body), messages


def _with_end_user(fields: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """`fields` with OpenAI's `user=` (now `safety_identifier`), which names the end user: the record's
    `user_id` when no `attributes()` block names one. Only when the request has one: a field of None
    would still be merged, for nothing, on every record."""
    user = body.get("user") or body.get("safety_identifier")
    if user and isinstance(user, str):
        fields["default_user_id"] = user
    return fields


class _Shape(Exception):
    """A response not in the plain shape the fast readers assume: read it the general way."""


def chat_response(data: Any) -> tuple[dict[str, Any], Any]:
    if type(data) is dict:
        try:
            return _chat_response_dict(data)
        except _Shape:
            pass
    return _chat_response_any(data)


def _chat_response_dict(data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """`chat_response` for parsed JSON: plain dicts and lists all the way down (the worker's usual case)."""
    choices = data.get("choices") or []
    if type(choices) is not list:
        raise _Shape
    calls = 0
    finish = []
    for choice in choices:
        if type(choice) is not dict:
            raise _Shape
        message = choice.get("message")
        if message is not None:
            if type(message) is not dict:
                raise _Shape
            tool_calls = message.get("tool_calls")
            if tool_calls:
                if type(tool_calls) is not list:
                    raise _Shape
                calls += len(tool_calls)
        reason = choice.get("finish_reason")
        if reason:
            finish.append(reason)
    fields = usage_fields(data.get("usage"))  # a new dict: ours to add to
    fields["response_id"], fields["response_model"] = data.get("id"), data.get("model")
    fields["finish_reasons"], fields["tool_call_count"] = finish or None, calls
    first = choices[0].get("message") if choices else None
    return fields, (first.get("content") or first.get("refusal")) if first else None


def _chat_response_any(data: Any) -> tuple[dict[str, Any], Any]:
    choices = pick(data, "choices") or []
    calls = sum(len(items(pick(c, "message", "tool_calls"))) for c in items(choices))
    return {
        "response_id": pick(data, "id"),
        "response_model": pick(data, "model"),
        "finish_reasons": [r for r in (pick(c, "finish_reason") for c in choices) if r] or None,
        "tool_call_count": calls,
        **usage_fields(pick(data, "usage")),
    }, pick(choices, 0, "message", "content") or pick(choices, 0, "message", "refusal")


def chat_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    try:
        return _chat_chunks_dicts(chunks)
    except _Shape:
        return _chat_chunks_any(chunks)


def _chat_chunks_dicts(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    """`chat_chunks` for parsed JSON (plain dicts and lists): one pass, no generic lookups per chunk."""
    fields: dict[str, Any] = {}
    finish: dict[int, str] = {}
    tool_calls: set[tuple[int, int]] = set()
    text: list[str] = []
    if chunks:
        first = chunks[0]
        if type(first) is not dict:
            raise _Shape
        fields["response_id"], fields["response_model"] = first.get("id"), first.get("model")
    for chunk in chunks:
        if type(chunk) is not dict:
            raise _Shape
        usage = chunk.get("usage")
        if usage is not None:
            fields.update(usage_fields(usage))
        choices = chunk.get("choices")
        if not choices:
            continue
        if type(choices) is not list:
            raise _Shape
        for choice in choices:
            if type(choice) is not dict:
                raise _Shape
            index = choice.get("index") or 0
            if type(index) is not int:
                raise _Shape
            reason = choice.get("finish_reason")
            if reason:
                finish[index] = reason
            delta = choice.get("delta")
            if delta is None:
                continue
            if type(delta) is not dict:
                raise _Shape
            calls = delta.get("tool_calls")
            if calls:
                if type(calls) is not list:
                    raise _Shape
                for call in calls:
                    if type(call) is not dict:
                        raise _Shape
                    tool_calls.add((index, call.get("index") or 0))
            content = delta.get("content")
            if index == 0 and type(content) is str:
                text.append(content)
    fields["finish_reasons"] = [finish[i] for i in sorted(finish)] or None
    fields["tool_call_count"] = len(tool_calls)
    return fields, "".join(text) or None


# How a chunk that carries only text ends (one choice, no finish reason yet), in both JSON spacings,
# with and without the `usage: null` that `include_usage` adds to every chunk; and what else a chunk
# that ends so may carry (a tool call's pieces, usage, another choice's finish reason).
_TEXT_TAILS = (b'"finish_reason":null}]}', b'"finish_reason":null}],"usage":null}',
               b'"finish_reason": null}]}', b'"finish_reason": null}], "usage": null}')
_NOT_TEXT = (b'"tool_calls"', b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "')


def _chat_plan(payloads: list[bytes]) -> list[bool]:
    """Which chunks the worker parses when content is not kept: all but those that carry only text.
    A chunk's tail says it is text; the few that also hold something else are found by searching all
    chunks' bytes at once. No Python step per chunk."""
    text = list(map(bytes.endswith, payloads, repeat(_TEXT_TAILS)))
    body = b"\n".join(payloads)
    ends = None
    for mark in _NOT_TEXT:
        at = body.find(mark)
        if at < 0:
            continue
        if ends is None:
            ends = list(map(add, accumulate(map(len, payloads)), count()))  # where each chunk ends in `body`
        while at >= 0:
            text[bisect_right(ends, at)] = False
            at = body.find(mark, at + 1)
    return list(map(not_, text))


chat_chunks.sse_plan = _chat_plan  # type: ignore[attr-defined]


def _chat_chunks_any(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {}
    finish: dict[int, str] = {}
    tool_calls: set[tuple[int, int]] = set()
    text: list[str] = []
    for chunk in chunks:
        fields.setdefault("response_id", pick(chunk, "id"))
        fields.setdefault("response_model", pick(chunk, "model"))
        usage = pick(chunk, "usage")
        if usage is not None:
            fields.update(usage_fields(usage))
        for choice in items(pick(chunk, "choices")):
            index = pick(choice, "index") or 0
            index = index if type(index) is int else 0  # a malformed index: counted as the first choice's
            if pick(choice, "finish_reason"):
                finish[index] = pick(choice, "finish_reason")
            for call in items(pick(choice, "delta", "tool_calls")):
                call_index = pick(call, "index") or 0
                tool_calls.add((index, call_index if type(call_index) is int else 0))
            content = pick(choice, "delta", "content")
            if index == 0 and isinstance(content, str):
                text.append(content)
    fields["finish_reasons"] = [finish[i] for i in sorted(finish)] or None
    fields["tool_call_count"] = len(tool_calls)
    return fields, "".join(text) or None


# -- responses ---------------------------------------------------------------------------------------


def responses_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    given = body.get("input")
    messages = given if isinstance(given, list) else ([{"role": "user", "content": given}] if given is not None else [])
    if body.get("instructions"):
        messages = [{"role": "system", "content": body["instructions"]}, *messages]
    return _with_end_user({"request_params": params(body, _RESPONSES_PARAMS), "message_count": len(messages)}, body), \
        messages or None


def _output_text(data: Any) -> str | None:
    texts = [pick(part, "text") for item in pick(data, "output") or () if pick(item, "type") == "message"
             for part in pick(item, "content") or () if pick(part, "type") == "output_text"]
    return "".join(t for t in texts if isinstance(t, str)) or None


def responses_response(data: Any) -> tuple[dict[str, Any], Any]:
    output = pick(data, "output") or ()
    return {
        "response_id": pick(data, "id"),
        "response_model": pick(data, "model"),
        "finish_reasons": [pick(data, "status")] if pick(data, "status") else None,
        "tool_call_count": sum(1 for item in output if str(pick(item, "type") or "").endswith("_call")),
        **usage_fields(pick(data, "usage")),
    }, _output_text(data)


def responses_chunks(events: list[Any]) -> tuple[dict[str, Any], Any]:
    final = None
    text: list[str] = []
    for event in events:
        kind = pick(event, "type") or ""
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = pick(event, "response")
        elif kind == "response.output_text.delta" and isinstance(pick(event, "delta"), str):
            text.append(pick(event, "delta"))
    if final is not None:
        fields, out = responses_response(final)
        return fields, out or "".join(text) or None
    first = pick(events, 0, "response")
    return {"response_id": pick(first, "id"), "response_model": pick(first, "model")}, "".join(text) or None


# -- the rest --------------------------------------------------------------------------------------


def completion_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {"request_params": params(body, _CHAT_PARAMS)}, body.get("prompt")


def completion_response(data: Any) -> tuple[dict[str, Any], Any]:
    choices = pick(data, "choices") or []
    return {
        "response_id": pick(data, "id"),
        "response_model": pick(data, "model"),
        "finish_reasons": [r for r in (pick(c, "finish_reason") for c in choices) if r] or None,
        **usage_fields(pick(data, "usage")),
    }, pick(choices, 0, "text")


def completion_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {}
    text, finish = [], []
    for chunk in chunks:
        fields.setdefault("response_id", pick(chunk, "id"))
        fields.setdefault("response_model", pick(chunk, "model"))
        if pick(chunk, "usage") is not None:
            fields.update(usage_fields(pick(chunk, "usage")))
        piece = pick(chunk, "choices", 0, "text")
        if isinstance(piece, str):
            text.append(piece)
        if pick(chunk, "choices", 0, "finish_reason"):
            finish.append(pick(chunk, "choices", 0, "finish_reason"))
    fields["finish_reasons"] = finish or None
    return fields, "".join(text) or None


def input_request(names: tuple[str, ...], content_key: str) -> Any:
    def request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return {"request_params": params(body, names)}, body.get(content_key)

    return request


def model_and_usage(data: Any) -> tuple[dict[str, Any], Any]:
    """Embeddings, images, moderations: the model, the id, the usage; no text worth keeping."""
    fields = {"response_model": pick(data, "model"), "response_id": pick(data, "id"), **usage_fields(pick(data, "usage"))}
    results = pick(data, "results")
    if isinstance(results, list):
        fields["metadata"] = {"flagged": any(bool(pick(r, "flagged")) for r in results)}
    images = pick(data, "data")
    if isinstance(images, list) and pick(images, 0, "embedding") is None:
        fields["metadata"] = {"images": len(images)}
    return fields, None


def transcription_response(data: Any) -> tuple[dict[str, Any], Any]:
    if isinstance(data, str):
        return {}, data
    usage = pick(data, "usage")
    fields: dict[str, Any] = {}
    if pick(usage, "type") == "duration":
        fields["metadata"] = {"audio_seconds": pick(usage, "seconds")}
    elif usage is not None:
        fields.update(usage_fields(usage))
    return fields, pick(data, "text")


ENDPOINTS = {
    "/chat/completions": Endpoint("chat", chat_request, chat_response, chat_chunks),
    "/responses": Endpoint("chat", responses_request, responses_response, responses_chunks),
    "/completions": Endpoint("text_completion", completion_request, completion_response, completion_chunks),
    "/embeddings": Endpoint("embeddings", input_request(("dimensions", "encoding_format"), "input"), model_and_usage),
    "/images/generations": Endpoint("image_generation", input_request(("size", "quality", "n", "style", "response_format"), "prompt"), model_and_usage),
    "/images/edits": Endpoint("image_generation", input_request(("size", "quality", "n"), "prompt"), model_and_usage),
    "/images/variations": Endpoint("image_generation", input_request(("size", "n"), "prompt"), model_and_usage),
    "/audio/transcriptions": Endpoint("speech_to_text", input_request(("language", "response_format", "temperature"), "prompt"), transcription_response),
    "/audio/translations": Endpoint("speech_to_text", input_request(("response_format", "temperature"), "prompt"), transcription_response),
    "/audio/speech": Endpoint("text_to_speech", input_request(("voice", "response_format", "speed"), "input"), no_response),
    "/moderations": Endpoint("moderation", input_request((), "input"), model_and_usage),
}


call_of = stainless_call_of(ENDPOINTS)


_providers: dict[tuple[type, int], tuple[Any, str]] = {}


def provider_of(client: Any) -> str:
    # Read on the worker for every record: remembered per (client class, base URL object). The URL
    # object is kept with the answer, so its id cannot be reused while the entry stands.
    url = getattr(client, "_base_url", None)
    key = (type(client), id(url))
    hit = _providers.get(key)
    if hit is not None and hit[0] is url:
        return hit[1]
    if "Azure" in type(client).__name__:
        provider = "azure.ai.openai"
    else:
        provider = provider_from_url(str(getattr(client, "base_url", "")))
    if url is not None:
        if len(_providers) > 256:
            _providers.clear()
        _providers[key] = (url, provider)
    return provider


def _legacy_installed() -> bool:
    """Whether the installed openai is a 0.x release (the module-level API, before 1.0's clients)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION).startswith("0.")
    except metadata.PackageNotFoundError:
        return False


if _legacy_installed():  # one adapter name for both majors: 0.x gets its own patch table, the same endpoints
    from .openai_legacy import base_url_of, legacy_call_of, legacy_patches, provider_of  # noqa: F811

    PATCHES, call_of = legacy_patches(), legacy_call_of(ENDPOINTS)
