"""The real `openai` SDK, through its own HTTP layer, against tokentrail.testing's fake provider."""

import asyncio
import gc

import openai
import pydantic
import pytest

import tokentrail
from conftest import only
from tokentrail.testing import http_module

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]


def test_chat_create_records_everything(fake, log):
    client = fake.openai_client()
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50)
    assert isinstance(reply, openai.types.chat.ChatCompletion)  # the app's result is untouched
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("openai", "chat", "openai")
    assert (call.request_model, call.response_model, call.response_id) == ("gpt-4o", "gpt-4o-2024-08-06", reply.id)
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
    assert call.request_params == {"temperature": 0.2, "max_tokens": 50}
    assert call.finish_reasons == ["stop"] and call.message_count == 2 and call.tool_call_count == 0
    assert call.cost_usd == pytest.approx(tokentrail.cost("openai", "gpt-4o-2024-08-06", input_tokens=call.input_tokens, output_tokens=call.output_tokens).total_usd)
    assert call.sdk_version == openai.__version__ and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None


def test_cached_and_reasoning_tokens(fake, log):
    fake.settings.cache_read_tokens = 1024
    client = fake.openai_client()
    reply = client.chat.completions.create(model="o3-mini", messages=MESSAGES)
    call = only(log)
    assert call.cache_read_tokens == 1024 and call.input_tokens == reply.usage.prompt_tokens
    assert call.reasoning_tokens == reply.usage.completion_tokens_details.reasoning_tokens > 0
    priced = tokentrail.cost("openai", "o3-mini", input_tokens=call.input_tokens, output_tokens=call.output_tokens, cache_read_tokens=1024)
    assert call.cost_usd == pytest.approx(priced.total_usd)


def test_tools_and_n_choices(fake, log):
    client = fake.openai_client()
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)
    fake.settings.tool_call = False
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    with_tools, three = sorted(log.calls, key=lambda c: c.started_at)
    assert with_tools.tool_call_count == 1 and with_tools.finish_reasons == ["tool_calls"]
    assert three.finish_reasons == ["stop", "stop", "stop"] and three.request_params["n"] == 3


def test_stream_with_usage_keeps_the_sdk_type_and_records_timing(fake, log):
    fake.settings.frame_delay = 0.002
    client = fake.openai_client()
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    assert isinstance(stream, openai.Stream)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == fake.settings.reply
    call = only(log)
    assert call.stream and call.chunk_count == 8 and call.ttft_ms > 0
    assert call.duration_ms >= call.ttft_ms + 10  # 7 frame delays after the first chunk
    assert call.input_tokens > 0 and call.output_tokens == 5 and call.cost_usd > 0
    assert call.finish_reasons == ["stop"] and call.response_id.startswith("chatcmpl-")
    assert call.metadata["stream_duration_ms"] > 0 and call.metadata["chunks_per_s"] > 0
    assert "stream_incomplete" not in call.metadata


def test_stream_without_usage_gets_estimated_tokens_flagged_and_a_cost(fake, log):
    """No `include_usage`: the provider reports no tokens. The record estimates them from the request and
    the streamed text (estimate.py; chars/4 here, where no tiktoken encoding is available offline)."""
    client = fake.openai_client()
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass
    call = only(log)
    assert call.metadata["tokens_estimated"] == "chars/4" and call.chunk_count == 7
    # "be brief\nWhat is the capital of France?" = 39 chars -> 10, + 2 messages x 4 + 3; the reply's 29 chars -> 8
    assert (call.input_tokens, call.output_tokens) == (21, 8)
    assert call.cost_usd == tokentrail.cost("openai", "gpt-4o", input_tokens=21, output_tokens=8).total_usd


def test_stream_with_usage_is_not_estimated(fake, log):
    client = fake.openai_client()
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}):
        pass
    call = only(log)
    assert "tokens_estimated" not in (call.metadata or {}) and call.input_tokens is not None


def test_stream_closed_early_with_block_and_garbage_collected(fake, log):
    client = fake.openai_client()
    with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        next(iter(stream))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # never read
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    assert calls["gpt-4o"].metadata["stream_incomplete"] is True and calls["gpt-4o"].chunk_count == 1
    assert calls["gpt-4o-mini"].metadata["stream_incomplete"] is True and calls["gpt-4o-mini"].chunk_count == 0


def test_parse_and_stream_helpers(fake, log):
    class Answer(pydantic.BaseModel):
        city: str

    fake.settings.reply = '{"city": "Paris"}'
    client = fake.openai_client()
    parsed = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=Answer)
    assert parsed.choices[0].message.parsed.city == "Paris"
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == fake.settings.reply
    first, second = sorted(log.calls, key=lambda c: c.started_at)
    assert first.request_params["response_format"] == "json_schema" and not first.stream
    assert second.stream and second.output_tokens == final.usage.completion_tokens


def test_responses_api_plain_and_streamed(fake, log):
    client = fake.openai_client()
    response = client.responses.create(model="o4-mini", input="Summarize.", instructions="be brief", reasoning={"effort": "low"})
    with client.responses.stream(model="gpt-4o", input="Summarize.") as stream:
        for _ in stream:
            pass
        streamed = stream.get_final_response()
    plain, events = sorted(log.calls, key=lambda c: c.started_at)
    assert plain.operation == "chat" and plain.response_id == response.id
    assert plain.reasoning_tokens == response.usage.output_tokens_details.reasoning_tokens > 0
    assert plain.message_count == 2 and plain.request_params["reasoning"] == "low"
    assert plain.finish_reasons == ["completed"]
    assert events.stream and events.output_tokens == streamed.usage.output_tokens and events.cost_usd > 0


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # audio.translations, in the SDK
def test_other_endpoints_and_operations(fake, log):
    client = fake.openai_client()
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    client.images.generate(model="dall-e-3", prompt="a cat", n=1, size="1024x1024")
    client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3"))
    client.audio.translations.create(model="whisper-1", file=("a.mp3", b"ID3"))
    client.audio.speech.create(model="tts-1", voice="alloy", input="Hello")
    client.moderations.create(input="hello")
    client.models.list()  # not an LLM call: not recorded
    by_op = {}
    for call in log.calls:
        by_op.setdefault(call.operation, []).append(call)
    assert sorted(by_op) == ["embeddings", "image_generation", "moderation", "speech_to_text", "text_completion", "text_to_speech"]
    assert by_op["embeddings"][0].input_tokens > 0 and by_op["embeddings"][0].cost_usd > 0
    assert by_op["text_completion"][0].output_tokens == 5
    assert by_op["image_generation"][0].request_params == {"size": "1024x1024", "n": 1}
    assert {c.metadata.get("audio_seconds") for c in by_op["speech_to_text"]} == {3}
    assert by_op["text_to_speech"][0].request_model == "tts-1"
    assert by_op["moderation"][0].metadata == {"flagged": False, "server_address": "api.openai.com", "server_port": 443}


def test_async_client_create_and_stream(fake, log):
    async def main():
        client = fake.async_openai_client()
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        assert isinstance(stream, openai.AsyncStream)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "Hello from the fake provider."
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.output_tokens == streamed.output_tokens == 5 and streamed.chunk_count == 8 and streamed.ttft_ms > 0


def test_providers_from_the_client(fake, log):
    http = http_module("openai")
    azure = openai.AzureOpenAI(api_key="k", api_version="2024-06-01", azure_endpoint="https://acme.openai.azure.com",
                               http_client=http.Client(transport=fake.transport()), max_retries=0)
    azure.chat.completions.create(model="my-prod-deployment", messages=MESSAGES)
    for base in ("https://api.groq.com/openai/v1", "https://api.deepseek.com/v1", "http://localhost:11434/v1", "http://127.0.0.1:8000/v1"):
        client = openai.OpenAI(api_key="k", base_url=base, http_client=http.Client(transport=fake.transport()), max_retries=0)
        client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES)
    assert sorted(c.provider for c in log.calls) == ["azure.ai.openai", "deepseek", "groq", "ollama", "openai"]
    azure_call = next(c for c in log.calls if c.provider == "azure.ai.openai")
    assert azure_call.request_model == "my-prod-deployment"


@pytest.mark.parametrize(
    "status, exc_type, category",
    [(429, openai.RateLimitError, "rate_limit"), (500, openai.InternalServerError, "server"),
     (401, openai.AuthenticationError, "authentication"), (400, openai.BadRequestError, "invalid_request"),
     (404, openai.NotFoundError, "not_found")],
)
def test_status_errors_recorded_and_reraised_unchanged(fake, log, status, exc_type, category):
    fake.fail(status, message="fake trouble")
    client = fake.openai_client()
    with pytest.raises(exc_type) as raised:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code) == (exc_type.__name__, category, status)
    assert "fake trouble" in call.error_message and call.provider == "openai" and call.cost_usd == 0.0
    assert raised.value.status_code == status


def test_timeout_and_connection_errors(fake, log):
    client = fake.openai_client()
    fake.fail(timeout=True)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    broken = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0)  # nothing listens on port 9
    with pytest.raises(openai.APIConnectionError):
        broken.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sorted(c.error_category for c in log.calls) == ["connection", "timeout"]


def test_sdk_retries_show_as_attempt(fake, log):
    fake.fail(429, retry_after=0, times=2)
    client = fake.openai_client(max_retries=3)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    call = only(log)
    assert call.attempt == 3 and call.error_type is None and call.output_tokens == 5


def test_cancellation_is_recorded(fake, log):
    fake.settings.latency = 1.0

    async def main():
        client = fake.async_openai_client()
        task = asyncio.ensure_future(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert only(log).error_category == "cancelled"


def test_with_raw_response(fake, log):
    client = fake.openai_client()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().usage.completion_tokens == 5
    call = only(log)
    assert call.output_tokens == 5 and call.response_model == "gpt-4o-2024-08-06"


def test_untrack_makes_the_wrapper_a_pass_through(fake, log):
    client = fake.openai_client()
    tokentrail.untrack()
    with tokentrail.tracking() as inner:
        pass
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # still inside the outer tracking() block
    assert len(log.calls) == 1 and inner.calls == []


def test_privacy_keys_headers_and_content(fake, log):
    client = openai.OpenAI(api_key="sk-secret-123", base_url="https://api.openai.com/v1", max_retries=0,
                           http_client=http_module("openai").Client(transport=fake.transport()),
                           default_headers={"X-Team-Token": "tok-456"})
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"Authorization": "Bearer sk-other-789"},
                                   extra_body={"user": "u1"})
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    for secret in ("sk-secret-123", "tok-456", "sk-other-789", "capital of France"):
        assert secret not in text
    assert call.message_count == 2 and call.input_messages is None and call.output_text is None


def test_the_request_is_read_as_it_was_sent(fake, log):
    """The worker reads the SDK's own request body, not its bytes: changing the caller's arguments after
    the call does not reach the record; a body with `extra_body` merged in is read from what was sent."""
    client = fake.openai_client()
    messages, stop = [dict(m) for m in MESSAGES], ["END"]
    client.chat.completions.create(model="gpt-4o", messages=messages, stop=stop, temperature=0.3)
    messages.append({"role": "user", "content": "And of Spain?"})
    stop.append("STOP")
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_body={"user": "end-user-7", "seed": 42})
    first, second = log.calls
    assert first.message_count == 2 and first.request_params == {"temperature": 0.3, "stop": ["END"]}
    assert second.user_id == "end-user-7" and second.request_params == {"seed": 42} and second.message_count == 2


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    with tokentrail.tracking() as log:
        fake.openai_client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    call = only(log)
    assert call.input_messages == MESSAGES and call.output_text == "Hello from"


def test_manual_block_around_an_sdk_call_is_recorded_once(fake, log):
    client = fake.openai_client()
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        span.set_tokens(input=1, output=1)
    call = only(log)
    assert call.source == "manual" and call.total_tokens == 2


def test_the_user_parameter_fills_user_id_unless_attribution_names_one(fake, log):
    client = fake.openai_client()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="end-user-7")
    with tokentrail.attributes(user_id="u-from-app"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="end-user-7")
    client.responses.create(model="gpt-4o", input="hi", safety_identifier="hashed-9")
    first, second, third = log.calls
    assert (first.user_id, second.user_id, third.user_id) == ("end-user-7", "u-from-app", "hashed-9")
    assert "default_user_id" not in (first.metadata or {})


def test_a_raw_stream_parsed_then_dropped_is_still_followed_to_its_end(fake, log):
    """`with_raw_response` then `parse()`, the raw wrapper dropped (as LiteLLM does): the stream lives on."""
    client = fake.openai_client()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                            stream_options={"include_usage": True})
    stream = raw.parse()
    del raw
    gc.collect()
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake provider."
    call = only(log)
    assert call.chunk_count == 8 and "stream_incomplete" not in (call.metadata or {}) and call.output_tokens == 5


def test_malformed_tool_calls_and_indexes_still_give_a_full_record():
    """Shapes a provider should never send, read without losing the record's other fields."""
    from tokentrail.instrument import openai as adapter

    fields, _ = adapter.chat_response({"id": "c1", "model": "gpt-4o", "choices": [{"message": {"tool_calls": 5}, "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert (fields["response_id"], fields["tool_call_count"], fields["input_tokens"]) == ("c1", 0, 3)
    fields, text = adapter.chat_chunks([{"id": "c2", "choices": [{"index": {"bad": 1}, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
                                        {"id": "c2", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}])
    assert fields["finish_reasons"] == ["stop"] and fields["input_tokens"] == 2
