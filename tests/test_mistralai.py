"""The real `mistralai` SDK, through its own HTTP layer, against tokentrail.testing's fake provider (Mistral's wire format)."""

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
from importlib import metadata

import httpx2
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from mistralai.client import Mistral, errors
from mistralai.client.utils import BackoffStrategy, RetryConfig
from mistralai.client.utils.eventstreaming import EventStream, EventStreamAsync

import tokentrail
from conftest import only

MODEL = "mistral-small-latest"
SERVED = "mistral-small-2506"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}}]
REPLY = "Hello from the fake provider."


def retrying():
    return RetryConfig("backoff", BackoffStrategy(1, 10, 1.1, 5000), retry_connection_errors=True)


def by_time(log):
    return sorted(log.calls, key=lambda c: c.started_at)


def test_chat_complete_records_everything(fake, log):
    client = fake.client("mistral")
    reply = client.chat.complete(model=MODEL, messages=MESSAGES, temperature=0.2, max_tokens=50, random_seed=7)
    assert reply.choices[0].message.content == REPLY  # the app's result is untouched
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("mistral_ai", "chat", "mistralai")
    assert (call.request_model, call.response_model, call.response_id) == (MODEL, SERVED, reply.id)
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
    assert call.request_params == {"temperature": 0.2, "max_tokens": 50, "random_seed": 7}
    assert call.finish_reasons == ["stop"] and call.message_count == 2 and call.tool_call_count == 0
    priced = tokentrail.cost("mistral_ai", SERVED, input_tokens=call.input_tokens, output_tokens=call.output_tokens)
    assert call.cost_usd == pytest.approx(priced.total_usd) and call.cost_usd > 0
    assert call.sdk_version == metadata.version("mistralai") and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None and call.cache_read_tokens is None


def test_cached_prompt_tokens_are_part_of_the_input(fake, log):
    fake.settings.cache_read_tokens = 1024
    model = "mistral-medium-latest"  # priced with a cache-read rate
    reply = fake.client("mistral").chat.complete(model=model, messages=MESSAGES)
    call = only(log)
    assert call.cache_read_tokens == 1024 and call.input_tokens == reply.usage.prompt_tokens > 1024
    priced = tokentrail.cost("mistral_ai", model, input_tokens=call.input_tokens, output_tokens=call.output_tokens, cache_read_tokens=1024)
    assert call.cost_usd == pytest.approx(priced.total_usd)
    assert call.cost_usd < tokentrail.cost("mistral_ai", model, input_tokens=call.input_tokens, output_tokens=call.output_tokens).total_usd


def test_tool_calls_plain_and_streamed(fake, log):
    client = fake.client("mistral")
    client.chat.complete(model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice="auto")
    for _ in client.chat.stream(model=MODEL, messages=MESSAGES, tools=TOOLS):
        pass
    plain, streamed = by_time(log)
    for call in (plain, streamed):
        assert call.tool_call_count == 1 and call.finish_reasons == ["tool_calls"] and call.output_tokens == 12
    assert plain.request_params == {"tool_choice": "auto"}


def test_chat_parse_structured_output(fake, log):
    class Answer(pydantic.BaseModel):
        city: str

    fake.settings.reply = '{"city": "Paris"}'
    parsed = fake.client("mistral").chat.parse(Answer, model=MODEL, messages=MESSAGES)
    assert parsed.choices[0].message.parsed.city == "Paris"
    call = only(log)
    assert call.request_params == {"response_format": "json_schema"} and call.output_tokens == 2


def test_stream_keeps_the_sdk_type_and_records_timing(fake, log):
    fake.settings.frame_delay = 0.002
    stream = fake.client("mistral").chat.stream(model=MODEL, messages=MESSAGES)
    assert isinstance(stream, EventStream)
    events = list(stream)
    assert "".join(e.data.choices[0].delta.content for e in events) == REPLY
    call = only(log)
    assert call.stream and call.chunk_count == len(events) == 7 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 10  # six frame delays after the first event
    assert (call.input_tokens, call.output_tokens) == (events[-1].data.usage.prompt_tokens, 5) and call.cost_usd > 0
    assert call.finish_reasons == ["stop"] and call.response_id == events[0].data.id and call.response_model == SERVED
    assert call.metadata["stream_duration_ms"] > 0 and "stream_incomplete" not in call.metadata


def test_stream_read_in_a_with_block(fake, log):
    with fake.client("mistral").chat.stream(model=MODEL, messages=MESSAGES) as stream:
        text = "".join(e.data.choices[0].delta.content for e in stream)
    assert text == REPLY
    call = only(log)
    assert call.output_tokens == 5 and "stream_incomplete" not in call.metadata


def test_stream_closed_early_left_in_a_with_block_or_dropped_unread(fake, log):
    client = fake.client("mistral")
    stream = client.chat.stream(model="mistral-large-latest", messages=MESSAGES)
    next(stream)
    stream.close()
    with client.chat.stream(model="codestral-latest", messages=MESSAGES) as stream:
        next(stream)
        next(stream)
    client.chat.stream(model="mistral-medium-latest", messages=MESSAGES)  # never read
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    assert len(calls) == 3
    assert calls["mistral-large-latest"].chunk_count == 1 and calls["codestral-latest"].chunk_count == 2
    assert calls["mistral-medium-latest"].chunk_count == 0
    for call in calls.values():
        assert call.metadata["stream_incomplete"] is True and call.error_type is None
    streamed = calls["codestral-latest"]  # text was read, no usage reported: estimates, flagged so
    assert streamed.metadata["tokens_estimated"] and streamed.output_tokens > 0
    unread = calls["mistral-medium-latest"]  # dropped before any text: whether anything was generated is unknown
    assert "tokens_estimated" not in unread.metadata and unread.output_tokens is None


def test_fim_plain_and_streamed_are_text_completions(fake, log):
    client = fake.client("mistral")
    reply = client.fim.complete(model="codestral-latest", prompt="def add(a, b):", suffix="return c", temperature=0.0)
    text = "".join(e.data.choices[0].delta.content for e in client.fim.stream(model="codestral-latest", prompt="def add(a, b):"))
    assert text == reply.choices[0].message.content == REPLY
    plain, streamed = by_time(log)
    for call in (plain, streamed):
        assert (call.operation, call.request_model, call.response_model) == ("text_completion", "codestral-latest", "codestral-2501")
        assert call.output_tokens == 5 and call.cost_usd > 0
    assert plain.request_params == {"temperature": 0.0} and streamed.stream


def test_embeddings_and_moderations(fake, log):
    client = fake.client("mistral")
    client.embeddings.create(model="mistral-embed", inputs=["a", "b"], output_dimension=256)
    client.classifiers.moderate(model="mistral-moderation-latest", inputs=["some text"])
    client.classifiers.moderate_chat(model="mistral-moderation-latest", inputs=MESSAGES[1:])
    client.models.list()  # not an LLM call: not recorded
    embed, moderate, moderate_chat = by_time(log)
    assert (embed.operation, embed.response_model, embed.output_tokens) == ("embeddings", "mistral-embed", 0)
    assert embed.input_tokens > 0 and embed.cost_usd > 0 and embed.request_params == {"output_dimension": 256}
    for call in (moderate, moderate_chat):
        assert call.operation == "moderation" and call.metadata == {"flagged": False, "server_address": "api.mistral.ai", "server_port": 443} and call.input_tokens > 0


def test_agents_are_agent_invocations(fake, log):
    client = fake.client("mistral")
    reply = client.agents.complete(agent_id="ag_123", messages=MESSAGES[1:], max_tokens=20)
    for _ in client.agents.stream(agent_id="ag_123", messages=MESSAGES[1:]):
        pass
    plain, streamed = by_time(log)
    for call in (plain, streamed):
        assert (call.operation, call.request_model, call.response_model) == ("invoke_agent", None, reply.model)
        assert call.metadata["agent_id"] == "ag_123" and call.output_tokens == 5
        assert call.cost_usd == pytest.approx(tokentrail.cost("mistral_ai", reply.model, input_tokens=call.input_tokens,
                                                              output_tokens=call.output_tokens).total_usd)


def test_conversations_start_append_restart_and_streams(fake, log):
    client = fake.client("mistral")
    started = client.beta.conversations.start(inputs="Hello", agent_id="ag_1", completion_args={"temperature": 0.3})
    client.beta.conversations.append(conversation_id=started.conversation_id, inputs="And then?")
    client.beta.conversations.restart(conversation_id=started.conversation_id, inputs="Again", from_entry_id=started.outputs[0].id)
    events = list(client.beta.conversations.start_stream(inputs="Hi", model="mistral-medium-latest", instructions="be brief"))
    first, append, restart, streamed = by_time(log)
    assert (first.operation, first.request_params, first.message_count) == ("invoke_agent", {"temperature": 0.3}, 1)
    assert first.metadata == {"agent_id": "ag_1", "conversation_id": started.conversation_id, "server_address": "api.mistral.ai", "server_port": 443}
    assert first.response_id == started.outputs[0].id and first.response_model == "mistral-medium-latest"
    assert (first.input_tokens, first.output_tokens) == (started.usage.prompt_tokens, started.usage.completion_tokens)
    assert append.metadata["conversation_id"] == restart.metadata["conversation_id"] == started.conversation_id
    assert streamed.operation == "chat" and streamed.stream and streamed.chunk_count == len(events) == 7
    assert streamed.request_model == "mistral-medium-latest" and streamed.message_count == 2 and streamed.output_tokens == 5
    assert streamed.metadata["conversation_id"] == events[0].data.conversation_id
    for call in (first, append, restart, streamed):
        assert call.cost_usd > 0


def test_async_complete_stream_and_early_close(fake, log):
    async def main():
        client = fake.client("mistral", asynchronous=True)
        await client.chat.complete_async(model=MODEL, messages=MESSAGES)
        stream = await client.chat.stream_async(model=MODEL, messages=MESSAGES)
        assert isinstance(stream, EventStreamAsync)
        text = "".join([e.data.choices[0].delta.content async for e in stream])
        async with await client.chat.stream_async(model="mistral-large-latest", messages=MESSAGES) as early:
            await early.__anext__()
        return text

    assert asyncio.run(main()) == REPLY
    plain, streamed, early = by_time(log)
    assert plain.output_tokens == streamed.output_tokens == 5 and not plain.stream
    assert streamed.stream and streamed.chunk_count == 7 and streamed.ttft_ms > 0 and "stream_incomplete" not in streamed.metadata
    assert early.metadata["stream_incomplete"] is True and early.chunk_count == 1


@pytest.mark.parametrize(
    "status, exc_type, category, message",
    [(429, errors.SDKError, "rate_limit", "fake 429"), (500, errors.SDKError, "server", "fake 500"),
     (401, errors.SDKError, "authentication", "fake 401"), (404, errors.SDKError, "not_found", "fake 404"),
     (422, errors.HTTPValidationError, "invalid_request", "body.messages: fake 422")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_errors_recorded_with_the_sdks_exception(fake, log, status, exc_type, category, message, stream):
    fake.fail(status)
    client = fake.client("mistral")
    with pytest.raises(exc_type) as raised:
        if stream:
            list(client.chat.stream(model=MODEL, messages=MESSAGES))
        else:
            client.chat.complete(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == status
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code, call.error_message) == (exc_type.__name__, category, status, message)
    assert call.request_model == MODEL and call.provider == "mistral_ai" and call.cost_usd == 0.0 and not call.stream


def test_async_status_error(fake, log):
    fake.fail(503)

    async def main():
        with pytest.raises(errors.SDKError):
            await fake.client("mistral").embeddings.create_async(model="mistral-embed", inputs=["a"])

    asyncio.run(main())
    call = only(log)
    assert (call.operation, call.error_category, call.status_code) == ("embeddings", "server", 503)


def test_an_invalid_event_mid_stream_fails_the_record(log):
    def handler(request):
        frames = [b'data: {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": '
                  b'[{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}\n\n',
                  b'data: {"object": "error", "message": "overloaded mid-stream"}\n\n']
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(frames))

    client = Mistral(api_key="k", client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    with pytest.raises(errors.ResponseValidationError):
        for _ in client.chat.stream(model=MODEL, messages=MESSAGES):
            pass
    call = only(log)
    assert call.error_type == "ResponseValidationError" and call.chunk_count == 1 and call.response_id == "c1"


def test_timeout_and_connection_errors(fake, log):
    fake.fail(timeout=True)
    with pytest.raises(httpx2.ReadTimeout):
        fake.client("mistral").chat.complete(model=MODEL, messages=MESSAGES)
    broken = Mistral(api_key="k", server_url="http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(httpx2.ConnectError):
        broken.chat.complete(model="mistral-large-latest", messages=MESSAGES)
    timed_out, refused = by_time(log)
    assert (timed_out.error_category, timed_out.request_model) == ("timeout", MODEL)
    assert (refused.error_category, refused.request_model) == ("connection", "mistral-large-latest")


def test_sdk_retries_show_as_attempt(fake, log):
    fake.fail(429, retry_after=0, times=2)
    client = fake.client("mistral", retry_config=retrying())
    client.chat.complete(model=MODEL, messages=MESSAGES)
    fake.fail(503, retry_after=0)
    list(client.chat.stream(model=MODEL, messages=MESSAGES))
    fake.fail(500, retry_after=0)

    async def main():
        await client.chat.complete_async(model=MODEL, messages=MESSAGES)

    asyncio.run(main())
    plain, streamed, asynchronous = by_time(log)
    assert (plain.attempt, streamed.attempt, asynchronous.attempt) == (3, 2, 2)
    assert plain.error_type is None and plain.output_tokens == streamed.output_tokens == asynchronous.output_tokens == 5


def test_a_status_the_sdk_never_raised_for_is_recorded_when_dropped(log):
    """`do_request` called directly (or a client hook swallowing the error): the response's status is recorded."""
    from mistralai.client._hooks import HookContext

    client = Mistral(api_key="k", client=httpx2.Client(transport=httpx2.MockTransport(lambda r: httpx2.Response(503, text="down"))))
    sdk = client.chat
    request = sdk.sdk_configuration.client.build_request("POST", "https://api.mistral.ai/v1/chat/completions",
                                                        content=json.dumps({"model": MODEL, "messages": MESSAGES}).encode(),
                                                        headers={"user-agent": sdk.sdk_configuration.user_agent})
    context = HookContext(config=sdk.sdk_configuration, base_url="", operation_id="chat_completion_v1_chat_completions_post",
                          oauth2_scopes=None, security_source=None, tags=["chat"], extensions=None)
    response = sdk.do_request(hook_ctx=context, request=request, is_error_status_code=lambda code: code >= 400)
    assert response.status_code == 503 and log.calls == []  # waiting for an exception that does not come
    del response
    gc.collect()
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code, call.request_model) == ("HTTPStatusError", "server", 503, MODEL)


def test_azure_and_gcp_clients(fake, log):
    client = fake.client("mistral", cloud="azure")
    client.chat.complete(model="mistral-large-2411", messages=MESSAGES)
    gcp = fake.client("mistral", cloud="gcp")
    gcp.chat.complete(model="mistral-large-2411", messages=MESSAGES)
    for _ in gcp.fim.stream(model="codestral-2501", prompt="def"):
        pass
    fake.fail(429)
    with pytest.raises(Exception) as raised:
        gcp.chat.complete(model="mistral-large-2411", messages=MESSAGES)
    azure, vertex, fim, failed = by_time(log)
    assert (azure.provider, vertex.provider, fim.provider) == ("azure.ai.inference", "gcp.vertex_ai", "gcp.vertex_ai")
    for call in (azure, vertex, fim):
        priced = tokentrail.cost(call.provider, call.request_model, input_tokens=call.input_tokens, output_tokens=call.output_tokens)
        assert call.output_tokens == 5 and priced.total_usd > 0 and call.cost_usd == pytest.approx(priced.total_usd)
    assert fim.operation == "text_completion" and fim.stream
    assert (failed.error_type, failed.status_code) == (type(raised.value).__name__, 429)


def test_attribution(fake, log):
    client = fake.client("mistral")
    with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["beta"]):
        client.chat.complete(model=MODEL, messages=MESSAGES)
        for _ in client.chat.stream(model=MODEL, messages=MESSAGES):
            pass
    for call in log.calls:
        assert (call.user_id, call.customer_id, call.feature, call.tags) == ("u1", "acme", "search", ["beta"])


def test_content_and_keys_not_kept_by_default(fake, log):
    client = fake.client("mistral", api_key="sk-mistral-secret-123")
    client.chat.complete(model=MODEL, messages=MESSAGES, http_headers={"Authorization": "Bearer sk-other-789"})
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    for secret in ("sk-mistral-secret-123", "sk-other-789", "capital of France", REPLY):
        assert secret not in text
    assert call.message_count == 2 and call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    client = fake.client("mistral")
    with tokentrail.tracking() as log:
        client.chat.complete(model=MODEL, messages=MESSAGES)
        for _ in client.chat.stream(model=MODEL, messages=MESSAGES):
            pass
        client.fim.complete(model="codestral-latest", prompt="def f(", suffix="return 1")
    plain, streamed, fim = by_time(log)
    for call in (plain, streamed):
        assert call.input_messages == MESSAGES and call.output_text == "Hello from"
    assert fim.input_messages == [{"role": "user", "content": "def f("}, {"role": "suffix", "content": "return 1"}]


def test_manual_block_around_an_sdk_call_is_recorded_once(fake, log):
    client = fake.client("mistral")
    with tokentrail.track_llm_call("mistral", MODEL) as span:
        client.chat.complete(model=MODEL, messages=MESSAGES)
        span.set_tokens(input=1, output=1)
    call = only(log)
    assert call.source == "manual" and call.provider == "mistral_ai" and call.total_tokens == 2


def test_uninstrument_restores_the_sdk(fake, log):
    from mistralai.client import basesdk
    from mistralai.client.utils import eventstreaming

    client = fake.client("mistral")
    tokentrail.uninstrument("mistralai")
    assert type(basesdk.BaseSDK.__dict__["do_request"]).__name__ == "function"
    assert type(eventstreaming.EventStream.__dict__["__init__"]).__name__ == "function"
    client.chat.complete(model=MODEL, messages=MESSAGES)
    assert log.calls == []
    tokentrail.instrument("mistralai")
    tokentrail.instrument("mistralai")  # idempotent: one record per call
    client.chat.complete(model=MODEL, messages=MESSAGES)
    assert len(log.calls) == 1


def test_patched_when_imported_after_instrument(tmp_path):
    """The SDK imported after `instrument()` (as with `import tokentrail.auto`): patched on import, the
    Azure client too when it is imported later."""
    code = textwrap.dedent("""
        import sys, tokentrail
        tokentrail.instrument("mistralai")
        assert "mistralai" not in sys.modules
        from tokentrail.testing import FakeProvider
        fake = FakeProvider()
        messages = [{"role": "user", "content": "hi"}]
        with tokentrail.tracking() as log:
            client = fake.client("mistral")
            client.chat.complete(model="mistral-small-latest", messages=messages)
            for _ in client.chat.stream(model="mistral-small-latest", messages=messages):
                pass
            assert "mistralai.azure.client" not in sys.modules
            fake.client("mistral", cloud="azure").chat.complete(model="mistral-large-2411", messages=messages)
        print(sorted((c.provider, c.request_model, c.output_tokens, bool(c.stream)) for c in log.calls))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("[('azure.ai.inference', 'mistral-large-2411', 5, False), "
                                     "('mistral_ai', 'mistral-small-latest', 5, False), ('mistral_ai', 'mistral-small-latest', 5, True)]")

# -- fuzz: malformed and truncated answers -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values | st.integers(0, 10**6), "completion_tokens": json_values | st.integers(0, 10**6),
    "total_tokens": json_values, "prompt_tokens_details": json_values | st.fixed_dictionaries({"cached_tokens": json_values})})
choices = st.lists(st.fixed_dictionaries({}, optional={
    "index": json_values | st.just(0), "finish_reason": json_values | st.just("stop"),
    "message": json_values | st.fixed_dictionaries({"role": st.just("assistant")}, optional={"content": json_values, "tool_calls": json_values}),
    "delta": json_values | st.fixed_dictionaries({}, optional={"content": json_values, "tool_calls": json_values})}), max_size=2)
completions = st.fixed_dictionaries({}, optional={
    "id": json_values | st.just("cmpl-1"), "object": json_values, "model": json_values | st.just(SERVED),
    "created": json_values | st.just(1), "choices": json_values | choices, "usage": usages})


def frames(events, cut):
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)
    return body[:cut] if cut is not None else body


@st.composite
def replies(draw):
    """(status, content-type, body bytes): a JSON body, or an SSE stream of events, maybe truncated."""
    status = draw(st.sampled_from([200, 200, 200, 200, 400, 422, 429, 500]))
    if draw(st.booleans()):
        body = json.dumps(draw(completions)).encode()
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        return status, "application/json", body
    events = draw(st.lists(completions | st.just(b"[DONE]") | st.binary(max_size=6), max_size=3))
    body = frames(events, None)
    return status, "text/event-stream", frames(events, draw(st.none() | st.integers(0, len(body))))


def outcome(client, stream):
    try:
        if stream:
            return "ok", [repr(e) for e in client.chat.stream(model=MODEL, messages=MESSAGES)]
        return "ok", repr(client.chat.complete(model=MODEL, messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__


_served: dict[str, tuple[int, str, bytes]] = {}


@pytest.fixture(scope="module")
def fuzzed():
    """One client for every example (building one costs more than the calls): it answers what `_served` holds."""
    def answer(request):
        status, content_type, body = _served["reply"]
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    transport = httpx2.MockTransport(answer)
    return Mistral(api_key="k", client=httpx2.Client(transport=transport), async_client=httpx2.AsyncClient(transport=transport))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_the_app_sees_the_same_results_and_one_record(fuzzed, reply, stream):
    _served["reply"] = reply
    status = reply[0]
    tokentrail.uninstrument()
    bare = outcome(fuzzed, stream)
    tokentrail.instrument("mistralai")
    with tokentrail.tracking() as log:
        tracked = outcome(fuzzed, stream)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == MODEL and call.provider == "mistral_ai"
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    if status >= 400:
        assert bare[0] == "raised" and call.status_code == status and call.error_type == bare[1]
    if bare[0] == "raised" and call.error_type is None:  # the SDK rejected a 2xx body after the record had ended
        assert status < 400
