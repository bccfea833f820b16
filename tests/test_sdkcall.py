"""The worker's fast paths read exactly what the slow ones did: SSE bodies as the SDKs decode them,
streams with their text chunks left unparsed, JSON parsed in one go, rows encoded as before."""

from __future__ import annotations

import datetime
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokentrail.instrument import anthropic as anthropic_adapter
from tokentrail.instrument import openai as openai_adapter
from tokentrail.instrument.sdkcall import _events, _parse_all, parse_json, sse_data
from tokentrail.sinks import schema

PIECES = [b"data: ", b"data:", b"event: ", b"id: ", b"retry: 5", b": c", b"x", b"{}", b"\n", b"\n\n", b"\r\n",
          b"\r", b"data: [DONE]", b"\n\n\n", b'data: {"a": 1}\n\n', b"event: ping\ndata: {}\n\n"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=16))
def test_sse_data_reads_what_the_sdks_decoders_read(pieces):
    from openai._streaming import SSEDecoder as OpenAIDecoder
    from anthropic._streaming import SSEDecoder as AnthropicDecoder

    raw = b"".join(pieces)
    ours = [data for data in sse_data(raw) if data]  # an event without data is no chunk either way
    for decoder in (OpenAIDecoder, AnthropicDecoder):
        assert ours == [event.data.encode() for event in decoder().iter_bytes(iter([raw])) if event.data]


def test_sse_data_common_shapes_and_torn_end():
    assert sse_data(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [b'{"a":1}', b"[DONE]"]
    assert sse_data(b"event: x\ndata: 1\n\nevent: y\ndata: 2\n\nevent: z\ndata: 3") == [b"1", b"2"]
    assert sse_data(b"data: a\r\n\r\ndata: b\r\n\r\n") == [b"a", b"b"]
    assert sse_data(b"data: a\ndata: b\n\n") == [b"a\nb"]


def test_parse_all_sets_done_aside_and_falls_back_one_by_one():
    assert _parse_all([b'{"a":1}', b"[2]", b"[DONE]"]) == [{"a": 1}, [2], None]
    assert _parse_all([b'{"a":1}', b"torn{", b"3"]) == [{"a": 1}, None, 3]
    assert _parse_all([b"1,2", b"3"]) == [None, 3]  # not one value each: read one by one
    assert parse_json("[1]") == [1] and parse_json(b"\xff") is None and parse_json({"a": 1}) == {"a": 1}


def _openai_chunks(rng: random.Random, compact: bool) -> list[bytes]:
    dumps = (lambda o: json.dumps(o, separators=(",", ":"))) if compact else json.dumps
    chunks = []
    for _ in range(rng.randint(1, 30)):
        choices = []
        for index in range(rng.choice([1, 1, 1, 2])):
            delta = rng.choice([{"content": "w"}, {"content": 'tricky "finish_reason":null}]}'}, {},
                                {"tool_calls": [{"index": rng.randint(0, 1), "function": {"arguments": "x"}}]}])
            choices.append({"index": index, "delta": delta, "logprobs": None,
                            "finish_reason": rng.choice([None, None, None, "stop"])})
        chunk = {"id": "c", "model": "m", "choices": choices}
        if rng.random() < 0.5:
            chunk["usage"] = None
        if rng.random() < 0.05:
            chunk["usage"] = {"prompt_tokens": 1, "completion_tokens": 2}
        chunks.append(dumps(chunk).encode())
    return chunks


@pytest.mark.parametrize("seed", range(200))
def test_openai_chunks_left_unparsed_change_no_field(seed):
    rng = random.Random(seed)
    payloads = _openai_chunks(rng, compact=seed % 2 == 0)
    everything = [e for e in _parse_all(payloads) if e is not None]
    parsed, skipped = _events(payloads, openai_adapter.chat_chunks.sse_plan)
    assert len(parsed) + skipped == len(payloads)
    assert openai_adapter.chat_chunks(parsed)[0] == openai_adapter.chat_chunks(everything)[0]
    assert openai_adapter.chat_chunks(everything) == openai_adapter.chat_chunks(_general(everything))


def test_anthropic_text_deltas_left_unparsed_only_count():
    events = [{"type": "message_start", "message": {"id": "m", "model": "claude", "usage": {"input_tokens": 3, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              {"type": "ping"}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "w"}}] * 20
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}},
               {"type": "message_stop"}]
    for dumps in (json.dumps, lambda o: json.dumps(o, separators=(",", ":"))):
        payloads = [dumps(e).encode() for e in events]
        parsed, skipped = _events(payloads, anthropic_adapter.messages_chunks.sse_plan)
        assert skipped == 20
        fast, full = anthropic_adapter.messages_chunks(parsed)[0], anthropic_adapter.messages_chunks(events)[0]
        assert {**fast, "chunk_count": fast["chunk_count"] + skipped} == full
        assert anthropic_adapter.messages_chunks(events) == anthropic_adapter.messages_chunks(_general(events))


def test_row_encoders_match_the_standard_ones():
    utc = datetime.timezone.utc
    rng = random.Random(1)
    for _ in range(20000):
        moment = datetime.datetime.fromtimestamp(rng.choice([rng.uniform(-3, 3), rng.uniform(-1e9, 4e9),
                                                            rng.randint(0, 2**31) + 0.999999]), utc)
        assert schema._iso(moment) == moment.isoformat(timespec="microseconds")
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5, 6)
    assert schema._iso(naive) == naive.isoformat(timespec="microseconds")
    # orjson and the standard encoder (what orjson refuses, as an int past 64 bits) write the same values.
    for value in ({"a": 1, "b": [1, 2, {"c": "é"}]}, ["stop"], "x", {"t": naive}, {1: 2, True: 3}, (1.5, None)):
        assert json.loads(schema._encode_json(value)) == json.loads(schema._standard_json(value))
        assert json.loads(schema._encode_json([value, 2**70])) == [json.loads(schema._standard_json(value)), 2**70]
    assert json.loads(schema._encode_json({"t": naive})) == {"t": "2024-01-02T03:04:05.000006"}
    for value in ({"f": float("nan"), "g": [float("inf")]}, {"f": float("nan"), "g": [float("inf")], "big": 2**70}):
        assert json.loads(schema._encode_json(value)) == {**value, "f": None, "g": [None]}
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        schema._encode_json(loop)


class _Mapping(dict):
    """A dict the fast paths do not take (they test `type(x) is dict`): read the general way."""


def _general(value):
    if type(value) is dict:
        return _Mapping({k: _general(v) for k, v in value.items()})
    if type(value) is list:
        return [_general(v) for v in value]
    return value


USAGE_VALUES = [None, 0, 1, 5, -1, 2.0, 2.5, "7", "x", True, 2**70, {}, {"cached_tokens": 3}, {"reasoning_tokens": "2"}, []]
USAGE_KEYS = ["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details", "input_tokens",
              "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_token_count",
              "promptTokenCount", "cache_read_tokens", "candidatesTokenCount"]


def test_usage_fast_paths_read_as_the_general_path():
    from tokentrail.usage import normalize_usage

    rng = random.Random(0)
    for _ in range(20000):
        usage = {k: rng.choice(USAGE_VALUES) for k in rng.sample(USAGE_KEYS, rng.randint(0, 7))}
        assert normalize_usage(usage) == normalize_usage(_general(usage)), usage
    ours = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
    for _ in range(5000):  # our own spelling only (the manual API, Ollama): its own fast path
        usage = {k: rng.choice(USAGE_VALUES) for k in rng.sample(ours, rng.randint(0, 5))}
        assert normalize_usage(usage) == normalize_usage(_general(usage)), usage


def test_fields_of_reads_a_models_fields_extra_ones_too_and_leaves_other_values_alone():
    import ollama
    import pydantic
    from tokentrail.shapes import fields_of, pick

    reply = ollama.ChatResponse(model="m", done=True, eval_count=3, message={"role": "assistant", "content": "hi"})
    fields = fields_of(reply)
    assert type(fields) is dict and fields["eval_count"] == 3
    for name in ("model", "eval_count", "prompt_eval_count", "done_reason", "not_a_field"):
        assert pick(fields, name) == pick(reply, name)

    class Open(pydantic.BaseModel):  # a model that keeps fields it does not declare (as some SDKs' do)
        model_config = pydantic.ConfigDict(extra="allow")
        model: str

    assert fields_of(Open(model="m", prompt_eval_cached_count=2)) == {"model": "m", "prompt_eval_cached_count": 2}
    for other in ({"a": 1}, [1], "text", None, object):
        assert fields_of(other) is other


def test_reader_fast_paths_read_as_the_general_path():
    from tokentrail.testing import FakeProvider

    fake = FakeProvider(reply="Hello there", cache_read_tokens=7)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    for body in ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                 {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "n": 2}):
        data = json.loads(fake.reply("POST", "/v1/chat/completions", {}, json.dumps(body).encode()).body)
        assert openai_adapter.chat_response(data) == openai_adapter.chat_response(_general(data))
        for odd in ({**data, "choices": {"a": 1}}, {**data, "choices": [1]}, {**data, "choices": [{"message": "x"}]}):
            try:
                expected = openai_adapter.chat_response(_general(odd))
            except Exception as exc:  # noqa: BLE001
                with pytest.raises(type(exc)):
                    openai_adapter.chat_response(odd)
            else:
                assert openai_adapter.chat_response(odd) == expected
        assert openai_adapter.chat_request(body) == openai_adapter.chat_request(_general(body))
    for body in ({"model": "claude-haiku-4-5", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]},
                 {"model": "claude-haiku-4-5", "max_tokens": 9, "temperature": 0.1, "messages": [], "tools": tools}):
        data = json.loads(fake.reply("POST", "/v1/messages", {}, json.dumps(body).encode()).body)
        assert anthropic_adapter.messages_response(data) == anthropic_adapter.messages_response(_general(data))
        assert anthropic_adapter.messages_request(body) == anthropic_adapter.messages_request(_general(body))
