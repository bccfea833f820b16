"""The real `cohere` SDK (v2 and v1 clients), through its own HTTP layer, against tokentrail.testing's fake provider (Cohere's wire format)."""

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
from importlib import metadata

import cohere
import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from conftest import only

MODEL = "command-a-03-2025"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}}]
REPLY = "Hello from the fake provider."


def by_time(log):
    return sorted(log.calls, key=lambda c: c.started_at)


def priced(call, provider="cohere", model=None, **extra):
    return tokentrail.cost(provider, model or call.request_model, input_tokens=call.input_tokens,
                           output_tokens=call.output_tokens, **extra).total_usd


def test_v2_chat_records_the_billed_tokens(fake, log):
    client = fake.client("cohere")
    reply = client.chat(model=MODEL, messages=MESSAGES, temperature=0.3, max_tokens=50, seed=7)
    assert reply.message.content[0].text == REPLY  # the app's result is untouched
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("cohere", "chat", "cohere")
    assert (call.request_model, call.response_model, call.response_id) == (MODEL, None, reply.id)
    billed = reply.usage.billed_units
    assert (call.input_tokens, call.output_tokens) == (int(billed.input_tokens), int(billed.output_tokens)) == (12, 5)
    assert reply.usage.tokens.input_tokens > call.input_tokens  # the raw count (prompt template) is not what Cohere bills
    assert call.request_params == {"temperature": 0.3, "max_tokens": 50, "seed": 7}
    assert call.finish_reasons == ["COMPLETE"] and call.message_count == 2 and call.tool_call_count == 0
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.sdk_version == metadata.version("cohere") and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None and call.cache_read_tokens is None


def test_cached_tokens_are_a_part_of_the_billed_input(fake, log):
    client = fake.client("cohere")
    fake.settings.cache_read_tokens = 4
    client.chat(model=MODEL, messages=MESSAGES)
    fake.settings.cache_read_tokens = 500  # counted over the whole prompt: more than the billed input
    client.chat(model=MODEL, messages=MESSAGES)
    few, many = by_time(log)
    assert (few.cache_read_tokens, few.input_tokens) == (4, 12)
    assert (many.cache_read_tokens, many.input_tokens) == (12, 12) and many.cost_usd is not None


def test_tool_calls_plain_and_streamed(fake, log):
    client = fake.client("cohere")
    client.chat(model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice="REQUIRED")
    for _ in client.chat_stream(model=MODEL, messages=MESSAGES, tools=TOOLS):
        pass
    plain, streamed = by_time(log)
    for call in (plain, streamed):
        assert call.tool_call_count == 1 and call.finish_reasons == ["TOOL_CALL"] and call.output_tokens == 14
    assert plain.request_params == {"tool_choice": "REQUIRED"}


def test_v2_stream_records_timing_and_the_usage_of_message_end(fake, log):
    fake.settings.frame_delay = 0.002
    events = list(fake.client("cohere").chat_stream(model=MODEL, messages=MESSAGES, thinking={"type": "enabled", "token_budget": 100}))
    assert "".join(e.delta.message.content.text for e in events if e.type == "content-delta") == REPLY
    call = only(log)
    assert call.stream and call.chunk_count == len(events) == 9 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 10  # eight frame delays after the first event
    usage = events[-1].delta.usage.billed_units
    assert (call.input_tokens, call.output_tokens) == (int(usage.input_tokens), int(usage.output_tokens))
    assert call.response_id == events[0].id and call.finish_reasons == ["COMPLETE"] and call.cost_usd > 0
    assert call.request_params == {"thinking": "enabled", "thinking_token_budget": 100}
    assert "stream_incomplete" not in call.metadata and "tokens_estimated" not in call.metadata


def test_stream_left_early_or_dropped(fake, log):
    client = fake.client("cohere")
    stream = client.chat_stream(model=MODEL, messages=MESSAGES)
    kinds = [next(stream).type for _ in range(3)]
    stream.close()
    for _ in client.chat_stream(model="command-r-08-2024", messages=MESSAGES):
        break
    client.chat_stream(model="command-r7b-12-2024", messages=MESSAGES)  # a generator never started: no request at all
    gc.collect()
    first, second = by_time(log)
    assert kinds == ["message-start", "content-start", "content-delta"] and (first.chunk_count, second.chunk_count) == (3, 1)
    for call in (first, second):
        assert call.metadata["stream_incomplete"] is True and call.error_type is None and call.response_id.startswith("chat-")
    assert first.metadata["tokens_estimated"] and first.output_tokens > 0  # text read, no usage arrived: estimated, and said so
    assert "tokens_estimated" not in second.metadata and second.output_tokens is None  # left before any text
    assert fake.requests.count(("POST", "/v2/chat")) == 2


def test_v1_chat_plain_and_streamed(fake, log):
    client = fake.client("cohere", version=1)
    history = [{"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello!"}]
    reply = client.chat(model="command-r-plus", message="What is the capital of France?", preamble="be brief",
                        chat_history=history, temperature=0.1, prompt_truncation="AUTO")
    events = list(client.chat_stream(model="command-r-plus", message="What is the capital of France?"))
    plain, streamed = by_time(log)
    assert plain.message_count == 4 and plain.request_params == {"temperature": 0.1, "prompt_truncation": "AUTO"}
    assert (plain.input_tokens, plain.output_tokens) == (int(reply.meta.billed_units.input_tokens), 5)
    assert plain.response_id == reply.response_id and plain.finish_reasons == ["COMPLETE"]
    assert streamed.stream and streamed.chunk_count == len(events) == 7 and streamed.output_tokens == 5
    assert streamed.response_id == events[-1].response.response_id and streamed.finish_reasons == ["COMPLETE"]
    for call in (plain, streamed):
        assert call.operation == "chat" and priced(call) > 0 and call.cost_usd == pytest.approx(priced(call))


def test_v1_generate_is_a_text_completion(fake, log):
    client = fake.client("cohere", version=1)
    reply = client.generate(model="command", prompt="Write a haiku", max_tokens=30, temperature=0.5)
    text = "".join(e.text for e in client.generate_stream(model="command", prompt="Write a haiku") if e.event_type == "text-generation")
    assert text == reply.generations[0].text == REPLY
    plain, streamed = by_time(log)
    assert plain.operation == streamed.operation == "text_completion"
    assert plain.output_tokens == 5 and plain.request_params == {"max_tokens": 30, "temperature": 0.5}
    assert streamed.stream and streamed.finish_reasons == ["COMPLETE"] and streamed.chunk_count == 6
    assert streamed.metadata["tokens_estimated"]  # a generate stream reports no counts


def test_embed_and_rerank(fake, log):
    client = fake.client("cohere")
    client.embed(model="embed-v4.0", texts=["a", "b"], input_type="search_document", embedding_types=["float"])
    client.rerank(model="rerank-v3.5", query="capital of France", documents=["Paris", "Lyon", "Nice"], top_n=2)
    v1 = fake.client("cohere", version=1)
    v1.embed(model="embed-english-v3.0", texts=["a"], input_type="search_query", batching=False)
    embed, rerank, embed_v1 = by_time(log)
    assert (embed.operation, embed.input_tokens, embed.output_tokens) == ("embeddings", 1, 0)
    assert priced(embed) > 0 and embed.cost_usd == pytest.approx(priced(embed))
    assert embed.request_params == {"input_type": "search_document", "embedding_types": ["float"]}
    assert (embed_v1.operation, embed_v1.input_tokens) == ("embeddings", 1)
    assert rerank.operation == "rerank" and rerank.input_tokens is None and rerank.cost_usd is None  # search units are not tokens
    assert rerank.metadata == {"search_units": 1, "documents": 3, "results": 2, "server_address": "api.cohere.com", "server_port": 443} and rerank.request_params == {"top_n": 2}


def test_v1_embed_batches_from_the_sdks_thread_pool_keep_the_callers_context(fake, log):
    """`cohere.Client.embed` sends batches of 96 texts from its own thread pool: each batch is recorded
    with the caller's labels, inside the caller's `tracking()` block."""
    client = fake.client("cohere", version=1)
    with tokentrail.attributes(user_id="u1", feature="search"):
        reply = client.embed(model="embed-english-v3.0", texts=["a"] * 100, input_type="search_query")
    assert len(reply.embeddings) == 100 and fake.requests.count(("POST", "/v1/embed")) == 2
    calls = log.calls
    assert len(calls) == 2 and {c.operation for c in calls} == {"embeddings"}
    assert {(c.user_id, c.feature) for c in calls} == {("u1", "search")}
    tokentrail.uninstrument("cohere")
    assert client.embed(model="embed-english-v3.0", texts=["a"] * 100, input_type="search_query").texts == ["a"] * 100
    assert len(log.calls) == 2


def test_async_client_plain_streamed_and_left_early(fake, log):
    async def main():
        client = fake.client("cohere", asynchronous=True)
        await client.chat(model=MODEL, messages=MESSAGES)
        text = "".join([e.delta.message.content.text async for e in client.chat_stream(model=MODEL, messages=MESSAGES)
                        if e.type == "content-delta"])
        early = client.chat_stream(model="command-r-08-2024", messages=MESSAGES)
        await early.__anext__()
        await early.aclose()
        return text

    assert asyncio.run(main()) == REPLY
    plain, streamed, early = by_time(log)
    assert plain.output_tokens == streamed.output_tokens == 5 and not plain.stream
    assert streamed.stream and streamed.chunk_count == 9 and streamed.ttft_ms > 0 and "stream_incomplete" not in streamed.metadata
    assert early.metadata["stream_incomplete"] is True and early.chunk_count == 1


@pytest.mark.parametrize(
    "status, exc_type, category",
    [(429, cohere.TooManyRequestsError, "rate_limit"), (500, cohere.InternalServerError, "server"),
     (401, cohere.UnauthorizedError, "authentication"), (400, cohere.BadRequestError, "invalid_request"),
     (404, cohere.NotFoundError, "not_found"), (498, cohere.InvalidTokenError, "authentication"),
     (502, cohere.core.api_error.ApiError, "server")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_errors_recorded_with_the_class_the_sdk_raises(fake, log, status, exc_type, category, stream):
    fake.fail(status, message="fake trouble")
    client = fake.client("cohere")
    with pytest.raises(exc_type) as raised:
        if stream:
            list(client.chat_stream(model=MODEL, messages=MESSAGES))
        else:
            client.chat(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == status and type(raised.value) is exc_type
    call = only(log)
    assert (call.error_type, call.status_code, call.error_message) == (exc_type.__name__, status, "fake trouble")
    assert call.error_category == category
    assert call.request_model == MODEL and call.provider == "cohere" and call.cost_usd == 0.0 and not call.stream


def test_async_status_error(fake, log):
    fake.fail(503)

    async def main():
        with pytest.raises(cohere.ServiceUnavailableError):
            await fake.client("cohere", asynchronous=True).embed(model="embed-v4.0", texts=["a"], input_type="search_query")

    asyncio.run(main())
    call = only(log)
    assert (call.operation, call.error_type, call.error_category, call.status_code) == ("embeddings", "ServiceUnavailableError", "server", 503)


def test_a_stream_error_event_is_recorded(log):
    def handler(request):
        frames = [b'event: message-start\ndata: {"id": "c1", "type": "message-start", "delta": {"message": {"role": "assistant"}}}\n\n',
                  b'event: message-end\ndata: {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "model overloaded"}}\n\n']
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(frames))

    client = cohere.ClientV2(api_key="k", httpx_client=httpx.Client(transport=httpx.MockTransport(handler)), max_retries=0)
    events = list(client.chat_stream(model=MODEL, messages=MESSAGES))
    assert events[-1].delta.error == "model overloaded"  # yielded, not raised
    call = only(log)
    assert (call.error_type, call.error_message, call.finish_reasons) == ("StreamError", "model overloaded", ["ERROR"])
    assert call.response_id == "c1" and call.chunk_count == 2


def test_a_connection_lost_mid_stream_is_recorded_with_what_arrived(log):
    def handler(request):
        def frames():
            yield b'event: message-start\ndata: {"id": "c1", "type": "message-start"}\n\n'
            yield b'event: content-delta\ndata: {"type": "content-delta", "delta": {"message": {"content": {"text": "Hel"}}}}\n\n'
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frames())

    client = cohere.ClientV2(api_key="k", httpx_client=httpx.Client(transport=httpx.MockTransport(handler)), max_retries=0)
    seen = []
    with pytest.raises(httpx.ReadError):
        for event in client.chat_stream(model=MODEL, messages=MESSAGES):
            seen.append(event.type)
    assert seen == ["message-start", "content-delta"]
    call = only(log)
    assert (call.error_type, call.error_category, call.response_id, call.chunk_count) == ("ReadError", "connection", "c1", 2)


def test_a_stream_read_by_lines_or_by_bytes_decodes_alike():
    """cohere 5.9-5.20 read v2's SSE with `iter_lines` (httpx-sse), later releases with `iter_bytes`; v1 is NDJSON."""
    from tokentrail.instrument.cohere import Wire, wire_events

    sse = (b'event: message-start\ndata: {"id": "c1", "type": "message-start"}\n\n'
           b'event: content-delta\r\ndata: {"type": "content-delta"}\r\n\r\nevent: message-end\ndata: {"type": "mess')
    by_bytes, by_lines = Wire(), Wire()
    by_bytes.pieces = dict(enumerate([sse[:30], sse[30:]]))
    by_lines.pieces, by_lines.lines = dict(enumerate(sse.decode().replace("\r\n", "\n").split("\n"))), True
    expected = [{"id": "c1", "type": "message-start"}, {"type": "content-delta"}]  # the torn last event is left out
    assert wire_events(by_bytes.text()) == wire_events(by_lines.text()) == expected
    assert wire_events('{"event_type": "stream-start"}\n\n{"event_type": "stream-end"}\n{"torn') == [
        {"event_type": "stream-start"}, {"event_type": "stream-end"}]


def test_timeout_and_connection_errors(fake, log):
    fake.fail(timeout=True)
    with pytest.raises(httpx.ReadTimeout):
        fake.client("cohere").chat(model=MODEL, messages=MESSAGES)
    broken = cohere.ClientV2(api_key="k", base_url="http://127.0.0.1:9", max_retries=0)  # nothing listens on port 9
    with pytest.raises(httpx.ConnectError):
        broken.chat(model="command-r-plus", messages=MESSAGES)
    with pytest.raises(httpx.ConnectError):
        list(broken.chat_stream(model="command-r7b-12-2024", messages=MESSAGES))
    timed_out, refused, refused_stream = by_time(log)
    assert (timed_out.error_category, timed_out.request_model) == ("timeout", MODEL)
    assert (refused.error_category, refused.request_model) == ("connection", "command-r-plus")
    assert (refused_stream.error_category, refused_stream.request_model) == ("connection", "command-r7b-12-2024")


def test_retries_are_nested_calls_counted_as_attempts(fake, log):
    fake.fail(429, retry_after=0, times=2)
    client = fake.client("cohere", max_retries=3)
    client.chat(model=MODEL, messages=MESSAGES)
    fake.fail(503, retry_after=0, times=3)
    with pytest.raises(cohere.ServiceUnavailableError):
        fake.client("cohere", max_retries=2).embed(model="embed-v4.0", texts=["a"], input_type="search_query")
    fake.fail(500, retry_after=0)

    async def main():
        await fake.client("cohere", asynchronous=True, max_retries=1).chat(model=MODEL, messages=MESSAGES)

    asyncio.run(main())
    ok, failed, asynchronous = by_time(log)
    assert (ok.attempt, ok.error_type, ok.output_tokens) == (3, None, 5)
    assert (failed.attempt, failed.error_type, failed.status_code) == (3, "ServiceUnavailableError", 503)
    assert (asynchronous.attempt, asynchronous.output_tokens) == (2, 5)
    assert fake.requests.count(("POST", "/v2/chat")) == 5


def test_providers_of_the_cloud_clients():
    from tokentrail.instrument import cohere as adapter

    bedrock = cohere.BedrockClientV2(aws_region="us-east-1", aws_access_key="AKIAFAKEFAKEFAKE", aws_secret_key="fake")
    sagemaker = cohere.SagemakerClientV2(aws_region="us-east-1", aws_access_key="AKIAFAKEFAKEFAKE", aws_secret_key="fake")
    plain = cohere.ClientV2(api_key="k")
    assert [adapter.provider_of(c._client_wrapper.httpx_client) for c in (bedrock, sagemaker, plain)] == \
        ["aws.bedrock", "aws.sagemaker", "cohere"]


def test_attribution(fake, log):
    client = fake.client("cohere")
    with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["beta"]):
        client.chat(model=MODEL, messages=MESSAGES)
        for _ in client.chat_stream(model=MODEL, messages=MESSAGES):
            pass
    assert len(log.calls) == 2
    for call in log.calls:
        assert (call.user_id, call.customer_id, call.feature, call.tags) == ("u1", "acme", "search", ["beta"])


def test_content_and_keys_not_kept_by_default(fake, log):
    client = fake.client("cohere", api_key="co-secret-123")
    client.chat(model=MODEL, messages=MESSAGES, request_options={"additional_headers": {"Authorization": "Bearer sk-other-789"}})
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    for secret in ("co-secret-123", "sk-other-789", "capital of France", REPLY):
        assert secret not in text
    assert call.message_count == 2 and call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    client = fake.client("cohere")
    with tokentrail.tracking() as log:
        client.chat(model=MODEL, messages=MESSAGES)
        for _ in client.chat_stream(model=MODEL, messages=MESSAGES):
            pass
        fake.client("cohere", version=1).chat(model="command-r-plus", message="Hi there", preamble="be brief")
    plain, streamed, v1 = by_time(log)
    for call in (plain, streamed):
        assert call.input_messages == MESSAGES and call.output_text == "Hello from"
    assert v1.input_messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi there"}]


def test_manual_block_around_an_sdk_call_is_recorded_once(fake, log):
    client = fake.client("cohere")
    with tokentrail.track_llm_call("cohere", MODEL) as span:
        client.chat(model=MODEL, messages=MESSAGES)
        span.set_tokens(input=1, output=1)
    call = only(log)
    assert call.source == "manual" and call.total_tokens == 2


def test_uninstrument_restores_the_sdk(fake, log):
    from cohere.core import http_client

    client = fake.client("cohere")
    tokentrail.uninstrument("cohere")
    assert type(http_client.HttpClient.__dict__["request"]).__name__ == "function"
    assert type(http_client.__dict__["_retry_timeout"]).__name__ == "function"
    client.chat(model=MODEL, messages=MESSAGES)
    assert log.calls == []
    tokentrail.instrument("cohere")
    tokentrail.instrument("cohere")  # idempotent: one record per call
    client.chat(model=MODEL, messages=MESSAGES)
    assert len(log.calls) == 1


def test_patched_when_imported_after_instrument(tmp_path):
    """The SDK imported after `instrument()` (as with `import tokentrail.auto`): patched on import."""
    code = textwrap.dedent("""
        import sys, tokentrail
        tokentrail.instrument("cohere")
        assert "cohere" not in sys.modules
        from tokentrail.testing import FakeProvider
        fake = FakeProvider()
        with tokentrail.tracking() as log:
            fake.client("cohere").chat(model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}])
            for _ in fake.client("cohere", version=1).chat_stream(model="command-r-plus", message="hi"):
                pass
        print(sorted((c.operation, c.request_model, c.output_tokens, bool(c.stream)) for c in log.calls))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('chat', 'command-a-03-2025', 5, False), ('chat', 'command-r-plus', 5, True)]"

# -- fuzz: malformed and truncated answers -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
counts = json_values | st.floats(0, 1e6) | st.integers(0, 10**6)
usages = json_values | st.fixed_dictionaries({}, optional={
    "billed_units": json_values | st.fixed_dictionaries({}, optional={"input_tokens": counts, "output_tokens": counts}),
    "tokens": json_values, "cached_tokens": counts})
chats = st.fixed_dictionaries({}, optional={
    "id": json_values | st.just("chat-1"), "finish_reason": json_values | st.just("COMPLETE"),
    "message": json_values | st.fixed_dictionaries({"role": st.just("assistant")}, optional={
        "content": json_values | st.just([{"type": "text", "text": "hi"}]), "tool_calls": json_values}),
    "usage": usages})
events = st.fixed_dictionaries({"type": st.sampled_from(["message-start", "content-delta", "message-end", "tool-call-start"]) | json_values},
                               optional={"id": json_values, "index": json_values,
                                         "delta": json_values | st.fixed_dictionaries({}, optional={
                                             "message": json_values, "finish_reason": json_values, "usage": usages})})


@st.composite
def replies(draw):
    """(status, content-type, body): a JSON body, or an SSE stream of v2 events, maybe truncated."""
    status = draw(st.sampled_from([200, 200, 200, 200, 400, 429, 500]))
    if draw(st.booleans()):
        body = json.dumps(draw(chats)).encode()
        content_type = "application/json"
    else:
        frames = [b"event: x\ndata: " + (json.dumps(e).encode() if not isinstance(e, bytes) else e) + b"\n\n"
                  for e in draw(st.lists(events | st.binary(max_size=6), max_size=3))]
        body, content_type = b"".join(frames), "text/event-stream"
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    return status, content_type, body


def outcome(client, stream):
    try:
        if stream:
            return "ok", [repr(e) for e in client.chat_stream(model=MODEL, messages=MESSAGES)]
        return "ok", repr(client.chat(model=MODEL, messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__


_served: dict[str, tuple[int, str, bytes]] = {}


@pytest.fixture(scope="module")
def fuzzed():
    """One client for every example: it answers what `_served` holds."""
    def answer(request):
        status, content_type, body = _served["reply"]
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return cohere.ClientV2(api_key="k", httpx_client=httpx.Client(transport=httpx.MockTransport(answer)), max_retries=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_the_app_sees_the_same_results_and_one_record(fuzzed, reply, stream):
    _served["reply"] = reply
    status = reply[0]
    tokentrail.uninstrument()
    bare = outcome(fuzzed, stream)
    tokentrail.instrument("cohere")
    with tokentrail.tracking() as log:
        tracked = outcome(fuzzed, stream)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == MODEL and call.provider == "cohere"
    for count in (call.input_tokens, call.output_tokens, call.cache_read_tokens):
        assert count is None or (type(count) is int and count >= 0)
    if status >= 400:
        assert bare[0] == "raised" and call.status_code == status and call.error_type is not None
        if reply[1] == "application/json" and json_or_none(reply[2]) is not None:  # else the SDK may raise a decoding error
            assert call.error_type == bare[1]


def json_or_none(body):
    try:
        return json.loads(body)
    except ValueError:
        return None
