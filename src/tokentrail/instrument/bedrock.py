"""Amazon Bedrock through boto3 / botocore (>= 1.34): Converse, InvokeModel, their streams, CountTokens.

Every boto3 call goes through `botocore.client.BaseClient._make_api_call(operation_name,
api_params)`; the patch is on the class, so clients created before `init()` are
recorded too. Calls of any other service (`s3`, `bedrock-agent-runtime`, …)
and other Bedrock operations (guardrails, async invokes) pass straight through.
A second, inner patch on `_make_request` reads the request as sent, the retries
botocore made (`ResponseMetadata.RetryAttempts` -> `attempt`) and, for a failed
call, the HTTP status and error code (botocore's `ClientError` carries them
only in its `response` dict).

Recorded (operation):
- `Converse` / `ConverseStream` (`chat`): `usage.{inputTokens, outputTokens,
  cacheReadInputTokens, cacheWriteInputTokens}` (from the stream's final
  `metadata` event), `stopReason`, tool uses, `metrics.latencyMs` as
  `metadata["provider_latency_ms"]`. The stream stays botocore's `EventStream`
  (a proxy: `isinstance` holds) and records when read to the end, closed,
  failed, or dropped.
- `InvokeModel` / `InvokeModelWithResponseStream` (`chat`; `embeddings` for an
  embedding model, `image_generation` for an image model): the body is
  model-family specific. The response body is read on the calling thread and
  the application gets an equivalent `StreamingBody` (the same bytes; a body
  that failed to read fails the same way for the application). Usage is read
  from the body where the family reports it (Anthropic, Nova, Llama, Titan,
  OpenAI-shaped), else from the response headers
  `x-amzn-bedrock-{input,output}-token-count`, which every family has; a
  stream's last chunk carries `amazon-bedrock-invocationMetrics` for every family.
- `CountTokens` (`count_tokens`): not billed, cost 0, the count in
  `metadata["counted_input_tokens"]`.

Token counts: Bedrock reports cache reads and writes apart from `inputTokens`
(like Anthropic; AWS's prompt-caching guide: `totalTokens = inputTokens +
outputTokens + cacheReadInputTokens + cacheWriteInputTokens`), so they are
added to `input_tokens`, which counts all input as OpenTelemetry does. A
response whose `totalTokens` shows the input already includes them is taken as
it is.

Bedrock responses have no response id or model: `response_id` is the AWS
request id (`ResponseMetadata.RequestId`, the id AWS support asks for; a
model's own id, such as Anthropic's `msg_bdrk_…`, goes to
`metadata["model_response_id"]`), and the model is the request's `modelId`,
which prices as the model it names: `us.anthropic.claude-…-v2:0` (an inference
profile) and ARNs of foundation models and inference profiles resolve in the
price table; an application inference profile ARN names no model (map it with
`model_aliases`). A Prompt Router's `invokedModelId` becomes `response_model`.
A stream's mid-stream exception (`EventStreamError`) is categorized from its
code (`throttlingException` -> `rate_limit`).

Not covered: aiobotocore (its own async `_make_api_call`), and
`InvokeModelWithBidirectionalStream` (not in boto3).
"""

from __future__ import annotations

import io
from typing import Any

from ..errors import categorize
from ..shapes import pick
from .endpoint import Call, Endpoint, free_count, json_value, no_response, params, usage_fields
from .method_point import method, proxy_stream
from .patch import MethodPatch
from .sdkcall import SDKCall, internal_error, open_call_here

NAME = "bedrock"
DISTRIBUTION = "botocore"
MIN_VERSION = (1, 34)

_CLIENT = "botocore.client"
SERVICE = "bedrock-runtime"
_INFERENCE = ("maxTokens", "temperature", "topP", "stopSequences")
# InvokeModel bodies: the families' generation parameters, top level or in their config object.
_INVOKE_PARAMS = ("max_tokens", "max_gen_len", "max_new_tokens", "maxTokens", "maxTokenCount", "temperature",
                  "top_p", "topP", "p", "top_k", "topK", "k", "stop_sequences", "stopSequences", "stop")
_HEADER = "x-amzn-bedrock-"


# -- usage ---------------------------------------------------------------------------------------------


def bedrock_usage(usage: Any) -> dict[str, Any]:
    """Our token fields from Bedrock's camelCase counts: Converse's `usage`, Nova's, a stream's
    `invocationMetrics` (`…TokenCount`), or the response headers' numbers."""
    if not isinstance(usage, dict):
        return {}
    inp = usage.get("inputTokens", usage.get("inputTokenCount"))
    out = usage.get("outputTokens", usage.get("outputTokenCount"))
    read = usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount"))
    write = usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount"))
    total = usage.get("totalTokens")
    counts = (inp, out, read or 0, write or 0, total)
    if (read or write) and all(type(c) is int for c in counts) and total == inp + out:
        # The input already counts the cache (totalTokens says so): take it as it is.
        return usage_fields({"input_tokens": inp, "output_tokens": out, "cache_read_tokens": read, "cache_write_tokens": write})
    return usage_fields({"input_tokens": inp, "output_tokens": out,  # Anthropic's spelling: cache apart from input
                         "cache_read_input_tokens": read, "cache_creation_input_tokens": write})


def _header_usage(headers: Any) -> dict[str, Any]:
    if not isinstance(headers, dict):
        return {}
    return bedrock_usage({"inputTokenCount": headers.get(_HEADER + "input-token-count"),
                          "outputTokenCount": headers.get(_HEADER + "output-token-count"),
                          "cacheReadInputTokenCount": headers.get(_HEADER + "cache-read-input-token-count"),
                          "cacheWriteInputTokenCount": headers.get(_HEADER + "cache-write-input-token-count")})


def _family_usage(data: Any) -> dict[str, Any]:
    """Usage where a model family's InvokeModel body (or stream chunk) reports it."""
    if not isinstance(data, dict):
        return {}
    usage = data.get("usage")
    if isinstance(usage, dict):
        if "inputTokens" in usage or "outputTokens" in usage:  # Nova
            return bedrock_usage(usage)
        return usage_fields(usage)  # Anthropic (cache added to input), OpenAI-shaped (gpt-oss, Jamba, DeepSeek)
    if "prompt_token_count" in data or "generation_token_count" in data:  # Llama
        return usage_fields({"input_tokens": data.get("prompt_token_count"), "output_tokens": data.get("generation_token_count")})
    if "inputTextTokenCount" in data or "totalOutputTextTokenCount" in data:  # Titan: text, a stream chunk, an embedding
        out = data.get("totalOutputTextTokenCount")
        results = data.get("results")
        if out is None and isinstance(results, list) and results:
            counts = [pick(r, "tokenCount") for r in results]
            out = sum(counts) if all(type(c) is int for c in counts) else None
        return usage_fields({"input_tokens": data.get("inputTextTokenCount"), "output_tokens": out})
    return {}


# -- Converse --------------------------------------------------------------------------------------


def converse_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    messages = body.get("messages")
    messages = list(messages) if isinstance(messages, list) else []
    if body.get("system"):
        messages = [{"role": "system", "content": body["system"]}, *messages]
    found = params(body.get("inferenceConfig") if isinstance(body.get("inferenceConfig"), dict) else {}, _INFERENCE) or {}
    extra = body.get("additionalModelRequestFields")
    if isinstance(extra, dict):
        found.update(params(extra, tuple(extra)) or {})
    choice = pick(body, "toolConfig", "toolChoice")
    if isinstance(choice, dict) and choice:
        found["toolChoice"] = next(iter(choice))
    for name, value in (("latency", pick(body, "performanceConfig", "latency")), ("serviceTier", pick(body, "serviceTier", "type"))):
        if value is not None:
            found[name] = value
    return {"request_params": found or None, "message_count": len(messages)}, messages or None


def _blocks_text(blocks: Any) -> str | None:
    texts = [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)] if isinstance(blocks, list) else []
    return "".join(texts) or None


def _converse_extras(data: Any, fields: dict[str, Any]) -> None:
    """The provider's own latency and, behind a Prompt Router, the model it chose."""
    latency = pick(data, "metrics", "latencyMs")
    if latency is not None:
        fields["metadata"] = {"provider_latency_ms": latency}
    invoked = pick(data, "trace", "promptRouter", "invokedModelId")
    if isinstance(invoked, str):
        fields["response_model"] = invoked


def converse_response(data: Any) -> tuple[dict[str, Any], Any]:
    content = pick(data, "output", "message", "content")
    stop = pick(data, "stopReason")
    fields = {"response_id": pick(data, "ResponseMetadata", "RequestId"),
              "finish_reasons": [stop] if stop else None,
              "tool_call_count": sum(1 for b in content if pick(b, "toolUse") is not None) if isinstance(content, list) else 0,
              **bedrock_usage(pick(data, "usage"))}
    _converse_extras(data, fields)
    return fields, _blocks_text(content)


def converse_chunks(events: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {"tool_call_count": 0}
    text: list[str] = []
    for event in events:
        piece = pick(event, "contentBlockDelta", "delta", "text")
        if isinstance(piece, str):
            text.append(piece)
        elif pick(event, "contentBlockStart", "start", "toolUse") is not None:
            fields["tool_call_count"] += 1
        elif pick(event, "messageStop", "stopReason"):
            fields["finish_reasons"] = [pick(event, "messageStop", "stopReason")]
        elif isinstance(pick(event, "metadata"), dict):
            fields.update(bedrock_usage(pick(event, "metadata", "usage")))
            _converse_extras(event["metadata"], fields)
    return fields, "".join(text) or None


# -- InvokeModel ---------------------------------------------------------------------------------------


def invoke_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    if "modelId" in body:  # botocore's parameters, not the body as sent (a stubbed client)
        body = json_value(body.get("body"))
        body = body if isinstance(body, dict) else {}
    found = {}
    for holder in (body, body.get("textGenerationConfig"), body.get("inferenceConfig")):
        if isinstance(holder, dict):
            found.update(params(holder, _INVOKE_PARAMS) or {})
    for key in ("messages", "prompt", "inputText", "message", "texts", "input_text", "text"):
        if body.get(key) is not None:
            content = body[key]
            break
    else:
        content = None
    messages = content if isinstance(content, list) and key == "messages" else None
    if messages is not None and body.get("system"):
        messages = [{"role": "system", "content": body["system"]}, *messages]
    return ({"request_params": found or None, "message_count": len(messages) if messages is not None else None},
            messages if messages is not None else content)


# Where each family puts its text and its finish reason (InvokeModel bodies), first found wins.
_TEXT_PATHS = (("content",), ("output", "message", "content"), ("generation",), ("results", 0, "outputText"),
               ("outputs", 0, "text"), ("choices", 0, "message", "content"), ("choices", 0, "text"),
               ("generations", 0, "text"), ("text",), ("completion",))
_FINISH_PATHS = (("stop_reason",), ("stopReason",), ("results", 0, "completionReason"), ("outputs", 0, "stop_reason"),
                 ("choices", 0, "finish_reason"), ("generations", 0, "finish_reason"), ("finish_reason",))


def _first(data: Any, paths: tuple[tuple[Any, ...], ...]) -> Any:
    for path in paths:
        value = pick(data, *path)
        if value is not None:
            return value
    return None


def _invoke_text(data: Any) -> str | None:
    value = _first(data, _TEXT_PATHS)
    return value if isinstance(value, str) else _blocks_text(value)


def _tool_calls(data: Any) -> int:
    blocks = _first(data, _TEXT_PATHS[:2])
    count = sum(1 for b in blocks if pick(b, "type") == "tool_use" or pick(b, "toolUse") is not None) if isinstance(blocks, list) else 0
    calls = pick(data, "choices", 0, "message", "tool_calls")
    return count + (len(calls) if isinstance(calls, list) else 0)


def read_body(result: Any) -> dict[str, Any]:
    """On the calling thread: read the response body and hand the application an equal `StreamingBody`."""
    kept = {"headers": pick(result, "ResponseMetadata", "HTTPHeaders"), "request_id": pick(result, "ResponseMetadata", "RequestId")}
    body = result.get("body") if isinstance(result, dict) else None
    if body is None or not hasattr(body, "read"):
        return kept
    from botocore.response import StreamingBody

    try:
        data = body.read()
    except Exception as exc:  # noqa: BLE001 - the application's own read fails the same way
        result["body"] = StreamingBody(_Failed(exc), None)
        return kept
    result["body"] = StreamingBody(io.BytesIO(data), len(data))
    kept["body"] = data
    return kept


class _Failed:
    """The raw stream of a body that failed to read: reading it raises what the first read raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read(self, *args: Any) -> bytes:
        raise self.error

    def close(self) -> None:
        pass


def invoke_response(kept: Any) -> tuple[dict[str, Any], Any]:
    data = json_value(pick(kept, "body"))
    fields: dict[str, Any] = {"response_id": pick(kept, "request_id"), **_header_usage(pick(kept, "headers"))}
    fields.update(_family_usage(data))
    if isinstance(data, dict):
        finish = _first(data, _FINISH_PATHS)
        fields["finish_reasons"] = [finish] if isinstance(finish, str) else None
        fields["tool_call_count"] = _tool_calls(data)
        if isinstance(data.get("id"), str):
            fields["metadata"] = {"model_response_id": data["id"]}
        if "embedding" in data or "embeddings" in data or "embeddingsByType" in data:
            fields.setdefault("output_tokens", 0)  # an embedding has no output tokens
    return fields, _invoke_text(data) if isinstance(data, dict) else None


def _chunk_bytes(event: Any) -> Any:
    """Keep a stream event's payload bytes (parsed on the worker)."""
    return pick(event, "chunk", "bytes")


# Text and finish reason in each family's stream chunk.
_CHUNK_TEXT = (("delta", "text"), ("contentBlockDelta", "delta", "text"), ("generation",), ("outputText",),
               ("outputs", 0, "text"), ("choices", 0, "delta", "content"), ("text",))
_CHUNK_FINISH = (("delta", "stop_reason"), ("messageStop", "stopReason"), ("stop_reason",), ("completionReason",),
                 ("outputs", 0, "stop_reason"), ("choices", 0, "finish_reason"), ("finish_reason",))


def invoke_chunks(events: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    metrics = None
    text: list[str] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        usage.update(_family_usage(pick(event, "message") or pick(event, "metadata") or event))
        piece = _first(event, _CHUNK_TEXT)
        if isinstance(piece, str):
            text.append(piece)
        finish = _first(event, _CHUNK_FINISH)
        if isinstance(finish, str):
            fields["finish_reasons"] = [finish]
        if isinstance(event.get("amazon-bedrock-invocationMetrics"), dict):
            metrics = event["amazon-bedrock-invocationMetrics"]
    for name, value in bedrock_usage(metrics).items():  # every family: fills what its own chunks left out
        usage.setdefault(name, value)
    fields.update(usage)
    return fields, "".join(text) or None


def count_tokens_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    converse = pick(body, "input", "converse")
    return converse_request(converse) if isinstance(converse, dict) else ({}, None)


def count_tokens_response(data: Any) -> tuple[dict[str, Any], Any]:
    return {**free_count(pick(data, "inputTokens")), "response_id": pick(data, "ResponseMetadata", "RequestId")}, None


CONVERSE = Endpoint("chat", converse_request, converse_response, keep=dict)  # a shallow copy: the app may edit its dict
CONVERSE_STREAM = Endpoint("chat", converse_request, no_response, converse_chunks)
INVOKE = Endpoint("chat", invoke_request, invoke_response, keep=read_body)
INVOKE_EMBED = Endpoint("embeddings", invoke_request, invoke_response, keep=read_body)
INVOKE_IMAGE = Endpoint("image_generation", invoke_request, invoke_response, keep=read_body)
INVOKE_STREAM = Endpoint("chat", invoke_request, no_response, invoke_chunks, chunk=_chunk_bytes)
COUNT_TOKENS = Endpoint("count_tokens", count_tokens_request, count_tokens_response, keep=dict)
ENDPOINTS = {"Converse": CONVERSE, "ConverseStream": CONVERSE_STREAM, "InvokeModel": INVOKE,
             "InvokeModelWithResponseStream": INVOKE_STREAM, "CountTokens": COUNT_TOKENS}
_STREAM_KEYS = {CONVERSE_STREAM: "stream", INVOKE_STREAM: "body"}  # where the EventStream sits in the result


def _invoke_endpoint(model: Any) -> Endpoint:
    name = str(model).lower()
    if "embed" in name:
        return INVOKE_EMBED
    if any(tag in name for tag in ("image", "canvas", "stability.")):
        return INVOKE_IMAGE
    return INVOKE


def call_of(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """A Bedrock runtime operation we record, or None (every other service and operation)."""
    service = getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None)
    if service != SERVICE:
        return None
    endpoint = ENDPOINTS.get(args[0] if args else kwargs.get("operation_name"))
    if endpoint is None:
        return None
    api_params = args[1] if len(args) > 1 else kwargs.get("api_params")
    model = api_params.get("modelId") if isinstance(api_params, dict) else None
    if endpoint is INVOKE:
        endpoint = _invoke_endpoint(model)
    return Call(endpoint, api_params, model, endpoint in _STREAM_KEYS)


def provider_of(client: Any) -> str:
    return "aws.bedrock"


def base_url_of(client: Any) -> Any:
    return client.meta.endpoint_url  # the region's (or the app's endpoint_url=)


# -- errors and streams ----------------------------------------------------------------------------------


def _category(client: Any, code: Any, status: Any, message: Any) -> str:
    """The category of a Bedrock error: its status code, else its modeled exception class (`throttlingException`)."""
    error_class = None
    if isinstance(code, str) and code:
        try:
            error_class = client.exceptions.from_code(code[:1].upper() + code[1:])
        except Exception:  # noqa: BLE001 - no modeled class: the status and message decide
            error_class = None
    return categorize(error_class, status_code=status if type(status) is int else None,
                      message=message if isinstance(message, str) else None)


def _note_response(call: SDKCall, client: Any, http: Any, parsed: Any) -> None:
    retries = pick(parsed, "ResponseMetadata", "RetryAttempts")
    if type(retries) is int and retries >= 0:
        call.retries = retries
    status = getattr(http, "status_code", None)
    if type(status) is int and status >= 300:  # botocore raises after this returns: the record needs the status
        call.fields["status_code"] = status
        call.error_category = _category(client, pick(parsed, "Error", "Code"), status, pick(parsed, "Error", "Message"))


def observe_request(adapter: Any) -> Any:
    """Wraps `BaseClient._make_request` (inside the recorded call): the request body as sent, the
    retries, and a failure's status code and category."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = open_call_here()
        mine = call is not None and call.client is instance
        if mine:
            body = pick(args[1] if len(args) > 1 else kwargs.get("request_dict"), "body")
            if isinstance(body, (bytes, str)) and call.raw_request is None:
                call.raw_request = body
        result = wrapped(*args, **kwargs)
        if mine:
            try:
                _note_response(call, instance, *result)
            except Exception as exc:  # noqa: BLE001
                internal_error("bedrock.response", exc)
        return result

    return wrapper


_classes: dict[str, type] = {}


def _events_class() -> type:
    """An `EventStream` proxy whose iteration names the category of a mid-stream exception."""
    cls = _classes.get("events")
    if cls is None:
        import wrapt

        class Events(wrapt.ObjectProxy):  # type: ignore[misc]
            def __init__(self, wrapped: Any, call: SDKCall) -> None:
                super().__init__(wrapped)
                self._self_call = call

            def __iter__(self) -> Any:
                try:
                    yield from self.__wrapped__
                except Exception as exc:
                    call = self._self_call
                    error = getattr(exc, "response", None)
                    if isinstance(error, dict) and call.error_category is None:
                        call.error_category = _category(call.client, pick(error, "Error", "Code"), None, pick(error, "Error", "Message"))
                    raise

        cls = _classes["events"] = Events
    return cls


def follow_stream(call: SDKCall, result: Any) -> Any:
    """`on_stream`: the result is botocore's dict; its EventStream is swapped for a recording proxy."""
    key = _STREAM_KEYS[call.endpoint]
    stream = result.get(key) if isinstance(result, dict) else None
    request_id = pick(result, "ResponseMetadata", "RequestId")
    if request_id is not None:
        call.fields["response_id"] = request_id
    if stream is None:
        call.finish()
        return result
    result[key] = proxy_stream(call, _events_class()(stream, call))
    return result


PATCHES = (
    method(_CLIENT, "BaseClient", "_make_api_call", "sync", on_stream=follow_stream),
    MethodPatch(_CLIENT, "BaseClient", "_make_request", observe_request),
)
