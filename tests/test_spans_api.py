"""`set_llm_attributes`, `set_token_usage` and `Operation`: the OpenTelemetry-style helpers for code with no span at hand."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g

import tokentrail
from tokentrail.semconv import OUR_OPERATIONS


def test_set_llm_attributes_fills_the_block_open_here():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("acme", "draft-model"):
            assert tokentrail.set_llm_attributes(
                provider="openai", model="gpt-4o", operation=tokentrail.Operation.TEXT_COMPLETION,
                input_tokens=120, output_tokens=30, streaming=True, ttft_ms=80, provider_request_id="req-1",
                response_model="gpt-4o-2024-08-06", finish_reason="stop", temperature=0.1, max_tokens=64,
                stop_sequences=["END"], server_address="api.openai.com", server_port=443, user_id="u7",
                tags=["beta"], shard="eu-1", skipped=None)
    (call,) = log.calls
    assert (call.provider, call.request_model, call.operation) == ("openai", "gpt-4o", "text_completion")
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (120, 30, 150)
    assert call.stream is True and call.ttft_ms == 80 and call.response_id == "req-1"
    assert call.response_model == "gpt-4o-2024-08-06" and call.finish_reasons == ["stop"]
    assert call.request_params == {"temperature": 0.1, "max_tokens": 64, "stop_sequences": ["END"]}
    assert call.metadata == {"server_address": "api.openai.com", "server_port": 443, "shard": "eu-1"}
    assert call.user_id == "u7" and call.tags == ["beta"]
    assert call.cost_usd is not None  # priced under the model it was set to


def test_set_token_usage_in_a_decorated_function_sync_and_async():
    @tokentrail.llm_instrumented(provider="acme", model="acme-1")
    def ask(prompt):
        tokentrail.set_token_usage(input_tokens=11, output_tokens=4, cached_tokens=3)
        return "ok"

    @tokentrail.llm_instrumented(provider="acme", model="acme-1")
    async def ask_async(prompt):
        tokentrail.set_token_usage(input_tokens=21, output_tokens=5, reasoning_tokens=2)
        return "ok"

    with tokentrail.tracking() as log:
        ask("hi")
        asyncio.run(ask_async("hi"))
    first, second = log.calls
    assert (first.input_tokens, first.output_tokens, first.cache_read_tokens) == (11, 4, 3)
    assert (second.input_tokens, second.output_tokens, second.reasoning_tokens) == (21, 5, 2)


def test_what_is_set_wins_over_what_the_result_says():
    @tokentrail.llm_instrumented(provider="openai", model="gpt-4o")
    def ask():
        tokentrail.set_token_usage(input_tokens=99)
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 2}, "model": "gpt-4o-x"}

    with tokentrail.tracking() as log:
        ask()
    (call,) = log.calls
    assert (call.input_tokens, call.output_tokens) == (99, 2)


def test_outside_an_open_call_they_do_nothing_with_one_debug_line(caplog):
    caplog.set_level(logging.DEBUG, logger="tokentrail")
    with tokentrail.tracking() as log:
        assert tokentrail.set_llm_attributes(model="gpt-4o") is False
        with tokentrail.workflow("w"), tokentrail.track_tool_call("search"):
            assert tokentrail.set_token_usage(input_tokens=1) is False
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        assert tokentrail.set_token_usage(input_tokens=1) is False  # the block has closed
    assert [c.input_tokens for c in log.calls] == [None]
    lines = [r for r in caplog.records if r.name == "tokentrail" and "outside an open LLM call" in r.getMessage()]
    assert len(lines) == 3 and all(r.levelno == logging.DEBUG for r in lines)


def test_without_recording_they_do_nothing():
    assert tokentrail.set_llm_attributes(input_tokens=5) is False
    with tokentrail.track_llm_call("openai", "gpt-4o"):  # not recording: an inert block
        assert tokentrail.set_token_usage(input_tokens=5) is False


def test_a_bad_value_is_dropped_with_a_warning_and_the_earlier_one_stays(tt_warnings):
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            tokentrail.set_token_usage(input_tokens=10)
            tokentrail.set_token_usage(input_tokens="many", output_tokens=-1)
    (call,) = log.calls
    assert call.input_tokens == 10 and call.output_tokens is None
    assert any("input_tokens" in m for m in tt_warnings())


def test_content_set_this_way_follows_capture_content():
    tokentrail.init(store=None, instrument=False, capture_content=False)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            tokentrail.set_llm_attributes(prompt="my secret", completion="the answer")
    (call,) = log.calls
    assert call.input_messages is None and call.output_text is None and call.message_count == 1
    tokentrail.init(store=None, instrument=False, capture_content=True)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            tokentrail.set_llm_attributes(prompt="hello", completion="world")
    (call,) = log.calls
    assert call.input_messages == [{"role": "user", "content": "hello"}] and call.output_text == "world"


def test_the_innermost_call_gets_the_fields():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "outer") as outer:
            tokentrail.set_token_usage(input_tokens=1)
    assert log.calls[0].input_tokens == 1 and log.calls[0].id == outer.id


# -- Operation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CHAT", "TEXT_COMPLETION", "EMBEDDINGS", "GENERATE_CONTENT", "EXECUTE_TOOL",
                                  "CREATE_AGENT", "INVOKE_AGENT", "RETRIEVAL", "INVOKE_WORKFLOW"])
def test_operations_are_the_conventions_values(name):
    assert getattr(tokentrail.Operation, name) == getattr(g.GenAiOperationNameValues, name).value


@pytest.mark.parametrize("name", ["RERANK", "IMAGE_GENERATION", "SPEECH_TO_TEXT", "TEXT_TO_SPEECH", "MODERATION",
                                  "COUNT_TOKENS"])
def test_operations_the_convention_lacks_are_ours(name):
    value = getattr(tokentrail.Operation, name)
    assert value in OUR_OPERATIONS and not hasattr(g.GenAiOperationNameValues, name)


def test_an_unknown_operation_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        tokentrail.Operation.DANCE


def test_operation_values_are_plain_strings_the_record_keeps():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("cohere", "rerank-v3.5", operation=tokentrail.Operation.RERANK):
            pass
    assert log.calls[0].operation == "rerank" and type(log.calls[0].operation) is str


def test_operation_loads_the_convention_only_when_read():
    code = ("import sys, tokentrail; op = tokentrail.Operation; "
            "print('opentelemetry' in sys.modules); print(op.CHAT); print('opentelemetry' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "chat", "True"]
