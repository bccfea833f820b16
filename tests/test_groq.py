"""The real `groq` SDK, through its own HTTP layer, against tokentrail.testing's fake provider (Groq's wire format)."""

import asyncio
import gc
import json

import groq
import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from conftest import only

MODEL = "llama-3.3-70b-versatile"
GROQ_SERVER = {"server_address": "api.groq.com", "server_port": 443}  # OTel server.address/port, from the client
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def priced(call):
    return tokentrail.cost("groq", call.response_model, input_tokens=call.input_tokens, output_tokens=call.output_tokens,
                           cache_read_tokens=call.cache_read_tokens or 0, reasoning_tokens=call.reasoning_tokens or 0).total_usd


def test_chat_create_records_everything(fake, log):
    client = fake.client("groq")
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2, max_completion_tokens=50,
                                           reasoning_format="hidden")
    assert isinstance(reply, groq.types.chat.ChatCompletion)  # the app's result is untouched
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("groq", "chat", "groq")
    assert (call.request_model, call.response_model, call.response_id) == (MODEL, MODEL, reply.id)
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
    assert call.request_params == {"temperature": 0.2, "max_completion_tokens": 50, "reasoning_format": "hidden"}
    assert call.finish_reasons == ["stop"] and call.message_count == 2 and call.tool_call_count == 0
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.metadata == {"queue_time_ms": 12.5, "prompt_time_ms": 2.1, "completion_time_ms": 34.2, **GROQ_SERVER}
    assert call.sdk_version == groq.__version__ and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None


def test_cached_and_reasoning_tokens(fake, log):
    fake.settings.cache_read_tokens = 512
    reply = fake.client("groq").chat.completions.create(model="qwen/qwen3-32b", messages=MESSAGES)
    call = only(log)
    assert call.cache_read_tokens == 512 and call.input_tokens == reply.usage.prompt_tokens
    assert call.reasoning_tokens == reply.usage.completion_tokens_details.reasoning_tokens > 0
    assert call.output_tokens == reply.usage.completion_tokens  # reasoning is part of the output, counted once
    assert call.cost_usd == pytest.approx(priced(call))


def test_vendor_prefixed_groq_model_is_priced_at_groqs_rate(fake, log):
    fake.client("groq").chat.completions.create(model="openai/gpt-oss-120b", messages=MESSAGES)
    call = only(log)
    rate_in, rate_out = 0.15 / 1e6, 0.60 / 1e6  # GroqCloud's price list (genai-prices, provider groq)
    assert call.cost_usd == pytest.approx(call.input_tokens * rate_in + call.output_tokens * rate_out)


def test_tools_and_n_choices(fake, log):
    client = fake.client("groq")
    client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS)
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, stream=True):
        pass
    fake.settings.tool_call = False
    client.chat.completions.create(model=MODEL, messages=MESSAGES, n=3)
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2, stream=True):
        pass
    with_tools, streamed_tools, three, two = sorted(log.calls, key=lambda c: c.started_at)
    assert with_tools.tool_call_count == 1 and with_tools.finish_reasons == ["tool_calls"]
    assert streamed_tools.tool_call_count == 1 and streamed_tools.finish_reasons == ["tool_calls"] and streamed_tools.stream
    assert three.finish_reasons == ["stop", "stop", "stop"] and three.request_params["n"] == 3 and three.tool_call_count == 0
    assert two.finish_reasons == ["stop", "stop"] and two.output_tokens == 10


def test_stream_usage_comes_from_x_groq_without_stream_options(fake, log):
    fake.settings.frame_delay = 0.002
    client = fake.client("groq")
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(stream, groq.Stream)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake.settings.reply
    usage = chunks[-1].x_groq.usage
    call = only(log)
    assert call.stream and call.chunk_count == len(chunks) == 7 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 10  # 6 frame delays after the first chunk
    assert (call.input_tokens, call.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.finish_reasons == ["stop"] and call.response_id == chunks[0].id
    assert call.metadata["queue_time_ms"] == 12.5 and call.metadata["chunks_per_s"] > 0
    assert "stream_incomplete" not in call.metadata


def test_stream_with_include_usage_counts_once(fake, log):
    client = fake.client("groq")
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,  # groq 1.7 has no argument for it
                                                 extra_body={"stream_options": {"include_usage": True}}))
    call = only(log)
    assert call.output_tokens == chunks[-1].usage.completion_tokens == 5 and call.chunk_count == 8
    assert call.total_tokens == chunks[-1].usage.total_tokens


def test_stream_closed_early_with_block_and_garbage_collected(fake, log):
    client = fake.client("groq")
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        next(iter(stream))
    client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES, stream=True)  # never read
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    assert calls[MODEL].metadata["stream_incomplete"] is True and calls[MODEL].chunk_count == 1
    assert calls[MODEL].input_tokens is None  # the usage was in the chunk never read
    assert calls["llama-3.1-8b-instant"].metadata["stream_incomplete"] is True and calls["llama-3.1-8b-instant"].chunk_count == 0


def test_async_client_create_and_stream(fake, log):
    async def main():
        client = fake.client("groq", asynchronous=True)
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        assert isinstance(stream, groq.AsyncStream)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "Hello from the fake provider."
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.output_tokens == streamed.output_tokens == 5 and streamed.chunk_count == 7 and streamed.ttft_ms > 0
    assert plain.cost_usd == pytest.approx(streamed.cost_usd) and plain.cost_usd > 0


def test_embeddings_and_audio(fake, log):
    client = fake.client("groq")
    client.embeddings.create(model="nomic-embed-text-v1_5", input=["a", "b"])
    text = client.audio.transcriptions.create(model="whisper-large-v3", file=("a.mp3", b"ID3"), language="en")
    client.audio.translations.create(model="whisper-large-v3", file=("a.mp3", b"ID3"), response_format="verbose_json")
    speech = client.audio.speech.create(model="playai-tts", voice="Fritz-PlayAI", input="Hello", response_format="wav")
    client.models.list()  # not an LLM call: not recorded
    assert text.text == fake.settings.reply and speech.read().startswith(b"RIFF")
    by_op = {}
    for call in log.calls:
        by_op.setdefault(call.operation, []).append(call)
    assert sorted(by_op) == ["embeddings", "speech_to_text", "text_to_speech"] and len(log.calls) == 4
    assert by_op["embeddings"][0].input_tokens > 0 and by_op["embeddings"][0].provider == "groq"
    transcription, translation = sorted(by_op["speech_to_text"], key=lambda c: c.started_at)
    assert transcription.request_params == {"language": "en"} and transcription.metadata == GROQ_SERVER
    assert translation.metadata == {"audio_seconds": 3.5, **GROQ_SERVER}
    assert by_op["text_to_speech"][0].request_params == {"voice": "Fritz-PlayAI", "response_format": "wav"}


@pytest.mark.parametrize(
    "status, exc_type, category",
    [(429, groq.RateLimitError, "rate_limit"), (500, groq.InternalServerError, "server"),
     (401, groq.AuthenticationError, "authentication"), (400, groq.BadRequestError, "invalid_request"),
     (404, groq.NotFoundError, "not_found"), (413, groq.APIStatusError, "context_length")],
)
def test_status_errors_recorded_and_reraised_unchanged(fake, log, status, exc_type, category):
    fake.fail(status, message="fake trouble")
    with pytest.raises(exc_type) as raised:
        fake.client("groq").chat.completions.create(model=MODEL, messages=MESSAGES)
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code) == (type(raised.value).__name__, category, status)
    assert "fake trouble" in call.error_message and call.provider == "groq" and call.cost_usd == 0.0
    assert raised.value.status_code == status and raised.value.body["error"]["message"] == "fake trouble"


def test_error_on_a_stream_request(fake, log):
    fake.fail(503)
    with pytest.raises(groq.InternalServerError):
        fake.client("groq").chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    call = only(log)
    assert call.status_code == 503 and call.error_category == "server" and call.request_params == {"stream": True}


def test_error_event_inside_a_stream_is_recorded_and_reraised(log):
    def handler(request):
        frames = (b'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "llama-3.3-70b-versatile", '
                  b'"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}], "x_groq": {"id": "req_1"}}\n\n'
                  b'data: {"error": {"message": "overloaded mid-stream", "type": "internal_server_error"}}\n\n')
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frames)

    client = groq.Groq(api_key="k", http_client=httpx.Client(transport=httpx.MockTransport(handler)), max_retries=0)
    with pytest.raises(groq.APIError, match="overloaded mid-stream"):
        for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    call = only(log)
    assert call.error_type == "APIError" and call.chunk_count == 1 and call.response_id == "chatcmpl-1"


def test_timeout_and_connection_errors(fake, log):
    fake.fail(timeout=True)
    with pytest.raises(groq.APITimeoutError):
        fake.client("groq").chat.completions.create(model=MODEL, messages=MESSAGES)
    broken = groq.Groq(api_key="k", base_url="http://127.0.0.1:9", max_retries=0)  # nothing listens on port 9
    with pytest.raises(groq.APIConnectionError):
        broken.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert sorted(c.error_category for c in log.calls) == ["connection", "timeout"]


def test_sdk_retries_show_as_attempt(fake, log):
    fake.fail(429, retry_after=0, times=2)
    fake.client("groq", max_retries=3).chat.completions.create(model=MODEL, messages=MESSAGES)
    call = only(log)
    assert call.attempt == 3 and call.error_type is None and call.output_tokens == 5


def test_with_raw_response(fake, log):
    raw = fake.client("groq").chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_") and raw.parse().usage.completion_tokens == 5
    call = only(log)
    assert call.output_tokens == 5 and call.response_model == MODEL


def test_attribution(fake, log):
    client = fake.client("groq")
    with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["beta"], plan="pro"):
        for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    call = only(log)
    assert (call.user_id, call.customer_id, call.feature, call.tags) == ("u1", "acme", "search", ["beta"])
    assert call.metadata["plan"] == "pro" and call.metadata["queue_time_ms"] == 12.5


def test_api_key_and_content_not_kept_by_default(fake, log):
    client = fake.client("groq", api_key="gsk_secret123456789")
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    assert "gsk_secret123456789" not in text and "capital of France" not in text
    assert call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    client = fake.client("groq")
    with tokentrail.tracking() as log:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    for call in log.calls:
        assert call.input_messages == MESSAGES and call.output_text == "Hello from"


# -- fuzz: whatever the server sends, the app sees the same thing, and one record is made ----------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values, "completion_tokens": json_values, "queue_time": json_values,
    "prompt_tokens_details": json_values, "completion_tokens_details": json_values})
choices = json_values | st.lists(st.fixed_dictionaries({}, optional={
    "message": json_values, "delta": json_values, "finish_reason": json_values, "index": json_values}), max_size=3)
bodies = st.fixed_dictionaries({}, optional={"id": json_values, "model": json_values, "choices": choices, "usage": usages,
                                             "x_groq": json_values | st.fixed_dictionaries({}, optional={"usage": usages})})


@st.composite
def replies(draw):
    """(status, content-type, bytes): a JSON body, or SSE chunks — any of them torn at any byte."""
    if draw(st.booleans()):
        data = json.dumps(draw(bodies)).encode()
        kind = "application/json"
    else:
        events = draw(st.lists(bodies, max_size=4))
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        kind = "text/event-stream"
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from([200, 200, 200, 400, 429, 500])), kind, data


def outcome(client, stream):
    try:
        if stream:
            return "ok", [repr(chunk) for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)]
        return "ok", repr(client.chat.completions.create(model=MODEL, messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__, str(exc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_the_app_sees_the_same_results_and_one_record(reply, stream):
    status, kind, data = reply
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers={"content-type": kind}, content=data))
    client = groq.Groq(api_key="k", http_client=httpx.Client(transport=transport), max_retries=0)
    tokentrail.uninstrument()
    bare = outcome(client, stream)
    tokentrail.instrument("groq")
    with tokentrail.tracking() as log:
        tracked = outcome(client, stream)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == MODEL and call.provider == "groq"
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    assert (call.error_type is not None) == (bare[0] == "raised")
