"""The fake provider speaking Amazon Bedrock's runtime API, for boto3 / botocore clients.

boto3 has no pluggable HTTP transport, so the fake answers from botocore's
`before-send` event, before any connection is opened:

    client = FakeProvider().client("bedrock")          # a real boto3 bedrock-runtime client, answered by the fake
    stub(existing_client, fake)                        # the same for a client you made

Routes (`/model/{modelId}/…`, as botocore sends them; also served over real
HTTP by `fake.serve()` to a client whose user agent is botocore's):
- `converse`, `converse-stream`: Converse JSON, or an AWS event stream
  (`messageStart`, a `contentBlockDelta` per word, `messageStop`, `metadata`
  with `usage` and `metrics`). Cache reads and writes from the settings are
  reported apart from `inputTokens`, as Bedrock does. A request with a
  `toolConfig` gets a `toolUse` of the first tool.
- `invoke`, `invoke-with-response-stream`: the model family's own body, by the
  model id: Anthropic (the Messages shape), Meta Llama, Amazon Titan text and
  embeddings, Amazon Nova, Mistral, Cohere Command and Embed. Every answer has
  the `x-amzn-bedrock-input-token-count` / `-output-token-count` headers, and a
  stream's last chunk `amazon-bedrock-invocationMetrics`. Stream chunks are
  `chunk` events whose `bytes` hold the family's JSON.
- `count-tokens`: `{"inputTokens": n}`.
Errors are Bedrock's: `{"message": …}` with the `x-amzn-errortype` header
(`ThrottlingException` for 429, `ValidationException` for 400, …).

`event_stream_frames(events)` encodes AWS event-stream messages (prelude with
lengths and CRC32, headers, payload, message CRC32), for tests that send their
own stream; an event type ending in `Exception` becomes an exception frame.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from .._wire import (Failure, Reply, Settings, add_route, anthropic_messages, count_tokens, json_reply, next_id,
                     split_words, stream_reply)

ACTIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream", "count-tokens")
EVENT_STREAM = "application/vnd.amazon.eventstream"
ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
          408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
          500: "InternalServerException", 503: "ServiceUnavailableException"}
VECTOR = [0.1, 0.2, 0.3, 0.4]
LATENCY_MS = 42


# -- the AWS event-stream encoding -------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: total and headers lengths, prelude CRC32, headers (strings), payload, message CRC32."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_stream_frames(events: list[tuple[str, Any]]) -> list[bytes]:
    """Frames for `(event type, payload)` pairs (a payload that is not bytes is sent as JSON);
    `("throttlingException", {"message": …})` and other `…Exception` types become exception frames."""
    frames = []
    for kind, payload in events:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if kind.endswith("Exception"):
            headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
        else:
            headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        frames.append(event_frame(headers, data))
    return frames


def chunk_events(chunks: list[dict[str, Any]], metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """InvokeModelWithResponseStream events: each chunk's JSON base64-encoded in `bytes`; the last carries the metrics."""
    chunks = [*chunks[:-1], {**chunks[-1], "amazon-bedrock-invocationMetrics": metrics}] if chunks else chunks
    return [("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()}) for c in chunks]


# -- answers -----------------------------------------------------------------------------------------------


def error(failure: Failure) -> Reply:
    kind = ERRORS.get(failure.status, "InternalServerException" if failure.status >= 500 else "ValidationException")
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-requestid": next_id("bedrock-req-")}
    if failure.retry_after is not None:
        headers["retry-after"] = str(failure.retry_after)
    return json_reply(failure.status, {"message": failure.message}, headers)


def _tool(data: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    tools = pick_list(data.get("toolConfig"), "tools")
    if not (settings.tool_call and tools):
        return None
    return {"toolUseId": next_id("tooluse_"), "name": (tools[0].get("toolSpec") or {}).get("name") or "tool", "input": {"query": "fake"}}


def pick_list(holder: Any, key: str) -> list[Any]:
    value = holder.get(key) if isinstance(holder, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def converse(data: dict[str, Any], settings: Settings, stream: bool) -> Reply:
    words = split_words(settings.reply)
    tool = _tool(data, settings)
    inp = count_tokens({"messages": data.get("messages"), "system": data.get("system"), "tools": data.get("toolConfig")})
    out = len(words) + (8 if tool else 0)
    read, write = settings.cache_read_tokens, settings.cache_write_tokens
    usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + read + write}
    if read or write:
        usage.update(cacheReadInputTokens=read, cacheWriteInputTokens=write)
    stop = "tool_use" if tool else "end_turn"
    headers = {"x-amzn-requestid": next_id("bedrock-req-")}
    if not stream:
        content: list[dict[str, Any]] = [{"text": settings.reply}] + ([{"toolUse": tool}] if tool else [])
        return json_reply(200, {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                                "usage": usage, "metrics": {"latencyMs": LATENCY_MS}}, headers)
    events: list[tuple[str, Any]] = [("messageStart", {"role": "assistant"})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}}) for w in words]
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    if tool:
        events += [("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}}),
                   ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": json.dumps(tool["input"])}}}),
                   ("contentBlockStop", {"contentBlockIndex": 1})]
    events += [("messageStop", {"stopReason": stop}), ("metadata", {"usage": usage, "metrics": {"latencyMs": LATENCY_MS}})]
    return stream_reply(event_stream_frames(events), settings, {**headers, "content-type": EVENT_STREAM})


def _anthropic(data: dict[str, Any], settings: Settings, model: str, stream: bool) -> tuple[Any, int, int]:
    """The Anthropic family: the Messages body (or its stream events) from the fake's Anthropic answer."""
    reply = anthropic_messages({**data, "stream": stream}, settings, model=model)
    if not stream:
        body = json.loads(reply.body)
        return body, body["usage"]["input_tokens"], body["usage"]["output_tokens"]
    events = [json.loads(frame.decode().split("data: ", 1)[1]) for frame in reply.frames or ()]
    events = [e for e in events if e.get("type") != "ping"]
    usage = events[0]["message"]["usage"]
    return events, usage["input_tokens"], events[-2]["usage"]["output_tokens"]


def _family(model: str, data: dict[str, Any], settings: Settings, stream: bool) -> tuple[Any, int, int]:
    """(body, or the stream's chunks; input tokens; output tokens) in the model family's own shape."""
    name = model.lower()
    if "anthropic." in name:
        return _anthropic(data, settings, model, stream)
    words = split_words(settings.reply)
    inp = count_tokens({"input": data})
    out = len(words)
    last = len(words) - 1
    if "embed" in name:
        if "cohere." in name:
            texts = data.get("texts") or []
            return {"embeddings": [VECTOR for _ in texts], "id": next_id("emb-"), "response_type": "embeddings_floats", "texts": texts}, inp, 0
        return {"embedding": VECTOR, "inputTextTokenCount": inp}, inp, 0
    if "meta." in name:
        if stream:
            return [{"generation": w, "prompt_token_count": inp if i == 0 else None, "generation_token_count": i + 1,
                     "stop_reason": "stop" if i == last else None} for i, w in enumerate(words)], inp, out
        return {"generation": settings.reply, "prompt_token_count": inp, "generation_token_count": out, "stop_reason": "stop"}, inp, out
    if "titan" in name:
        if stream:
            return [{"outputText": w, "index": 0, "totalOutputTextTokenCount": i + 1, "completionReason": "FINISH" if i == last else None,
                     **({"inputTextTokenCount": inp} if i == 0 else {})} for i, w in enumerate(words)], inp, out
        return {"inputTextTokenCount": inp, "results": [{"tokenCount": out, "outputText": settings.reply, "completionReason": "FINISH"}]}, inp, out
    if "nova" in name:
        read, write = settings.cache_read_tokens, settings.cache_write_tokens
        usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + read + write,
                 "cacheReadInputTokenCount": read, "cacheWriteInputTokenCount": write}
        if stream:
            return [{"messageStart": {"role": "assistant"}}, *({"contentBlockDelta": {"delta": {"text": w}, "contentBlockIndex": 0}} for w in words),
                    {"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}},
                    {"metadata": {"usage": usage}}], inp, out
        return {"output": {"message": {"role": "assistant", "content": [{"text": settings.reply}]}}, "stopReason": "end_turn", "usage": usage}, inp, out
    if "cohere." in name:
        if stream:
            return [{"event_type": "text-generation", "text": w, "is_finished": False} for w in words] + [
                {"event_type": "stream-end", "finish_reason": "COMPLETE", "is_finished": True}], inp, out
        return {"text": settings.reply, "finish_reason": "COMPLETE", "generation_id": next_id("gen-"), "response_id": next_id("resp-")}, inp, out
    # Mistral, and any other family: Mistral's shape (no usage in the body; the headers have it)
    if stream:
        return [{"outputs": [{"text": w, "stop_reason": "stop" if i == last else None}]} for i, w in enumerate(words)], inp, out
    return {"outputs": [{"text": settings.reply, "stop_reason": "stop"}]}, inp, out


def invoke(data: dict[str, Any], settings: Settings, model: str, stream: bool) -> Reply:
    body, inp, out = _family(model, data, settings, stream)
    headers = {"x-amzn-requestid": next_id("bedrock-req-"), "x-amzn-bedrock-input-token-count": str(inp),
               "x-amzn-bedrock-output-token-count": str(out), "x-amzn-bedrock-invocation-latency": str(LATENCY_MS)}
    if not stream:
        return json_reply(200, body, headers)
    metrics = {"inputTokenCount": inp, "outputTokenCount": out, "invocationLatency": LATENCY_MS, "firstByteLatency": 12}
    return stream_reply(event_stream_frames(chunk_events(body, metrics)), settings, {**headers, "content-type": EVENT_STREAM})


def handle(data: dict[str, Any], settings: Settings, path: str, headers: dict[str, str]) -> Reply:
    model, _, action = path[len("/model/"):].rpartition("/")
    model = unquote(model)
    if action in ("converse", "converse-stream"):
        return converse(data, settings, stream=action == "converse-stream")
    if action in ("invoke", "invoke-with-response-stream"):
        return invoke(data, settings, model, stream=action == "invoke-with-response-stream")
    converse_input = (data.get("input") or {}).get("converse") or {}
    return json_reply(200, {"inputTokens": count_tokens({"messages": converse_input.get("messages"), "system": converse_input.get("system")})},
                      {"x-amzn-requestid": next_id("bedrock-req-")})


def _from_botocore(method: str, path: str, headers: dict[str, str]) -> bool:
    """Bedrock runtime requests of botocore (anthropic's own Bedrock client, also on /model/, is left to the default route)."""
    return path.startswith("/model/") and path.rpartition("/")[2] in ACTIONS and "botocore" in str(headers.get("user-agent", "")).lower()


add_route(_from_botocore, handle, error)


# -- answering botocore without a network ----------------------------------------------------------


def aws_response(url: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    """The response botocore's `before-send` handlers return instead of sending the request."""
    import urllib3
    from botocore.awsrequest import AWSResponse

    return AWSResponse(url, status, headers, urllib3.HTTPResponse(body=io.BytesIO(body), status=status, headers=headers,
                                                                  preload_content=False))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stub(client: Any, fake: Any = None) -> Any:
    """Make the fake answer every request of a boto3 `bedrock-runtime` client (no connection is ever
    opened); returns the fake (a new `FakeProvider` when none is given)."""
    if fake is None:
        from .. import FakeProvider

        fake = FakeProvider()

    def answer(request: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ReadTimeoutError

        body = request.body
        body = body.read() if hasattr(body, "read") else body
        body = body.encode() if isinstance(body, str) else body or b""
        parts = urlsplit(request.url)
        reply = fake.reply(request.method, parts.path, {k: _text(v) for k, v in request.headers.items()}, body)
        if reply.timeout:
            raise ReadTimeoutError(endpoint_url=request.url, error="fake provider: no answer")
        time.sleep(reply.latency)
        payload = reply.body if reply.frames is None else b"".join(reply.frames)
        return aws_response(request.url, reply.status, {**reply.headers, "content-length": str(len(payload))}, payload)

    client.meta.events.register(f"before-send.{client.meta.service_model.service_id.hyphenize()}.*", answer)
    return fake


def client(fake: Any, asynchronous: bool = False, **kwargs: Any) -> Any:
    """A real boto3 `bedrock-runtime` client answered by the fake: region `us-east-1`, dummy credentials,
    no retries unless `config` says otherwise; extra arguments go to `boto3.client`."""
    if asynchronous:
        raise ValueError("boto3 has no asynchronous client")
    import boto3
    from botocore.config import Config

    kwargs.setdefault("region_name", "us-east-1")
    kwargs.setdefault("aws_access_key_id", "AKIDEXAMPLE")
    kwargs.setdefault("aws_secret_access_key", "fake-secret")
    kwargs.setdefault("config", Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    made = boto3.client("bedrock-runtime", **kwargs)
    stub(made, fake)
    return made
