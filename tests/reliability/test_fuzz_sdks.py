"""Malformed answers through the real SDKs, and malformed arguments to the manual API.

The fake provider (`tokentrail.testing.FakeProvider`) makes its usual, valid answer; hypothesis then mangles it —
fields deleted, values of the wrong type, out-of-range counts, key-shaped secrets in any string, SSE frames
dropped, repeated, torn or not JSON, the body cut at any byte, any status — and the same bytes are served to the
SDK twice: once with tokentrail off, once recorded. The application must see exactly the same result (or the
same exception), and exactly one record must be made, with sane values and no secret in it.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from tokentrail.record import to_dict
from tokentrail.testing import FakeProvider
from reliability_helpers import figure

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDKs warn about model names

SECRETS = ["sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2", "sk-ant-api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2", "AKIA" + "ABCDEFGHIJKLMNOP"]
SECRET_RE = re.compile("|".join(re.escape(s) for s in SECRETS))
COUNTERS = {"examples": 0}

JUNK_ATOMS = [None, True, False, 0, -1, 2**70, -(2**63), 1.5, -0.0, 1e308, "", "null", "NaN", "-1", "1e309", "x" * 300,
              "\u00e9\u4e2d", *SECRETS, f"Bearer {SECRETS[0]}", f"error: invalid key {SECRETS[1]}"]


def junk(rng, depth=0):
    """Any JSON value: wrong types, out-of-range numbers, key-shaped secrets, nested a little."""
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(3))]
    if depth < 2 and roll < 0.3:
        return {rng.choice(["input_tokens", "prompt_tokens", "text", "type", "id", "x"]): junk(rng, depth + 1)
                for _ in range(rng.randrange(3))}
    if roll < 0.4:
        return rng.randrange(-5, 10**6)
    return rng.choice(JUNK_ATOMS)


def paths(value, prefix=()):
    """Every place in a JSON value: (path, value)."""
    out = [(prefix, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*prefix, i))
    return out


def apply(value, rng, count):
    """`count` random edits (delete, replace with junk, wrap in a list, turn into a JSON string) of a JSON value."""
    for _ in range(count):
        places = paths(value)[1:]
        if not places:
            return junk(rng)
        path, old = rng.choice(places)
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        key, action = path[-1], rng.choice(["delete", "replace", "replace", "wrap", "stringify"])
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = junk(rng)
        elif action == "wrap":
            parent[key] = [old]
        else:
            parent[key] = json.dumps(old)
    return value


@st.composite
def manglings(draw):
    """What to do to one answer. The edits inside the JSON come from a seeded generator (hypothesis draws the
    seed): generating deep JSON with hypothesis itself costs more than the SDK call it feeds."""
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "edits": draw(st.integers(0, 4)),  # per frame (or the body)
        "frames": draw(st.lists(st.sampled_from(["keep", "keep", "keep", "drop", "repeat", "torn", "not-json"]), max_size=12)),
        "cut": draw(st.none() | st.none() | st.integers(0, 4000)),
        "status": draw(st.sampled_from([200] * 8 + [400, 401, 404, 413, 429, 500, 529])),
        "content_type": draw(st.sampled_from([None] * 6 + ["text/plain", "application/json", "text/event-stream"])),
    }


SERVED = {"bodies": 0, "streams": 0, "chunks": 0}  # mangled answers served, once per example


def mangle(reply, how):
    rng = random.Random(how["seed"])
    if reply.frames is None:
        try:
            reply.body = json.dumps(apply(json.loads(reply.body), rng, how["edits"])).encode()
        except ValueError:
            pass
        if how["cut"] is not None:
            reply.body = reply.body[: how["cut"]]
    else:
        frames = []
        for i, frame in enumerate(reply.frames):
            action = how["frames"][i] if i < len(how["frames"]) else "keep"
            head, _, data = frame.decode().rpartition("data: ")
            try:
                data = json.dumps(apply(json.loads(data), rng, how["edits"])) + "\n\n"
            except ValueError:
                pass
            frame = (head + "data: " + data).encode()
            if action == "drop":
                continue
            if action == "torn":
                frame = frame[: len(frame) // 2]
            elif action == "not-json":
                frame = b"data: {oops\n\n"
            frames.append(frame)
            if action == "repeat":
                frames.append(frame)
        if how["cut"] is not None:
            data = b"".join(frames)[: how["cut"] * 4]
            frames = [data[i:i + 64] for i in range(0, len(data), 64)]
        reply.frames = frames
        SERVED["streams"] += 1
        SERVED["chunks"] += len(frames)
    if reply.frames is None:
        SERVED["bodies"] += 1
    reply.status = how["status"]
    if how["content_type"]:
        reply.headers = {**reply.headers, "content-type": how["content_type"]}
    return reply


class Mangled(FakeProvider):
    """The fake's valid answer, mangled once per example and then served the same to every request."""

    how = None
    frozen = None

    def reply(self, method, path, headers, body):
        if self.frozen is None:
            self.frozen = mangle(super().reply(method, path, headers, body), self.how)
        return copy.copy(self.frozen)


EXAMPLES = 1000  # per SDK and mode: 10,000 in all
PROVIDER = Mangled()
CLIENTS = {"openai": PROVIDER.openai_client(api_key=SECRETS[0]), "anthropic": PROVIDER.anthropic_client(api_key=SECRETS[1])}
MESSAGES = [{"role": "user", "content": "say hi " + SECRETS[2]}]


def outcome(sdk, stream):
    client = CLIENTS[sdk]
    try:
        if sdk == "openai":
            if stream:
                return "ok", [repr(c) for c in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                                               stream_options={"include_usage": True})]
            return "ok", repr(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        if stream:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES) as events:
                return "ok", [repr(e) for e in events]
        return "ok", repr(client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - compared with what the app sees without tokentrail
        return "raised", type(exc).__name__, str(exc)


# Ids and names (ours or the provider's) are stored as they are; the secret check covers every other field.
# A key-shaped string *in* one of them is the xfail below.
NAME_FIELDS = {"id", "trace_id", "span_id", "parent_span_id", "provider", "operation", "request_model",
               "response_model", "response_id", "error_type", "error_category", "source", "sdk_version",
               "finish_reasons", "workflow_run_id", "name", "tool_call_id"}


def no_secret(call):
    stored = {k: v for k, v in to_dict(call).items() if k not in NAME_FIELDS}
    text = json.dumps(stored, default=str)
    assert not SECRET_RE.search(text), text  # masked wherever it was echoed


def check_record(call, sdk):
    assert call.provider == sdk and call.request_model in ("gpt-4o", "claude-sonnet-4-5")
    for name in ("input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        value = getattr(call, name)
        assert value is None or (type(value) is int and 0 <= value < 2**63), (name, value)
    for name in ("cost_usd", "duration_ms", "ttft_ms"):
        value = getattr(call, name)
        assert value is None or (isinstance(value, float) and math.isfinite(value) and value >= 0), (name, value)
    no_secret(call)


@pytest.fixture(scope="module")
def instrumented():
    yield
    tokentrail.uninstrument()


@pytest.mark.parametrize("sdk,stream", [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)])
def test_fuzz_malformed_answers_through_the_real_sdks(sdk, stream, instrumented):
    seen = {"examples": 0, "raised": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(how=manglings())
    def example(how):
        PROVIDER.how, PROVIDER.frozen = how, None
        tokentrail.uninstrument()
        expected = outcome(sdk, stream)
        tokentrail.instrument(sdk)  # the same bytes again (PROVIDER.frozen), recorded
        with tokentrail.tracking() as log:
            tracked = outcome(sdk, stream)
        assert tracked == expected  # the app sees exactly what it would without tokentrail
        calls = log.calls
        assert len(calls) == 1, calls
        check_record(calls[0], sdk)
        seen["examples"] += 1
        seen["raised"] += expected[0] == "raised"

    before = dict(SERVED)
    example()
    COUNTERS["examples"] += seen["examples"]
    chunks = SERVED["chunks"] - before["chunks"]
    figure(f"fuzz {sdk} {'stream' if stream else 'JSON'}",
           f"{seen['examples']:,} mangled answers{f' ({chunks:,} stream chunks)' if stream else ''}, {seen['raised']:,} "
           "of which made the SDK itself raise: the app saw the same as without tokentrail, one record each, no secret stored")
    if sdk == "anthropic" and stream:  # the last of the four
        total = SERVED["bodies"] + SERVED["chunks"]
        figure("fuzz through the real SDKs", f"{SERVED['bodies']:,} mangled JSON bodies + {SERVED['chunks']:,} mangled stream "
               f"chunks in {SERVED['streams']:,} streams = {total:,}")


def test_a_key_shaped_model_or_response_id_is_masked_too():
    """A key passed as the model by mistake, or echoed by a proxy as the response's id or model, is masked
    like any stored text (names are masked once per distinct name, ids each time)."""
    with tokentrail.tracking() as log:
        tokentrail.log_llm_call(provider="openai", model=SECRETS[0], usage={"input_tokens": 1, "output_tokens": 1})
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_request_id(SECRETS[1])
            span.set_response_model(SECRETS[2])
            span.set_finish_reasons([SECRETS[0]])
    assert len(log.calls) == 2
    for call in log.calls:
        assert not SECRET_RE.search(json.dumps(to_dict(call), default=str)), to_dict(call)
    assert log.calls[0].request_model.endswith("…[masked]") and log.calls[1].response_id.endswith("…[masked]")


values = (st.sampled_from(JUNK_ATOMS) | st.integers(-10, 2**70) | st.text(max_size=8) | st.just(object()) | st.just(float("nan"))
          | st.just(float("inf")) | st.just(b"bytes") | st.lists(st.sampled_from(JUNK_ATOMS), max_size=3)
          | st.dictionaries(st.text(max_size=5), st.sampled_from(JUNK_ATOMS), max_size=3))


def test_fuzz_malformed_manual_api_arguments():
    """Every manual-API entry point with arguments of any type: nothing raises into the app, each call is a record."""
    seen = {"n": 0}

    @settings(max_examples=1500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(provider=values, model=values, usage=values | st.dictionaries(st.sampled_from(
               ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "cache_read_input_tokens",
                "total_tokens", "reasoning_tokens", "cached_tokens"]), values, max_size=5),
           duration=values, attrs=st.dictionaries(st.sampled_from(["user_id", "customer_id", "feature", "session_id", "tags"]),
                                                   values, max_size=3),
           setters=st.lists(st.tuples(st.sampled_from(["set_tokens", "set_request_id", "set_response_model", "set_streaming",
                                                       "set_cache_hit", "set_attempt", "set_finish_reasons", "set_error",
                                                       "set_content", "add_metadata", "set_request_params"]),
                                      st.lists(values, max_size=2)), max_size=4))
    def example(provider, model, usage, duration, attrs, setters):
        with tokentrail.tracking() as log:
            tokentrail.log_llm_call(provider=provider, model=model, usage=usage, duration_ms=duration,
                                    prompt=SECRETS[0], response=[SECRETS[2]], **attrs)
            with tokentrail.track_llm_call(provider, model, **attrs) as span:
                for name, args in setters:
                    method = getattr(span, name)
                    try:
                        method(*args)
                    except TypeError:
                        pass  # a wrong number of arguments is Python's own error, not tokentrail's
        assert len(log.calls) == 2, log.calls
        for call in log.calls:
            no_secret(call)
        seen["n"] += 2

    example()
    COUNTERS["examples"] += seen["n"]
    figure("fuzz manual API", f"{seen['n']:,} calls with arguments of any type: none raised, {seen['n']:,} records")


@pytest.mark.parametrize("provider", [[], {}, ["openai"], {"name": "openai"}])
def test_an_unhashable_provider_is_still_recorded(provider):
    """Found by the fuzz below: a list or dict as the provider failed the record's build (lost, counted)."""
    with tokentrail.tracking() as log:
        tokentrail.log_llm_call(provider=provider, model="gpt-4o", tags=True)
        with tokentrail.track_llm_call(provider, ["gpt-4o"], operation=[1]):
            pass
    assert len(log.calls) == 2
