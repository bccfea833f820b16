"""The `google-genai` SDK (>= 1.0): Gemini on the Gemini API and on Vertex AI, sync and async, streams.

Every model call of the SDK goes through one client, `BaseApiClient`:
`request(http_method, path, request_dict, http_options)`, the generator
`request_streamed`, and their async twins (`async_request_streamed` is a
coroutine returning an async generator). The path names the endpoint
(`models/gemini-2.5-flash:generateContent`, `…:streamGenerateContent?alt=sse`);
`request_dict` is the request as sent (camelCase JSON), and each response (and
each stream chunk) comes back as text, which is what is kept until the worker
parses it. `client.models.*`, `client.chats`, `client.aio.*` all land here.

Recorded (operation):
- `generateContent`, `streamGenerateContent` (`generate_content`): usage from
  `usageMetadata` (output = candidates + thoughts, reasoning = thoughts, cache
  reads = `cachedContentTokenCount`, tool-use prompt tokens counted as input),
  `responseId`, `modelVersion`, the candidates' `finishReason`s, function calls.
  A stream's final counts are on its last chunk. Automatic function calling
  makes one request per round: each is a record of its own.
- `embedContent`, `batchEmbedContents`, and Vertex `predict` on an embedding
  model (`embeddings`): tokens from `usageMetadata`, or from the Vertex
  predictions' statistics. A Gemini API embedding response without usage
  leaves the tokens (and the cost) unknown.
- Vertex `predict` on an Imagen model (`image_generation`): the image count.
- `countTokens` (`count_tokens`): not billed, so recorded with a cost of 0 and
  the count in `metadata["counted_input_tokens"]`, never in `input_tokens`.

Everything else (files, caches, batches, tunings, `computeTokens`, the
`interactions` API, the Live API over websockets) passes through untouched.

The provider is `gcp.vertex_ai` for a client on Vertex AI, else `gcp.gemini`.
The model recorded is the last segment of the path (`gemini-2.5-flash`, also
for `projects/…/publishers/google/models/gemini-2.5-flash`). Request
parameters are recorded with the names the Python SDK gives them
(`max_output_tokens`, `thinking_budget`). Retries the SDK makes
(`HttpOptions(retry_options=…)`) count into `attempt` for calls that are not
streamed (a synchronous stream sends its request when first read, after the
call returned).
"""

from __future__ import annotations

import re
from typing import Any

from ..shapes import pick
from .endpoint import Call, Endpoint, free_count, usage_fields
from .method_point import method
from .patch import MethodPatch
from .sdkcall import open_call_here

NAME = "google_genai"
DISTRIBUTION = "google-genai"
MIN_VERSION = (1, 0)

_CLIENT = "google.genai._api_client"

# generationConfig's parameters worth recording (wire names; recorded in the SDK's snake_case).
_PARAMS = ("temperature", "topP", "topK", "maxOutputTokens", "candidateCount", "stopSequences", "seed",
           "presencePenalty", "frequencyPenalty", "responseMimeType", "responseLogprobs", "logprobs")
_THINKING = ("thinkingBudget", "thinkingLevel", "includeThoughts")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


# -- generateContent ---------------------------------------------------------------------------------


def generate_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    contents = body.get("contents")
    messages = list(contents) if isinstance(contents, list) else ([contents] if contents else [])
    if body.get("systemInstruction"):
        messages = [{**_as_content(body["systemInstruction"]), "role": "system"}, *messages]
    config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else {}
    found = _named(config, _PARAMS)
    thinking = config.get("thinkingConfig")
    if isinstance(thinking, dict):
        found.update(_named(thinking, _THINKING))
    mode = pick(body, "toolConfig", "functionCallingConfig", "mode")
    if mode is not None:
        found["function_calling_mode"] = mode
    if body.get("cachedContent"):
        found["cached_content"] = body["cachedContent"]
    return {"request_params": found or None, "message_count": len(messages)}, messages or None


def _named(config: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The parameters given, by their snake_case name (the wire takes either spelling; the SDK sends some nested
    ones, like `thinkingConfig.thinking_budget`, in snake_case)."""
    found = {}
    for name in names:
        snake = _snake(name)
        value = config.get(name, config.get(snake))
        if value is not None:
            found[snake] = value
    return found


def _as_content(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"parts": [{"text": value}]}


def _parts(candidate: Any) -> list[Any]:
    parts = pick(candidate, "content", "parts")
    return parts if isinstance(parts, list) else []


def _text(candidate: Any) -> str:
    """The answer's text (thought summaries left out: they are not the answer)."""
    return "".join(p["text"] for p in _parts(candidate)
                   if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"))


def _candidates(data: Any) -> list[Any]:
    candidates = pick(data, "candidates")
    return candidates if isinstance(candidates, list) else []


def generate_response(data: Any) -> tuple[dict[str, Any], Any]:
    candidates = _candidates(data)
    fields = {
        "response_id": pick(data, "responseId"),
        "response_model": pick(data, "modelVersion"),
        "finish_reasons": [r for r in (pick(c, "finishReason") for c in candidates) if r] or None,
        "tool_call_count": sum(1 for c in candidates for p in _parts(c) if pick(p, "functionCall") is not None),
        **usage_fields(pick(data, "usageMetadata")),
    }
    blocked = pick(data, "promptFeedback", "blockReason")
    if blocked:
        fields["metadata"] = {"block_reason": blocked}
    return fields, _text(candidates[0]) if candidates else None


def generate_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {}
    finish: dict[int, str] = {}
    text: list[str] = []
    calls = 0
    for chunk in chunks:
        fields["response_id"] = pick(chunk, "responseId") or fields.get("response_id")
        fields["response_model"] = pick(chunk, "modelVersion") or fields.get("response_model")
        if pick(chunk, "usageMetadata") is not None:  # cumulative: the last one has the final counts
            fields.update(usage_fields(pick(chunk, "usageMetadata")))
        if pick(chunk, "promptFeedback", "blockReason"):
            fields["metadata"] = {"block_reason": pick(chunk, "promptFeedback", "blockReason")}
        for position, candidate in enumerate(_candidates(chunk)):
            index = pick(candidate, "index")
            index = index if isinstance(index, int) else position
            if pick(candidate, "finishReason"):
                finish[index] = pick(candidate, "finishReason")
            calls += sum(1 for p in _parts(candidate) if pick(p, "functionCall") is not None)
            if index == 0:
                text.append(_text(candidate))
    fields["finish_reasons"] = [finish[i] for i in sorted(finish)] or None
    fields["tool_call_count"] = calls
    return fields, "".join(text) or None


# -- embeddings, predict, countTokens ----------------------------------------------------------------


def embed_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    requests = body.get("requests")
    if isinstance(requests, list):  # batchEmbedContents: one request per text
        texts: Any = [pick(r, "content") for r in requests]
        found = {"output_dimensionality": pick(requests, 0, "outputDimensionality"), "task_type": pick(requests, 0, "taskType")}
    elif isinstance(body.get("instances"), list):  # Vertex predict
        texts = [pick(i, "content") for i in body["instances"]]
        found = {"output_dimensionality": pick(body, "parameters", "outputDimensionality"), "task_type": pick(body, "instances", 0, "task_type")}
    else:
        texts = body.get("content")
        found = {"output_dimensionality": body.get("outputDimensionality"), "task_type": body.get("taskType")}
    return {"request_params": {k: v for k, v in found.items() if v is not None} or None}, texts


def embed_response(data: Any) -> tuple[dict[str, Any], Any]:
    """Tokens in (an embedding has no output tokens: 0, once the input is known)."""
    fields = usage_fields(pick(data, "usageMetadata"))
    predictions = pick(data, "predictions")
    counts = [pick(p, "embeddings", "statistics", "token_count") for p in predictions] if isinstance(predictions, list) else []
    if "input_tokens" not in fields and counts and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        fields["input_tokens"] = sum(counts)
    if "input_tokens" in fields:
        fields.setdefault("output_tokens", 0)
    billed = pick(data, "metadata", "billableCharacterCount")
    if billed is not None:
        fields["metadata"] = {"billable_characters": billed}
    return fields, None


def images_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    found = _named(parameters, ("sampleCount", "aspectRatio", "imageSize"))
    return {"request_params": found or None}, pick(body, "instances", 0, "prompt")


def images_response(data: Any) -> tuple[dict[str, Any], Any]:
    predictions = pick(data, "predictions")
    return {"metadata": {"images": len(predictions)}} if isinstance(predictions, list) else {}, None


def count_tokens_response(data: Any) -> tuple[dict[str, Any], Any]:
    return free_count(pick(data, "totalTokens")), None


def _body(result: Any) -> Any:
    """Keep the response's text (SdkHttpResponse.body), which costs nothing to hold; before 1.28 the SDK
    handed back the parsed dict, which is kept as it is."""
    body = getattr(result, "body", None)
    return body if body is not None else result


GENERATE = Endpoint("generate_content", generate_request, generate_response, generate_chunks, keep=_body, chunk=_body)
EMBED = Endpoint("embeddings", embed_request, embed_response, keep=_body)
IMAGES = Endpoint("image_generation", images_request, images_response, keep=_body)
COUNT_TOKENS = Endpoint("count_tokens", generate_request, count_tokens_response, keep=_body)
ENDPOINTS = {
    "generateContent": GENERATE,
    "streamGenerateContent": GENERATE,
    "embedContent": EMBED,
    "batchEmbedContents": EMBED,
    "predict": EMBED,  # or IMAGES: see call_of
    "countTokens": COUNT_TOKENS,
}


def call_of(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """The endpoint the request's path names (`…/models/{model}:{verb}`), or None."""
    method_name = args[0] if args else kwargs.get("http_method")
    path = args[1] if len(args) > 1 else kwargs.get("path")
    if not isinstance(path, str) or str(method_name).lower() != "post":
        return None
    resource, _, verb = path.split("?", 1)[0].rpartition(":")
    endpoint = ENDPOINTS.get(verb)
    if endpoint is None:
        return None
    body = args[2] if len(args) > 2 else kwargs.get("request_dict")
    if verb == "predict" and pick(body, "instances", 0, "prompt") is not None:
        endpoint = IMAGES
    return Call(endpoint, body, resource.rsplit("/", 1)[-1] or None, verb == "streamGenerateContent")


def provider_of(client: Any) -> str:
    return "gcp.vertex_ai" if getattr(client, "vertexai", None) else "gcp.gemini"


def base_url_of(client: Any) -> Any:
    return client._http_options.base_url  # Gemini's, Vertex AI's regional one, or the app's own


def count_attempt(adapter: Any) -> Any:
    """Wraps `_request_once` (sync and async: the SDK's retry loop calls it once per attempt): the first
    attempt keeps the request as sent, each further one is a retry of the open call."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = open_call_here()
        if call is not None and call.client is instance:
            if call.raw_request is None:
                data = getattr(args[0] if args else kwargs.get("http_request"), "data", None)
                call.raw_request = data if isinstance(data, dict) else call.body
            else:
                call.retries += 1
        return wrapped(*args, **kwargs)

    return wrapper


PATCHES = (
    method(_CLIENT, "BaseApiClient", "request", "sync"),
    method(_CLIENT, "BaseApiClient", "request_streamed", "sync"),
    method(_CLIENT, "BaseApiClient", "async_request", "async"),
    method(_CLIENT, "BaseApiClient", "async_request_streamed", "async"),
    MethodPatch(_CLIENT, "BaseApiClient", "_request_once", count_attempt),
    MethodPatch(_CLIENT, "BaseApiClient", "_async_request_once", count_attempt),
)
