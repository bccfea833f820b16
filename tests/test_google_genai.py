"""The real `google-genai` SDK, through its own HTTP layer, against tokentrail.testing's fake provider (Gemini's wire format)."""

import asyncio
import gc
import json

import httpx2
import pytest
from google import genai
from google.genai import errors, types
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from conftest import only

MODEL = "gemini-2.5-flash"
QUESTION = "What is the capital of France?"
WEATHER_TOOL = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="weather", parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}))])


def priced(call, provider="gcp.gemini"):
    return tokentrail.cost(provider, call.response_model or call.request_model, input_tokens=call.input_tokens,
                           output_tokens=call.output_tokens, cache_read_tokens=call.cache_read_tokens or 0,
                           reasoning_tokens=call.reasoning_tokens or 0).total_usd


def test_generate_content_records_everything(fake, log):
    fake.settings.cache_read_tokens = 300
    client = fake.client("gemini")
    reply = client.models.generate_content(model=MODEL, contents=QUESTION, config=types.GenerateContentConfig(
        system_instruction="be brief", temperature=0.2, max_output_tokens=50, thinking_config=types.ThinkingConfig(thinking_budget=64)))
    assert isinstance(reply, types.GenerateContentResponse) and reply.text == fake.settings.reply
    usage = reply.usage_metadata
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("gcp.gemini", "generate_content", "google_genai")
    assert (call.request_model, call.response_model, call.response_id) == (MODEL, reply.model_version, reply.response_id)
    assert call.input_tokens == usage.prompt_token_count and call.cache_read_tokens == usage.cached_content_token_count == 300
    assert call.output_tokens == usage.candidates_token_count + usage.thoughts_token_count  # thoughts are billed as output
    assert call.reasoning_tokens == usage.thoughts_token_count == 8 and call.total_tokens == usage.total_token_count
    assert call.request_params == {"temperature": 0.2, "max_output_tokens": 50, "thinking_budget": 64}
    assert call.message_count == 2 and call.finish_reasons == ["STOP"] and call.tool_call_count == 0
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.sdk_version == genai.__version__ and call.attempt == 1 and not call.stream and call.error_type is None


def test_thinking_off_and_tool_use_prompt_tokens(log):
    body = {"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "toolUsePromptTokenCount": 30, "totalTokenCount": 42},
            "modelVersion": "gemini-2.0-flash", "responseId": "r1"}
    client = raw_client(200, "application/json", json.dumps(body).encode())
    client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    call = only(log)
    assert (call.input_tokens, call.output_tokens, call.reasoning_tokens) == (40, 2, None) and call.total_tokens == 42


def test_stream_keeps_the_sdk_iterator_and_records_the_last_chunks_counts(fake, log):
    fake.settings.frame_delay = 0.002
    client = fake.client("gemini")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=QUESTION))
    assert all(isinstance(c, types.GenerateContentResponse) for c in chunks)
    assert "".join(c.text for c in chunks) == fake.settings.reply
    final = chunks[-1].usage_metadata
    call = only(log)
    assert call.stream and call.chunk_count == len(chunks) == 5 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 8  # 4 frame delays after the first chunk
    assert (call.input_tokens, call.output_tokens) == (final.prompt_token_count, final.candidates_token_count + final.thoughts_token_count)
    assert call.finish_reasons == ["STOP"] and call.response_id == chunks[0].response_id
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert "stream_incomplete" not in call.metadata


def test_stream_closed_early_or_dropped_is_incomplete(fake, log):
    client = fake.client("gemini")
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    next(stream)
    stream.close()
    stream = client.models.generate_content_stream(model="gemini-2.0-flash", contents=QUESTION)
    next(stream)
    del stream
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    assert len(log.calls) == 2
    for call in calls.values():
        assert call.metadata["stream_incomplete"] is True and call.chunk_count == 1
    assert calls[MODEL].output_tokens == 9  # the counts so far: one word and the thoughts


def test_async_generate_and_stream(fake, log):
    async def main():
        client = fake.client("gemini", asynchronous=True)
        assert isinstance(client, genai.client.AsyncClient)
        reply = await client.models.generate_content(model="gemini-2.0-flash", contents=QUESTION)
        stream = await client.models.generate_content_stream(model="gemini-2.0-flash", contents=QUESTION)
        return reply.text, "".join([c.text async for c in stream])

    assert asyncio.run(main()) == (fake.settings.reply, fake.settings.reply)
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.output_tokens == streamed.output_tokens == 5 and streamed.chunk_count == 5 and streamed.ttft_ms > 0
    assert plain.cost_usd == pytest.approx(streamed.cost_usd) and plain.cost_usd > 0


def test_function_calls_and_automatic_function_calling(fake, log):
    client = fake.client("gemini")
    reply = client.models.generate_content(model=MODEL, contents="weather in Paris?", config=types.GenerateContentConfig(
        tools=[WEATHER_TOOL], tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY"))))
    assert reply.function_calls[0].name == "get_weather"
    declared = only(log)
    assert declared.tool_call_count == 1 and declared.request_params == {"function_calling_mode": "ANY"}

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    answered = client.models.generate_content(model=MODEL, contents="weather in Paris?", config=types.GenerateContentConfig(tools=[get_weather]))
    assert answered.text == fake.settings.reply
    first, second = sorted(log.calls, key=lambda c: c.started_at)[1:]  # one record per request the SDK made
    assert (first.tool_call_count, second.tool_call_count) == (1, 0)
    assert (first.message_count, second.message_count) == (1, 3)  # the question, the call, the function's answer


def test_chat_session_records_each_turn(fake, log):
    chat = fake.client("gemini").chats.create(model="gemini-2.0-flash")
    chat.send_message("hello")
    chat.send_message("again")
    first, second = sorted(log.calls, key=lambda c: c.started_at)
    assert (first.message_count, second.message_count) == (1, 3)


def test_embeddings_count_tokens_and_vertex(fake, log):
    client = fake.client("gemini")
    client.models.embed_content(model="gemini-embedding-001", contents=["a short text", "another text"],
                                config=types.EmbedContentConfig(output_dimensionality=4, task_type="RETRIEVAL_DOCUMENT"))
    counted = client.models.count_tokens(model=MODEL, contents=QUESTION)
    vertex = fake.client("gemini", vertexai=True)
    vertex.models.generate_content(model=MODEL, contents=QUESTION)
    vertex.models.embed_content(model="text-embedding-005", contents=["hello world"])
    calls = {(c.provider, c.operation): c for c in log.calls}
    assert len(log.calls) == 4
    embedded = calls["gcp.gemini", "embeddings"]
    assert embedded.input_tokens > 0 and embedded.request_params == {"output_dimensionality": 4, "task_type": "RETRIEVAL_DOCUMENT"}
    assert embedded.cost_usd == pytest.approx(priced(embedded)) and embedded.cost_usd > 0
    free = calls["gcp.gemini", "count_tokens"]
    assert free.cost_usd == 0.0 and free.input_tokens is None and free.metadata["counted_input_tokens"] == counted.total_tokens
    assert calls["gcp.vertex_ai", "generate_content"].cost_usd == pytest.approx(priced(calls["gcp.vertex_ai", "generate_content"], "gcp.vertex_ai"))
    predicted = calls["gcp.vertex_ai", "embeddings"]
    assert predicted.input_tokens == 2 and predicted.metadata["billable_characters"] == 11


@pytest.mark.parametrize("status, exc_type, category", [(429, errors.ClientError, "rate_limit"), (500, errors.ServerError, "server"),
                                                        (400, errors.ClientError, "invalid_request"),
                                                        (403, errors.ClientError, "permission"), (404, errors.ClientError, "not_found")])
def test_status_errors_recorded_and_reraised_unchanged(fake, log, status, exc_type, category):
    fake.fail(status, message="fake trouble")
    with pytest.raises(exc_type) as raised:
        fake.client("gemini").models.generate_content(model=MODEL, contents=QUESTION)
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code) == (exc_type.__name__, category, status)
    assert "fake trouble" in call.error_message and call.cost_usd == 0.0 and raised.value.code == status


def test_errors_on_streams_sync_and_async(fake, log):
    fake.fail(503, times=2)
    with pytest.raises(errors.ServerError):
        for _ in fake.client("gemini").models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass

    async def main():
        async for _ in await fake.client("gemini", asynchronous=True).models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass

    with pytest.raises(errors.ServerError):
        asyncio.run(main())
    for call in log.calls:
        assert (call.status_code, call.error_category, call.chunk_count or 0) == (503, "server", 0)
    assert len(log.calls) == 2


def test_error_chunk_inside_a_stream(log):
    good = {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}], "responseId": "r-7", "modelVersion": MODEL,
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}}
    bad = {"error": {"code": 500, "message": "overloaded mid-stream", "status": "INTERNAL"}}
    data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in (good, bad))
    with pytest.raises(errors.ServerError, match="overloaded mid-stream"):
        for _ in raw_client(200, "text/event-stream", data).models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass
    call = only(log)
    assert call.error_type == "ServerError" and call.chunk_count == 1 and call.response_id == "r-7" and call.input_tokens == 4


def test_timeout_recorded(fake, log):
    fake.fail(timeout=True)
    with pytest.raises(httpx2.TimeoutException):
        fake.client("gemini").models.generate_content(model=MODEL, contents=QUESTION)
    assert only(log).error_category == "timeout"


def test_sdk_retries_show_as_attempt(fake, log):
    fake.fail(503, times=2)
    retry = types.HttpRetryOptions(attempts=4, initial_delay=0, max_delay=0, jitter=0, exp_base=1)
    client = fake.client("gemini", http_options=types.HttpOptions(retry_options=retry))
    client.models.generate_content(model=MODEL, contents=QUESTION)
    call = only(log)
    assert call.attempt == 3 and call.error_type is None and call.output_tokens == 13

    async def main():
        fake.fail(429, times=1)
        await fake.client("gemini", asynchronous=True, http_options={"retry_options": retry}).models.generate_content(model=MODEL, contents=QUESTION)

    asyncio.run(main())
    assert [c.attempt for c in sorted(log.calls, key=lambda c: c.started_at)] == [3, 2]


def test_attribution_and_workflow(fake, log):
    client = fake.client("gemini")
    with tokentrail.workflow("answer"), tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["beta"], plan="pro"):
        for _ in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass
    call = only(log)
    assert (call.user_id, call.customer_id, call.feature, call.tags, call.workflow) == ("u1", "acme", "search", ["beta"], "answer")
    assert call.metadata["plan"] == "pro"


def test_api_key_and_content_not_kept_by_default(fake, log):
    fake.client("gemini", api_key="AIzaSyFAKE-secret-key-123456789").models.generate_content(model=MODEL, contents=QUESTION)
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    assert "AIzaSyFAKE-secret" not in text and "capital of France" not in text
    assert call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    client = fake.client("gemini")
    with tokentrail.tracking() as log:
        client.models.generate_content(model=MODEL, contents=QUESTION, config={"system_instruction": "be brief"})
        for _ in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.input_messages == [{"parts": [{"text": "be brief"}], "role": "system"},
                                    {"parts": [{"text": QUESTION}], "role": "user"}]
    assert streamed.input_messages == [{"parts": [{"text": QUESTION}], "role": "user"}]
    assert plain.output_text == streamed.output_text == "Hello from"


def test_uninstrument_restores_the_client(fake, log):
    from google.genai import _api_client

    tokentrail.uninstrument("google_genai")
    assert "google_genai" not in tokentrail.instrumented()
    assert type(_api_client.BaseApiClient.__dict__["request"]).__name__ == "function"  # no wrapper left
    fake.client("gemini").models.generate_content(model=MODEL, contents=QUESTION)
    assert log.calls == []


# -- fuzz: whatever the server sends, the app sees the same thing, and one record is made ----------------


def raw_client(status, kind, data):
    transport = httpx2.MockTransport(lambda request: httpx2.Response(status, headers={"content-type": kind}, content=data))
    return genai.Client(api_key="k", http_options=types.HttpOptions(httpx_client=httpx2.Client(transport=transport)))


_replies = {}


def _answer(request):
    status, kind, data = _replies["now"]
    return httpx2.Response(status, headers={"content-type": kind}, content=data)


_fuzz_client = genai.Client(api_key="k", http_options=types.HttpOptions(  # built once: a client takes ~0.1 s to make
    httpx_client=httpx2.Client(transport=httpx2.MockTransport(_answer))))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "promptTokenCount": json_values, "candidatesTokenCount": json_values, "thoughtsTokenCount": json_values,
    "cachedContentTokenCount": json_values, "toolUsePromptTokenCount": json_values})
parts = st.lists(st.fixed_dictionaries({}, optional={"text": json_values, "thought": json_values, "functionCall": json_values}), max_size=3)
candidates = json_values | st.lists(st.fixed_dictionaries({}, optional={
    "content": json_values | st.fixed_dictionaries({}, optional={"parts": parts, "role": json_values}),
    "finishReason": json_values, "index": json_values}), max_size=2)
bodies = st.fixed_dictionaries({}, optional={"candidates": candidates, "usageMetadata": usages, "modelVersion": json_values,
                                             "responseId": json_values, "promptFeedback": json_values, "error": json_values})


@st.composite
def replies(draw):
    """(status, content-type, bytes): a JSON body, or SSE chunks — any of them torn at any byte."""
    if draw(st.booleans()):
        data = json.dumps(draw(bodies)).encode()
        kind = "application/json"
    else:
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in draw(st.lists(bodies, max_size=4)))
        kind = "text/event-stream"
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from([200, 200, 200, 400, 429, 500])), kind, data


def outcome(client, stream):
    try:
        if stream:
            return "ok", [repr(chunk) for chunk in client.models.generate_content_stream(model=MODEL, contents=QUESTION)]
        return "ok", repr(client.models.generate_content(model=MODEL, contents=QUESTION))
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__, str(exc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_the_app_sees_the_same_results_and_one_record(reply, stream):
    status, kind, data = _replies["now"] = reply
    client = _fuzz_client
    tokentrail.uninstrument()
    bare = outcome(client, stream)
    tokentrail.instrument("google_genai")
    with tokentrail.tracking() as log:
        tracked = outcome(client, stream)
        gc.collect(1)  # a stream the SDK abandoned on a bad chunk finishes its record when collected
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == MODEL and call.provider == "gcp.gemini"
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    if status >= 400:
        assert call.status_code == status and bare[0] == "raised"
