"""The real `anthropic` SDK, through its own HTTP layer, against tokentrail.testing's fake provider."""

import asyncio
import gc

import anthropic
import pytest

import tokentrail
from conftest import only
from tokentrail.testing import http_module

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_messages_create_adds_cache_to_input(fake, log):
    fake.settings.cache_read_tokens = 2000
    fake.settings.cache_write_tokens = 300
    client = fake.anthropic_client()
    message = client.messages.create(model=MODEL, max_tokens=100, system="be brief", messages=MESSAGES, stop_sequences=["END"])
    assert isinstance(message, anthropic.types.Message)
    call = only(log)
    usage = message.usage
    assert (call.provider, call.operation, call.source) == ("anthropic", "chat", "anthropic")
    assert call.input_tokens == usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert (call.cache_read_tokens, call.cache_write_tokens, call.output_tokens) == (2000, 300, usage.output_tokens)
    assert call.request_params == {"max_tokens": 100, "stop_sequences": ["END"]}
    assert call.message_count == 2 and call.finish_reasons == ["end_turn"] and call.response_id == message.id
    priced = tokentrail.cost("anthropic", MODEL, input_tokens=call.input_tokens, output_tokens=call.output_tokens,
                             cache_read_tokens=2000, cache_write_tokens=300)
    assert call.cost_usd == pytest.approx(priced.total_usd)


def test_tool_use_counted(fake, log):
    client = fake.anthropic_client()
    tools = [{"name": "lookup", "description": "find", "input_schema": {"type": "object", "properties": {}}}]
    client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, tools=tools)
    call = only(log)
    assert call.tool_call_count == 1 and call.finish_reasons == ["tool_use"]


def test_stream_true_and_the_stream_helper(fake, log):
    fake.settings.cache_read_tokens = 100
    client = fake.anthropic_client()
    events = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    assert isinstance(events, anthropic.Stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == fake.settings.reply
    raw, helper = sorted(log.calls, key=lambda c: c.started_at)
    for call in (raw, helper):
        assert call.stream and call.ttft_ms > 0 and call.chunk_count == len(kinds)
        assert call.output_tokens == final.usage.output_tokens and call.cache_read_tokens == 100
        assert call.input_tokens == final.usage.input_tokens + 100 and call.finish_reasons == ["end_turn"]
        assert call.response_id.startswith("msg_") and call.cost_usd > 0


def test_stream_dropped_unread_is_incomplete(fake, log):
    client = fake.anthropic_client()
    client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    gc.collect()
    call = only(log)
    assert call.metadata["stream_incomplete"] is True and call.chunk_count == 0


def test_count_tokens_is_not_billed(fake, log):
    client = fake.anthropic_client()
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    call = only(log)
    assert call.operation == "count_tokens" and call.cost_usd == 0.0
    assert call.input_tokens is None and call.metadata["counted_input_tokens"] == counted.input_tokens


def test_beta_messages(fake, log):
    fake.anthropic_client().beta.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, betas=["token-efficient-tools-2025-02-19"])
    assert only(log).output_tokens == 5


def test_async_client(fake, log):
    async def main():
        client = fake.async_anthropic_client()
        await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            return "".join([t async for t in stream.text_stream])

    assert asyncio.run(main()) == "Hello from the fake provider."
    plain, streamed = sorted(log.calls, key=lambda c: c.stream)
    assert plain.output_tokens == streamed.output_tokens == 5 and streamed.ttft_ms > 0


def test_bedrock_and_vertex_clients(fake, log):
    http = http_module("anthropic")
    bedrock = anthropic.AnthropicBedrock(api_key="k", aws_region="us-east-1", max_retries=0,
                                         http_client=http.Client(transport=fake.transport("anthropic")))
    bedrock.messages.create(model="anthropic.claude-3-haiku-20240307-v1:0", max_tokens=10, messages=MESSAGES)
    vertex = anthropic.AnthropicVertex(region="us-east5", project_id="p", access_token="t", max_retries=0,
                                       http_client=http.Client(transport=fake.transport("anthropic")))
    vertex.messages.create(model="claude-3-5-sonnet-v2@20241022", max_tokens=10, messages=MESSAGES)
    calls = {c.provider: c for c in log.calls}
    assert set(calls) == {"aws.bedrock", "gcp.vertex_ai"}
    assert calls["aws.bedrock"].cost_usd == pytest.approx(tokentrail.cost(
        "bedrock", "anthropic.claude-3-haiku-20240307-v1:0",
        input_tokens=calls["aws.bedrock"].input_tokens, output_tokens=calls["aws.bedrock"].output_tokens).total_usd)


@pytest.mark.parametrize("status, exc_type, category", [(429, anthropic.RateLimitError, "rate_limit"),
                                                        (529, anthropic.InternalServerError, "server"),
                                                        (401, anthropic.AuthenticationError, "authentication")])
def test_errors(fake, log, status, exc_type, category):
    fake.fail(status)
    with pytest.raises(exc_type):
        fake.anthropic_client().messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    call = only(log)
    assert (call.error_category, call.status_code, call.provider) == (category, status, "anthropic")


def test_retries_counted(fake, log):
    fake.fail(529, times=1)
    fake.anthropic_client(max_retries=2).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert only(log).attempt == 2


def test_api_key_never_recorded(fake, log):
    client = anthropic.Anthropic(api_key="sk-ant-secret", max_retries=0,
                                 http_client=http_module("anthropic").Client(transport=fake.transport("anthropic")))
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers={"x-api-key": "sk-ant-other"})
    text = repr(tokentrail.record.to_dict(only(log)))
    assert "sk-ant-secret" not in text and "sk-ant-other" not in text and "capital" not in text
