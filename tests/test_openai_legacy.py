"""The legacy `openai` SDK (0.27 / 0.28: `openai.ChatCompletion.create` & co.), through its own HTTP layers
(`requests` for `create`, `aiohttp` for `acreate`), against tokentrail.testing's fake provider over real HTTP
on 127.0.0.1.

Runs in an environment of its own (openai 0.28 cannot sit beside the 1.x SDKs); skipped where openai >= 1.0
is installed:

    pip install "openai==0.28.1" numpy pytest hypothesis aiohttp && pip install -e .
    python -m pytest -q tests/test_openai_legacy.py

(numpy: the SDK decodes `Embedding.create`'s default base64 vectors with it; that one test is skipped without
it. The same tests pass on openai 0.27.0, the adapter's minimum.)
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import socketserver
from importlib import metadata

import pytest

openai = pytest.importorskip("openai")
VERSION = metadata.version("openai")  # `openai.__version__` came with 0.27.x, after 0.27.0
if not VERSION.startswith("0."):
    pytest.skip("the legacy openai SDK (< 1.0) is not the one installed", allow_module_level=True)

import openai.api_requestor  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import tokentrail  # noqa: E402
from conftest import only  # noqa: E402
from tokentrail.instrument import openai as adapter, openai_legacy  # noqa: E402
from tokentrail.testing import FakeProvider, Reply  # noqa: E402

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
REPLY = "Hello from the fake provider."


class Scripted(FakeProvider):
    """The fake provider; or, while `script` is set, that one reply to every request (a torn body, an error
    event in the middle of a stream: what a real server sends on a bad day)."""

    script: Reply | None = None

    def reply(self, method, path, headers, body):
        if self.script is None:
            return super().reply(method, path, headers, body)
        self.requests.append((method, path))
        return self.script


@pytest.fixture(scope="module")
def served():
    # The fake's HTTP server writes a response in many small pieces; with Nagle's algorithm on, a client that
    # keeps the connection alive (requests) waits ~40 ms for a delayed ACK on every response.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socketserver.StreamRequestHandler, "disable_nagle_algorithm", True)
        server = Scripted()
        with server.serve() as url:
            yield server, url


@pytest.fixture
def fake(served, monkeypatch):
    """The module's fake server, reset, with the SDK's module-level settings pointing at it."""
    server, url = served
    server.settings = type(server.settings)()
    server.script = None
    server.requests.clear()
    for name, value in (("api_base", f"{url}/v1"), ("api_key", "sk-legacy-secret-123"), ("api_type", "open_ai"),
                        ("api_version", None)):
        monkeypatch.setattr(openai, name, value)
    server.url = url
    return server


def priced(call):
    return tokentrail.cost(call.provider, call.response_model, input_tokens=call.input_tokens, output_tokens=call.output_tokens or 0,
                           cache_read_tokens=call.cache_read_tokens or 0, reasoning_tokens=call.reasoning_tokens or 0).total_usd


def sse(*events):
    return [b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events]


def chunk(content=None, finish=None):
    delta = {} if content is None else {"content": content}
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# -- the adapter: one name for both majors ------------------------------------------------------------


def test_the_openai_adapter_takes_the_legacy_patch_table():
    assert adapter.MIN_VERSION == (0, 27) and adapter.call_of.__qualname__.startswith("legacy_call_of")
    assert [(p.owner, p.attribute) for p in adapter.PATCHES] == [("APIRequestor", "request"), ("APIRequestor", "arequest")]
    assert tokentrail.available()["openai"] == VERSION
    row = next(r for r in tokentrail.instrument.status() if r["name"] == "openai")
    assert (row["minimum"], row["installed"], row["supported"], row["patched"]) == ("0.27", VERSION, True, False)
    original = openai.api_requestor.APIRequestor.__dict__["request"]
    assert tokentrail.instrument("openai") == {"openai": VERSION}
    assert openai.api_requestor.APIRequestor.__dict__["request"] is not original
    tokentrail.uninstrument("openai")
    assert openai.api_requestor.APIRequestor.__dict__["request"] is original


def test_paths_name_the_endpoint_and_the_deployment():
    split = openai_legacy.split_path
    assert split("/chat/completions") == ("/chat/completions", None)
    assert split("/engines/text-davinci-003/completions") == ("/completions", "text-davinci-003")
    assert split("/openai/deployments/my%2Fchat/chat/completions?api-version=2023-05-15") == ("/chat/completions", "my/chat")
    assert split("/openai/deployments/chat/completions?api-version=1") == ("/completions", "chat")  # a deployment named "chat"


def test_provider_from_the_requestor():
    requestor = openai.api_requestor.APIRequestor
    assert openai_legacy.provider_of(requestor("k", api_base="https://api.openai.com/v1")) == "openai"
    assert openai_legacy.provider_of(requestor("k", api_base="https://api.groq.com/openai/v1")) == "groq"
    assert openai_legacy.provider_of(requestor("k", api_base="http://localhost:11434/v1")) == "ollama"
    for kind in ("azure", "azure_ad"):
        assert openai_legacy.provider_of(requestor("k", api_base="https://acme.example", api_type=kind)) == "azure.ai.openai"


# -- chat ------------------------------------------------------------------------------------------------


def test_chat_create_records_everything(fake, log):
    reply = openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50)
    assert isinstance(reply, openai.openai_object.OpenAIObject) and reply.choices[0].message.content == REPLY
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("openai", "chat", "openai")
    assert (call.request_model, call.response_model, call.response_id) == ("gpt-4o", "gpt-4o-2024-08-06", reply.id)
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
    assert call.request_params == {"temperature": 0.2, "max_tokens": 50}
    assert call.finish_reasons == ["stop"] and call.message_count == 2 and call.tool_call_count == 0
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.sdk_version == VERSION and call.attempt == 1 and not call.stream
    assert call.duration_ms > 0 and call.error_type is None and call.status_code is None


def test_cached_and_reasoning_tokens(fake, log):
    fake.settings.cache_read_tokens = 1024
    reply = openai.ChatCompletion.create(model="o3-mini", messages=MESSAGES)
    call = only(log)
    assert call.cache_read_tokens == 1024 and call.input_tokens == reply.usage.prompt_tokens
    assert call.reasoning_tokens == reply.usage.completion_tokens_details.reasoning_tokens == 8
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0


def test_tools_n_choices_and_functions(fake, log):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    openai.ChatCompletion.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, tool_choice="auto")
    fake.settings.tool_call = False
    openai.ChatCompletion.create(model="gpt-4o-mini", messages=MESSAGES, n=3, seed=7)
    with_tools, three = sorted(log.calls, key=lambda c: c.started_at)
    assert with_tools.tool_call_count == 1 and with_tools.finish_reasons == ["tool_calls"]
    assert with_tools.request_params == {"tool_choice": "auto"}
    assert three.finish_reasons == ["stop"] * 3 and three.request_params == {"n": 3, "seed": 7}


def test_stream_keeps_the_sdk_objects_and_gets_estimated_tokens(fake, log):
    """0.x streams report no usage: the record estimates the tokens (flagged) from the request and the text."""
    stream = openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True)
    pieces = list(stream)
    assert all(isinstance(p, openai.openai_object.OpenAIObject) for p in pieces)
    assert "".join(p.choices[0].delta.get("content", "") for p in pieces) == REPLY
    call = only(log)
    assert call.stream and call.chunk_count == 7 and 0 < call.ttft_ms <= call.duration_ms
    assert call.metadata["tokens_estimated"] == "chars/4" and (call.input_tokens, call.output_tokens) == (21, 8)
    assert call.cost_usd == tokentrail.cost("openai", "gpt-4o-2024-08-06", input_tokens=21, output_tokens=8).total_usd
    assert call.finish_reasons == ["stop"] and call.response_id.startswith("chatcmpl-")
    assert call.request_params == {"stream": True} and "stream_incomplete" not in call.metadata


def test_stream_with_usage_asked_for_is_not_estimated(fake, log):
    for _ in openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                          stream_options={"include_usage": True}):
        pass
    call = only(log)
    assert "tokens_estimated" not in call.metadata and call.chunk_count == 8
    assert call.output_tokens == 5 and call.cost_usd == pytest.approx(priced(call))


def test_stream_left_early_closed_or_never_read(fake, log):
    stream = openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True)
    for _ in stream:
        break
    del stream
    closed = openai.ChatCompletion.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(closed)
    next(closed)
    closed.close()
    openai.ChatCompletion.create(model="o3-mini", messages=MESSAGES, stream=True)  # never read
    gc.collect()
    calls = {c.request_model: c for c in log.calls}
    assert sorted(calls) == ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    assert [calls[m].chunk_count for m in ("gpt-4o", "gpt-4o-mini", "o3-mini")] == [1, 2, 0]
    assert all(c.metadata["stream_incomplete"] is True and c.error_type is None for c in calls.values())


def test_an_error_event_inside_a_stream_is_raised_and_recorded(fake, log):
    error = {"error": {"message": "the model fell over", "type": "server_error", "param": None, "code": None}}
    fake.script = Reply(200, {"content-type": "text/event-stream"}, frames=sse(chunk("Hel"), error))
    seen = []
    with pytest.raises(openai.error.APIError, match="the model fell over"):
        for piece in openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True):
            seen.append(piece)
    call = only(log)
    assert len(seen) == 1 and call.chunk_count == 1 and call.stream
    assert call.error_type == "APIError" and "the model fell over" in call.error_message


def test_a_stream_answered_with_one_json_body_is_recorded_as_that_response(fake, log):
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}
    fake.script = Reply(200, {"content-type": "application/json"}, json.dumps(body).encode())
    with pytest.raises(AssertionError):  # the SDK's own `assert` on a stream that is none
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True)
    call = only(log)
    assert (call.input_tokens, call.output_tokens, call.response_id) == (3, 2, "chatcmpl-1") and not call.stream


# -- completions and embeddings ----------------------------------------------------------------------------


def test_completion_plain_streamed_and_by_engine(fake, log):
    reply = openai.Completion.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=20)
    text = "".join(p.choices[0].text for p in openai.Completion.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))
    openai.Completion.create(engine="davinci-002", prompt="Say hi")
    assert reply.choices[0].text == text == REPLY
    plain, streamed, engine = sorted(log.calls, key=lambda c: c.started_at)
    assert (plain.operation, plain.output_tokens, plain.finish_reasons) == ("text_completion", 5, ["stop"])
    assert plain.request_params == {"max_tokens": 20} and plain.cost_usd == pytest.approx(priced(plain)) and plain.cost_usd > 0
    assert streamed.stream and streamed.chunk_count == 6 and streamed.metadata["tokens_estimated"] == "chars/4"
    assert engine.request_model == "davinci-002" and fake.requests[-1][1] == "/v1/engines/davinci-002/completions"


def test_embeddings(fake, log):
    reply = openai.Embedding.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert len(reply.data) == 2
    call = only(log)
    assert (call.operation, call.request_model, call.input_tokens) == ("embeddings", "text-embedding-3-small", reply.usage.prompt_tokens)
    assert call.request_params == {"encoding_format": "float"} and call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0


def test_embeddings_in_the_sdk_default_base64(fake, log):
    pytest.importorskip("numpy")  # the SDK decodes its default base64 vectors with numpy
    reply = openai.Embedding.create(model="text-embedding-3-small", input="a")
    assert reply.data[0].embedding == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert only(log).request_params == {"encoding_format": "base64"}  # what the SDK sent


def test_moderations_images_and_audio_are_recorded_and_other_calls_pass_through(fake, log):
    openai.Moderation.create(input="hello")
    openai.Image.create(prompt="a cat", n=2, size="256x256")
    audio = io.BytesIO(b"ID3fake-mp3")
    audio.name = "a.mp3"
    transcript = openai.Audio.transcribe("whisper-1", audio, language="en")  # multipart: files and form fields
    openai.Model.list()  # GET /models: not an LLM call
    moderation, image, transcription = sorted(log.calls, key=lambda c: c.started_at)
    assert (transcription.operation, transcription.request_model, transcription.request_params) == (
        "speech_to_text", "whisper-1", {"language": "en"})
    server = {"server_address": "127.0.0.1", "server_port": int(fake.url.rsplit(":", 1)[1])}  # from openai.api_base
    assert transcription.metadata == {"audio_seconds": transcript.usage.seconds, **server}
    assert (moderation.operation, moderation.metadata) == ("moderation", {"flagged": False, **server})
    assert (image.operation, image.request_params, image.metadata) == ("image_generation", {"n": 2, "size": "256x256"},
                                                                       {"images": 2, **server})
    assert ("GET", "/v1/models") in fake.requests


# -- async -------------------------------------------------------------------------------------------------


def test_acreate_plain_and_streamed(fake, log):
    async def main():
        reply = await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES)
        stream = await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES, stream=True)
        text = "".join([p.choices[0].delta.get("content", "") async for p in stream])
        await openai.Completion.acreate(model="gpt-3.5-turbo-instruct", prompt="Say hi")
        await openai.Embedding.acreate(model="text-embedding-3-small", input="a", encoding_format="float")
        return reply, text

    reply, text = asyncio.run(main())
    assert text == reply.choices[0].message.content == REPLY
    plain, streamed, completion, embedding = sorted(log.calls, key=lambda c: c.started_at)
    assert (plain.output_tokens, plain.response_id, plain.stream) == (5, reply.id, False)
    assert streamed.stream and streamed.chunk_count == 7 and streamed.ttft_ms > 0 and streamed.cost_usd > 0
    assert (completion.operation, embedding.operation) == ("text_completion", "embeddings")
    assert all(c.error_type is None and c.provider == "openai" for c in log.calls)


def test_async_stream_left_early_and_async_errors(fake, log):
    async def main():
        stream = await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES, stream=True)
        async for _ in stream:
            break
        await stream.aclose()
        fake.fail(429, message="slow down")
        with pytest.raises(openai.error.RateLimitError):
            await openai.ChatCompletion.acreate(model="gpt-4o-mini", messages=MESSAGES)

    asyncio.run(main())
    gc.collect()
    early, limited = sorted(log.calls, key=lambda c: c.started_at)
    assert early.metadata["stream_incomplete"] is True and early.chunk_count == 1
    assert (limited.error_type, limited.error_category, limited.status_code) == ("RateLimitError", "rate_limit", 429)


def test_async_cancellation_is_recorded(fake, log):
    fake.settings.latency = 1.0

    async def main():
        task = asyncio.ensure_future(openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert only(log).error_category == "cancelled"


# -- Azure -------------------------------------------------------------------------------------------------


def test_azure_deployments_name_the_model_and_the_provider(fake, log):
    azure = {"api_type": "azure", "api_base": fake.url, "api_version": "2023-05-15", "api_key": "azure-key-456"}
    reply = openai.ChatCompletion.create(engine="prod-gpt4o", messages=MESSAGES, **azure)
    openai.Embedding.create(deployment_id="prod-embed", input="a", encoding_format="float", **azure)
    openai.ChatCompletion.create(engine="ad-gpt4o", messages=MESSAGES, **{**azure, "api_type": "azure_ad"})

    async def main():
        await openai.ChatCompletion.acreate(engine="async-gpt4o", messages=MESSAGES, **azure)

    asyncio.run(main())
    chat, embed, ad, asynchronous = sorted(log.calls, key=lambda c: c.started_at)
    assert {c.provider for c in log.calls} == {"azure.ai.openai"}
    assert (chat.request_model, embed.request_model, ad.request_model, asynchronous.request_model) == (
        "prod-gpt4o", "prod-embed", "ad-gpt4o", "async-gpt4o")
    assert chat.response_model == reply.model and chat.output_tokens == 5 and embed.operation == "embeddings"
    assert fake.requests[0][1] == "/openai/deployments/prod-gpt4o/chat/completions?api-version=2023-05-15"


# -- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, exc_type, category",
    [(429, "RateLimitError", "rate_limit"), (500, "APIError", "server"), (503, "ServiceUnavailableError", "server"),
     (401, "AuthenticationError", "authentication"), (403, "PermissionError", "permission"),
     (400, "InvalidRequestError", "invalid_request"), (404, "InvalidRequestError", "not_found")],
)
def test_status_errors_recorded_and_reraised_unchanged(fake, log, status, exc_type, category):
    fake.fail(status, message="fake trouble")
    with pytest.raises(getattr(openai.error, exc_type)) as raised:
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code) == (exc_type, category, status)
    assert call.provider == "openai" and call.cost_usd == 0.0 and call.request_model == "gpt-4o"
    assert raised.value.http_status == status and ("fake trouble" in call.error_message or status == 503)


def test_timeout_and_connection_errors(fake, log):
    fake.fail(timeout=True)
    with pytest.raises(openai.error.Timeout):
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, request_timeout=0.3)
    with pytest.raises(openai.error.APIConnectionError):
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, api_base="http://127.0.0.1:9/v1")  # nothing listens

    async def main():
        fake.fail(timeout=True)
        with pytest.raises(openai.error.Timeout):
            await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES, request_timeout=0.3)

    asyncio.run(main())
    assert sorted(c.error_category for c in log.calls) == ["connection", "timeout", "timeout"]


def test_a_model_still_loading_is_asked_again_one_record_per_request(fake, log):
    """`ChatCompletion.create` repeats a request answered 409 (`TryAgain`): two requests, two records."""
    fake.fail(409, message="model loading")
    reply = openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)
    refused, answered = sorted(log.calls, key=lambda c: c.started_at)
    assert (refused.error_type, refused.status_code) == ("TryAgain", 409)
    assert answered.error_type is None and answered.response_id == reply.id


# -- attribution, content, privacy -------------------------------------------------------------------------


def test_attribution_and_the_user_parameter(fake, log):
    with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", session_id="s1", tags=["legacy"], team="core"):
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)

        async def main():
            await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES, user="end-user-7")

        asyncio.run(main())
    openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, user="end-user-7")
    attributed, attributed_async, by_user = sorted(log.calls, key=lambda c: c.started_at)
    for call in (attributed, attributed_async):
        assert (call.user_id, call.customer_id, call.feature, call.session_id, call.tags) == ("u1", "acme", "search", "s1", ["legacy"])
        assert call.metadata["team"] == "core"
    assert by_user.user_id == "end-user-7" and by_user.customer_id is None


def test_a_manual_block_around_an_sdk_call_is_recorded_once(fake, log):
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)
        span.set_tokens(input=1, output=1)
    call = only(log)
    assert call.source == "manual" and call.total_tokens == 2


def test_keys_and_content_are_not_kept_by_default(fake, log):
    openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, headers={"Authorization": "Bearer sk-other-789"})
    for _ in openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass
    for call in log.calls:
        text = repr(tokentrail.record.to_dict(call))
        for secret in ("sk-legacy-secret-123", "sk-other-789", "capital of France", "fake provider"):
            assert secret not in text
        assert call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    with tokentrail.tracking() as log:
        openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)
        for _ in openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=True):
            pass
        openai.Completion.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    chat, streamed, completion = sorted(log.calls, key=lambda c: c.started_at)
    assert chat.input_messages == streamed.input_messages == MESSAGES
    assert chat.output_text == streamed.output_text == completion.output_text == "Hello from"
    assert completion.input_messages == [{"role": "user", "content": "Say hi"}]


def test_untrack_makes_the_wrapper_a_pass_through(fake, log):
    tokentrail.untrack()
    with tokentrail.tracking() as inner:
        pass
    openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES)  # still inside the outer tracking() block
    assert len(log.calls) == 1 and inner.calls == []


# -- fuzz: whatever the server sends, the app sees the same thing, and one record is made ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values, "completion_tokens": json_values, "prompt_tokens_details": json_values})
choices = json_values | st.lists(st.fixed_dictionaries({}, optional={
    "message": json_values, "delta": json_values, "finish_reason": json_values, "index": json_values}), max_size=3)
bodies = st.fixed_dictionaries({}, optional={"id": json_values, "model": json_values, "object": json_values,
                                             "choices": choices, "usage": usages, "error": json_values})


@st.composite
def replies(draw):
    """A JSON body, SSE events (sent in pieces cut anywhere) or plain text — any of them torn at any byte."""
    kind = draw(st.sampled_from(["application/json", "text/event-stream", "text/plain"]))
    if kind == "text/event-stream":
        events = draw(st.lists(bodies, max_size=4))
        data = b"".join(sse(*events)) + (b"data: [DONE]\n\n" if draw(st.booleans()) else b"")
    else:
        data = json.dumps(draw(bodies)).encode()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    status = draw(st.sampled_from([200, 200, 200, 400, 404, 429, 500, 503]))
    if kind == "text/event-stream" and data:
        cuts = sorted(set(draw(st.lists(st.integers(1, len(data)), max_size=3))) | {len(data)})
        frames = [data[a:b] for a, b in zip([0, *cuts], cuts) if b > a]
        return Reply(status, {"content-type": kind}, frames=frames)
    return Reply(status, {"content-type": kind}, data)


_DATE = re.compile(r"'Date': '[^']*'")  # the server's Date header, in the messages of some SDK errors


def outcome(stream, asynchronous):
    """What the application sees: the objects it got, or the exception it caught."""
    async def acall():
        got = await openai.ChatCompletion.acreate(model="gpt-4o", messages=MESSAGES, stream=stream)
        return [str(p) async for p in got] if stream else str(got)

    try:
        if asynchronous:
            return "ok", asyncio.run(acall())
        got = openai.ChatCompletion.create(model="gpt-4o", messages=MESSAGES, stream=stream)
        return "ok", [str(p) for p in got] if stream else str(got)
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__, getattr(exc, "http_status", None), _DATE.sub("", str(exc))


def check_fuzzed(fake, reply, stream, asynchronous):
    fake.script = reply
    tokentrail.uninstrument()
    bare = outcome(stream, asynchronous)
    tokentrail.instrument("openai")
    with tokentrail.tracking() as log:
        tracked = outcome(stream, asynchronous)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == "gpt-4o" and call.provider == "openai" and call.operation == "chat"
    for count in (call.input_tokens, call.output_tokens):
        assert count is None or (type(count) is int and count >= 0)
    if call.error_type is not None:  # a failed request failed the app; the SDK may also fail after a good one
        assert bare[0] == "raised" and call.error_type == bare[1]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_create_the_app_sees_the_same_results_and_one_record(fake, reply, stream):
    check_fuzzed(fake, reply, stream, asynchronous=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies(), stream=st.booleans())
def test_fuzz_acreate_the_app_sees_the_same_results_and_one_record(fake, reply, stream):
    check_fuzzed(fake, reply, stream, asynchronous=True)
