"""The fake provider speaking Gemini's API (the Gemini API and Vertex AI), for the `google-genai` SDK.

Paths end in `…/models/{model}:{verb}`: `generateContent` (JSON),
`streamGenerateContent?alt=sse` (SSE; every chunk carries `usageMetadata`, the
last one, with `finishReason`, the final counts), `embedContent`,
`batchEmbedContents` (with `usageMetadata`), Vertex `predict` on an embedding
model (token counts in each prediction's statistics) and `countTokens`.

Usage follows the settings: `cache_read_tokens` become
`cachedContentTokenCount` (part of `promptTokenCount`, as Gemini counts them)
and `reasoning_tokens` become `thoughtsTokenCount` (by default 8 for 2.5 and
later models unless the request sets `thinkingBudget` to 0, else none). A
request offering function declarations gets a call to the first one — unless
its last turn is already a function response, so the SDK's automatic function
calling ends after one round. Errors use Google's shape,
`{"error": {"code", "message", "status"}}`.

    client = FakeProvider().client("gemini")                    # google.genai.Client (Gemini API)
    client = FakeProvider().client("gemini", vertexai=True)     # on Vertex AI (project "fake-project")
    aclient = FakeProvider().client("gemini", asynchronous=True)  # its `client.aio`
"""

from __future__ import annotations

import importlib
from typing import Any

from .._wire import Failure, Reply, Settings, add_route, count_tokens, json_reply, next_id, split_words, sse_frames, stream_reply

VERBS = ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "predict", "countTokens")
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE",
          504: "DEADLINE_EXCEEDED"}
VECTOR = [0.1, 0.2, 0.3, 0.4]


def error(failure: Failure) -> Reply:
    headers = {} if failure.retry_after is None else {"retry-after": str(failure.retry_after)}
    return json_reply(failure.status, {"error": {"code": failure.status, "message": failure.message,
                                                 "status": STATUS.get(failure.status, "UNKNOWN")}}, headers)


def prompt_tokens(body: dict[str, Any]) -> int:
    return count_tokens({"input": body.get("contents"), "system": body.get("systemInstruction"), "tools": body.get("tools")})


def thoughts(body: dict[str, Any], settings: Settings, model: str) -> int:
    if settings.reasoning_tokens is not None:
        return settings.reasoning_tokens
    budget = ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("thinkingBudget")
    thinks = any(tag in model for tag in ("2.5", "gemini-3"))
    return 8 if thinks and budget != 0 else 0


def _function_call(body: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    declared = [d for tool in body.get("tools") or () if isinstance(tool, dict) for d in tool.get("functionDeclarations") or ()]
    contents = body.get("contents") or [{}]
    answered = any("functionResponse" in part for part in (contents[-1].get("parts") or ()) if isinstance(part, dict))
    if not (settings.tool_call and declared) or answered:
        return None
    return {"name": declared[0].get("name") or "tool", "args": {"query": "fake"}}


def generate(body: dict[str, Any], settings: Settings, model: str, stream: bool) -> Reply:
    words = split_words(settings.reply)
    call = _function_call(body, settings)
    thought = thoughts(body, settings, model)
    prompt = prompt_tokens(body) + settings.cache_read_tokens
    output = 1 if call else len(words)

    def usage(candidates: int) -> dict[str, Any]:
        counts = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                  "totalTokenCount": prompt + candidates + thought,
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if settings.cache_read_tokens:
            counts["cachedContentTokenCount"] = settings.cache_read_tokens
        if thought:
            counts["thoughtsTokenCount"] = thought
        return counts

    head = {"modelVersion": model, "responseId": next_id("resp-")}

    def chunk(parts: list[dict[str, Any]], candidates: int, finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage(candidates), **head}

    if not stream:
        parts = [{"functionCall": call}] if call else [{"text": settings.reply}]
        return json_reply(200, chunk(parts, output, "STOP"))
    if call:
        events = [chunk([{"functionCall": call}], output, "STOP")]
    else:
        events = [chunk([{"text": w}], i + 1, "STOP" if i == len(words) - 1 else None) for i, w in enumerate(words)]
    return stream_reply(sse_frames([(None, e) for e in events]), settings)


def embed(body: dict[str, Any], settings: Settings) -> Reply:
    requests = body.get("requests")
    contents = [r.get("content") for r in requests if isinstance(r, dict)] if isinstance(requests, list) else [body.get("content")]
    tokens = count_tokens({"input": contents})
    usage = {"promptTokenCount": tokens, "totalTokenCount": tokens}
    if isinstance(requests, list):
        return json_reply(200, {"embeddings": [{"values": VECTOR} for _ in contents], "usageMetadata": usage})
    return json_reply(200, {"embedding": {"values": VECTOR}, "usageMetadata": usage})


def predict(body: dict[str, Any], settings: Settings) -> Reply:
    instances = [i for i in body.get("instances") or () if isinstance(i, dict)]
    predictions = [{"embeddings": {"values": VECTOR, "statistics": {"token_count": count_tokens({"input": i.get("content")}),
                                                                    "truncated": False}}} for i in instances]
    billed = sum(len(i.get("content") or "") for i in instances if isinstance(i.get("content"), str))
    return json_reply(200, {"predictions": predictions, "metadata": {"billableCharacterCount": billed}})


def handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    resource, _, verb = path.rpartition(":")
    model = resource.rsplit("/", 1)[-1]
    if verb in ("generateContent", "streamGenerateContent"):
        return generate(data, settings, model, stream=verb == "streamGenerateContent")
    if verb in ("embedContent", "batchEmbedContents"):
        return embed(data, settings)
    if verb == "predict":
        return predict(data, settings)
    request = data.get("generateContentRequest") if isinstance(data.get("generateContentRequest"), dict) else data
    return json_reply(200, {"totalTokens": prompt_tokens(request), "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens(request)}]})


add_route(lambda method, path, headers: method.upper() == "POST" and path.rpartition(":")[2] in VERBS
          and "/models/" in path, handle, error)


def _http() -> Any:
    """The HTTP library the SDK builds its clients with (httpx2 when it is installed, else httpx)."""
    api_client = importlib.import_module("google.genai._api_client")
    return importlib.import_module("httpx2" if getattr(api_client, "httpx2", None) is not None else "httpx")


def client(fake: Any, asynchronous: bool = False, **kwargs: Any) -> Any:
    """A real `google.genai.Client` on the fake's in-process transports (its `.aio` when `asynchronous`).

    `vertexai=True` puts it on Vertex AI (project `fake-project`, location `us-central1`, a fixed
    access token); `http_options` (retry options, say) keep everything but the HTTP clients; extra
    arguments go to the client.
    """
    from google import genai
    from google.genai import types

    http = _http()
    name = http.__name__
    options = kwargs.pop("http_options", None) or types.HttpOptions()
    options = types.HttpOptions(**options) if isinstance(options, dict) else options
    options = options.model_copy(update={"httpx_client": http.Client(transport=fake.transport(name)),
                                         "httpx_async_client": http.AsyncClient(transport=fake.async_transport(name))})
    if kwargs.get("vertexai") and "api_key" not in kwargs and "credentials" not in kwargs:
        from google.oauth2.credentials import Credentials

        kwargs.setdefault("project", "fake-project")
        kwargs.setdefault("location", "us-central1")
        kwargs["credentials"] = Credentials(token="fake-access-token")
    elif not kwargs.get("vertexai"):
        kwargs.setdefault("api_key", "fake-gemini-key")
    made = genai.Client(http_options=options, **kwargs)
    return made.aio if asynchronous else made

