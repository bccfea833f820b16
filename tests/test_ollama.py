"""The real `ollama` SDK, through its own HTTP layer, against tokentrail.testing's fake provider (Ollama's wire format)."""

import asyncio
import gc
import json
import types
from importlib import metadata

import httpx
import ollama
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from conftest import only

MODEL = "llama3.2"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}}]
TIMINGS_MS = {"load_duration_ms": 20.0, "prompt_eval_duration_ms": 30.0, "eval_duration_ms": 200.0, "total_duration_ms": 250.0}


def test_chat_records_everything(fake, log):
    client = fake.client("ollama")
    reply = client.chat(model=MODEL, messages=MESSAGES, options={"temperature": 0.2, "num_ctx": 4096, "num_predict": 50},
                        format="json", keep_alive="5m")
    assert isinstance(reply, ollama.ChatResponse)  # the app's result is untouched
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("ollama", "chat", "ollama")
    assert (call.request_model, call.response_model, call.response_id) == (MODEL, MODEL, None)
    assert (call.input_tokens, call.output_tokens) == (reply.prompt_eval_count, reply.eval_count)
    assert call.total_tokens == reply.prompt_eval_count + reply.eval_count
    assert call.request_params == {"temperature": 0.2, "num_ctx": 4096, "num_predict": 50, "format": "json", "keep_alive": "5m"}
    assert call.finish_reasons == ["stop"] and call.message_count == 2 and call.tool_call_count == 0
    assert (call.cost_usd, call.input_cost_usd, call.output_cost_usd) == (0.0, 0.0, 0.0)  # runs locally
    assert call.metadata == {**TIMINGS_MS, "eval_tokens_per_s": 25.0, "server_address": "127.0.0.1", "server_port": 11434}
    assert call.sdk_version == metadata.version("ollama") and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None


def test_a_custom_price_applies_instead_of_free(fake, db_url):
    tokentrail.init(db_url, prices={MODEL: {"input": 1.0, "output": 2.0}})
    client = fake.client("ollama")
    with tokentrail.tracking() as log:
        client.chat(model=MODEL, messages=MESSAGES)
        for _ in client.chat(model=MODEL, messages=MESSAGES, stream=True):
            pass
        client.chat(model="qwen2.5", messages=MESSAGES)  # no custom price: free
        client.chat(model="deepseek-r1:8b", messages=MESSAGES)  # not DeepSeek's API price either
    *priced, qwen, deepseek = sorted(log.calls, key=lambda c: c.started_at)
    for call in priced:
        expected = tokentrail.cost("ollama", MODEL, input_tokens=call.input_tokens, output_tokens=call.output_tokens)
        assert expected.source == "custom" and call.cost_usd == pytest.approx(expected.total_usd) and call.cost_usd > 0
        assert call.cost_usd == pytest.approx(call.input_tokens * 1e-6 + call.output_tokens * 2e-6)
    assert qwen.cost_usd == deepseek.cost_usd == 0.0


def test_cached_prompt_tokens_and_a_missing_prompt_count():
    from tokentrail.instrument import ollama as adapter

    newer = adapter.final_fields({"prompt_eval_count": 100, "prompt_eval_cached_count": 60, "eval_count": 5})
    assert (newer["input_tokens"], newer["cache_read_tokens"], newer["output_tokens"]) == (100, 60, 5)
    older = adapter.final_fields({"eval_count": 5})  # a cached prompt on servers before mid-2024
    assert "input_tokens" not in older and older["output_tokens"] == 5


def test_tool_calls_counted_plain_and_streamed(fake, log):
    client = fake.client("ollama")
    reply = client.chat(model=MODEL, messages=MESSAGES, tools=TOOLS)
    parts = list(client.chat(model=MODEL, messages=MESSAGES, tools=TOOLS, stream=True))
    assert reply.message.tool_calls[0].function.name == "lookup" and any(p.message.tool_calls for p in parts)
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.tool_call_count == streamed.tool_call_count == 1
    assert plain.finish_reasons == streamed.finish_reasons == ["stop"]  # Ollama says stop, also for a tool call
    assert plain.output_tokens == streamed.output_tokens == 12


def test_generate_is_a_text_completion(fake, log):
    client = fake.client("ollama")
    reply = client.generate(model="qwen2.5", prompt="Say hi", system="be brief", options={"seed": 7})
    call = only(log)
    assert (call.operation, call.request_model, call.message_count) == ("text_completion", "qwen2.5", 2)
    assert (call.input_tokens, call.output_tokens) == (reply.prompt_eval_count, reply.eval_count)
    assert call.request_params == {"seed": 7} and call.finish_reasons == ["stop"] and call.cost_usd == 0.0


def test_stream_is_lazy_keeps_the_generator_type_and_records_timing(fake, log):
    fake.settings.frame_delay = 0.002
    client = fake.client("ollama")
    stream = client.chat(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(stream, types.GeneratorType) and fake.requests == []  # the request starts on the first next()
    parts = list(stream)
    assert "".join(p.message.content for p in parts) == fake.settings.reply and parts[-1].done
    call = only(log)
    assert call.stream and call.chunk_count == len(parts) == 6 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 8  # 5 frame delays after the first chunk
    assert (call.input_tokens, call.output_tokens) == (parts[-1].prompt_eval_count, parts[-1].eval_count)
    assert call.finish_reasons == ["stop"] and call.response_model == MODEL and call.cost_usd == 0.0
    assert {k: call.metadata[k] for k in TIMINGS_MS} == TIMINGS_MS and call.metadata["chunks_per_s"] > 0
    assert "stream_incomplete" not in call.metadata


def test_generate_stream(fake, log):
    parts = list(fake.client("ollama").generate(model="qwen2.5", prompt="Say hi", stream=True))
    call = only(log)
    assert "".join(p.response for p in parts) == fake.settings.reply
    assert call.operation == "text_completion" and call.output_tokens == 5 and call.chunk_count == 6


def test_stream_left_early_closed_or_dropped_unread(fake, log):
    client = fake.client("ollama")
    stream = client.chat(model=MODEL, messages=MESSAGES, stream=True)
    for _ in stream:
        break
    stream.close()
    for _ in client.chat(model="qwen2.5", messages=MESSAGES, stream=True):
        break  # the loop's stream is dropped, never closed
    client.chat(model="mistral", messages=MESSAGES, stream=True)  # never iterated: no request at all
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    for model, read in ((MODEL, 1), ("qwen2.5", 1), ("mistral", 0)):
        assert calls[model].metadata["stream_incomplete"] is True and calls[model].chunk_count == read
        assert calls[model].cost_usd == 0.0
    for model in (MODEL, "qwen2.5"):  # a chunk of text was read: tokens estimated, and flagged so
        assert calls[model].metadata["tokens_estimated"] == "chars/4" and calls[model].output_tokens >= 1
    assert calls["mistral"].input_tokens is None  # never iterated: nothing was asked, nothing to estimate
    assert calls[MODEL].response_model == MODEL and len(fake.requests) == 2


def test_async_client_plain_and_streamed(fake, log):
    async def main():
        client = fake.client("ollama", asynchronous=True)
        await client.chat(model=MODEL, messages=MESSAGES)
        stream = await client.chat(model=MODEL, messages=MESSAGES, stream=True)
        assert isinstance(stream, types.AsyncGeneratorType)
        text = "".join([p.message.content async for p in stream])
        early = await client.generate(model="qwen2.5", prompt="hi", stream=True)
        async for _ in early:
            break
        await early.aclose()
        await client.embed(model="nomic-embed-text", input="hi")
        return text

    assert asyncio.run(main()) == "Hello from the fake provider."
    by_model = {(c.request_model, c.stream): c for c in log.calls}
    plain, streamed = by_model[(MODEL, False)], by_model[(MODEL, True)]
    assert plain.output_tokens == streamed.output_tokens == 5 and streamed.chunk_count == 6 and streamed.ttft_ms > 0
    assert by_model[("qwen2.5", True)].metadata["stream_incomplete"] is True
    assert by_model[("nomic-embed-text", False)].operation == "embeddings"


def test_embed_and_legacy_embeddings(fake, log):
    client = fake.client("ollama")
    reply = client.embed(model="nomic-embed-text", input=["a cat", "a dog"], truncate=True, dimensions=256)
    client.embeddings(model="nomic-embed-text", prompt="a cat")
    client.list()  # not an LLM call: not recorded
    embed, legacy = sorted(log.calls, key=lambda c: c.started_at)
    assert (embed.operation, embed.input_tokens, embed.output_tokens) == ("embeddings", reply.prompt_eval_count, None)
    assert embed.request_params == {"truncate": True, "dimensions": 256} and embed.cost_usd == 0.0
    assert embed.metadata == {"load_duration_ms": 1.0, "total_duration_ms": 14.0, "server_address": "127.0.0.1", "server_port": 11434}
    assert legacy.operation == "embeddings" and legacy.input_tokens is None and legacy.response_model is None
    assert legacy.cost_usd == 0.0 and legacy.error_type is None


@pytest.mark.parametrize("status, category", [(404, "not_found"), (400, "invalid_request"), (500, "server"), (429, "rate_limit")])
@pytest.mark.parametrize("stream", [False, True])
def test_response_errors_recorded_and_reraised_unchanged(fake, log, status, category, stream):
    fake.fail(status, message='model "nope" not found, try pulling it first')
    client = fake.client("ollama")
    with pytest.raises(ollama.ResponseError) as raised:
        result = client.chat(model="nope", messages=MESSAGES, stream=stream)
        list(result) if stream else None  # a stream raises on its first next()
    call = only(log)
    assert raised.value.status_code == status and raised.value.error == 'model "nope" not found, try pulling it first'
    assert (call.error_type, call.error_category, call.status_code) == ("ResponseError", category, status)
    assert "not found" in call.error_message and call.cost_usd == 0.0 and call.stream is stream


def test_async_error(fake, log):
    fake.fail(503)

    async def main():
        await fake.client("ollama", asynchronous=True).generate(model=MODEL, prompt="hi")

    with pytest.raises(ollama.ResponseError):
        asyncio.run(main())
    call = only(log)
    assert call.status_code == 503 and call.error_category == "server" and call.operation == "text_completion"


def test_error_object_inside_a_stream(log):
    def handler(request):
        lines = (b'{"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "Hi"}, "done": false}\n'
                 b'{"error": "an error was encountered while running the model: out of memory"}\n')
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=lines)

    client = ollama.Client(host="http://127.0.0.1:11434", transport=httpx.MockTransport(handler))
    with pytest.raises(ollama.ResponseError, match="out of memory") as raised:
        for _ in client.chat(model=MODEL, messages=MESSAGES, stream=True):
            pass
    call = only(log)
    assert raised.value.status_code == -1 and call.status_code is None
    assert call.error_type == "ResponseError" and call.chunk_count == 1 and call.response_model == MODEL


def test_no_server_running_is_a_connection_error(log):
    client = ollama.Client(host="http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(ConnectionError):
        client.chat(model=MODEL, messages=MESSAGES)
    with pytest.raises(httpx.ConnectError):  # the SDK does not translate it on the stream path
        list(client.chat(model=MODEL, messages=MESSAGES, stream=True))
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.error_type == "ConnectionError" and plain.error_category == streamed.error_category == "connection"


def test_attribution(fake, log):
    client = fake.client("ollama")
    with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["local"], machine="gpu-1"):
        for _ in client.chat(model=MODEL, messages=MESSAGES, stream=True):
            pass
    call = only(log)
    assert (call.user_id, call.customer_id, call.feature, call.tags) == ("u1", "acme", "search", ["local"])
    assert call.metadata["machine"] == "gpu-1" and call.metadata["eval_duration_ms"] == 200.0


def test_content_not_kept_by_default(fake, log):
    fake.client("ollama").chat(model=MODEL, messages=MESSAGES)
    call = only(log)
    assert "capital of France" not in repr(tokentrail.record.to_dict(call))
    assert call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True)
    client = fake.client("ollama")
    with tokentrail.tracking() as log:
        client.chat(model=MODEL, messages=MESSAGES)
        for _ in client.chat(model=MODEL, messages=MESSAGES, stream=True):
            pass
        client.generate(model=MODEL, prompt="Say hi", system="be brief")
    chat, streamed, generated = sorted(log.calls, key=lambda c: c.started_at)
    for call in (chat, streamed):
        assert call.input_messages == MESSAGES and call.output_text == fake.settings.reply
    assert generated.input_messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hi"}]
    assert generated.output_text == fake.settings.reply


def test_uninstrument_restores_the_sdk(fake, log):
    assert "ollama" in tokentrail.instrumented()
    tokentrail.uninstrument("ollama")
    stream = fake.client("ollama").chat(model=MODEL, messages=MESSAGES, stream=True)
    assert type(stream) is types.GeneratorType  # no proxy
    list(stream)
    assert log.calls == []


# -- fuzz: whatever the server sends, the app sees the same thing, and one record is made ----------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
objects = st.fixed_dictionaries({}, optional={
    "model": json_values, "done": json_values | st.just(True), "done_reason": json_values, "response": json_values,
    "message": json_values | st.fixed_dictionaries({"role": st.just("assistant")}, optional={
        "content": json_values, "tool_calls": json_values}),
    "prompt_eval_count": json_values, "eval_count": json_values, "eval_duration": json_values,
    "load_duration": json_values, "total_duration": json_values, "error": json_values,
})


@st.composite
def replies(draw):
    """(status, bytes): one JSON object, or NDJSON lines — torn at any byte or not."""
    if draw(st.booleans()):
        data = json.dumps(draw(objects)).encode()
    else:
        data = b"".join(json.dumps(o).encode() + b"\n" for o in draw(st.lists(objects, max_size=4)))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from([200, 200, 200, 400, 404, 500])), data


def outcome(client, endpoint, stream):
    try:
        if endpoint == "chat":
            result = client.chat(model=MODEL, messages=MESSAGES, stream=stream)
        else:
            result = client.generate(model=MODEL, prompt="hi", stream=stream)
        return "ok", [repr(part) for part in result] if stream else repr(result)
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__, str(exc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), endpoint=st.sampled_from(["chat", "generate"]), stream=st.booleans())
def test_fuzz_the_app_sees_the_same_results_and_one_record(reply, endpoint, stream):
    status, data = reply
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers={"content-type": "application/json"}, content=data))
    client = ollama.Client(host="http://127.0.0.1:11434", transport=transport)
    tokentrail.uninstrument()
    bare = outcome(client, endpoint, stream)
    tokentrail.instrument("ollama")
    with tokentrail.tracking() as log:
        tracked = outcome(client, endpoint, stream)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == MODEL and call.provider == "ollama" and call.stream is stream
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    assert (call.error_type is not None) == (bare[0] == "raised")
