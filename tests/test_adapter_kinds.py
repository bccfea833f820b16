"""Each kind of patch point is written once, in the core: a minimal fake SDK of each kind is captured
by an adapter module under 80 lines (tests/fakesdks/adapters/), and the innermost layer records a call.

The fake SDKs (tests/fakesdks/) are tiny libraries in the shape of the real ones: a Stainless-style
base client (request point), a client with one `send` choke point (method point), a framework that
reports runs through callbacks (callback point). They are installed for the test (a `.dist-info`
beside them, so the registry's version gate sees them) and registered as adapters.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import sys
import threading
import types
from pathlib import Path

import pytest

import tokentrail
from tokentrail import instrument as registry

HERE = Path(__file__).parent / "fakesdks"
KINDS = {"fakestainless": "request", "fakemethod": "method", "fakeframework": "callback"}


@pytest.fixture(autouse=True)
def fake_sdks():
    sys.path[:0] = [str(HERE), str(HERE / "adapters")]
    for name in KINDS:
        registry.register(name, f"tt_{name}")
    yield
    tokentrail.uninstrument(*KINDS)
    for name in KINDS:
        registry.ADAPTERS.pop(name, None)
    sys.path[:] = [p for p in sys.path if p not in (str(HERE), str(HERE / "adapters"))]


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_needs_an_adapter_module_under_80_lines(name):
    lines = (HERE / "adapters" / f"tt_{name}.py").read_text().splitlines()
    assert len(lines) < 80
    assert tokentrail.available()[name] == "1.2.0"  # the version gate sees the fake's distribution


# -- request point -------------------------------------------------------------------------------------


def stainless_handler(path, body):
    body = body or {}
    if body.get("stream"):
        return 200, [json.dumps({"id": "s-1", "delta": w}) for w in ("Hel", "lo")] + [
            json.dumps({"id": "s-1", "delta": "", "usage": {"prompt_tokens": 5, "completion_tokens": 2}})]
    return 200, json.dumps({"id": "r-1", "model": "fake-1", "text": "Hello",
                            "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()


def test_request_point_records_calls_and_streams_and_restores():
    import fakestainless

    original = fakestainless.SyncAPIClient.__dict__["request"]
    tokentrail.instrument("fakestainless")
    client = fakestainless.Client(stainless_handler)
    with tokentrail.tracking() as log:
        assert client.chat(model="fake-1", messages=[{"role": "user", "content": "hi"}], temperature=0.5)["text"] == "Hello"
        stream = client.chat(model="fake-1", messages=[], stream=True)
        assert isinstance(stream, fakestainless.Stream)  # still the SDK's type
        assert [c["delta"] for c in stream] == ["Hel", "lo", ""]
        client.files()  # not an endpoint the adapter names: passes through unrecorded
    chat, streamed = log.calls
    assert (chat.source, chat.provider, chat.response_id, chat.input_tokens, chat.output_tokens) == \
        ("fakestainless", "fakeprovider", "r-1", 5, 2)
    assert chat.request_params == {"temperature": 0.5} and chat.message_count == 1
    assert streamed.stream and streamed.chunk_count == 3 and streamed.output_tokens == 2 and streamed.ttft_ms is not None
    tokentrail.uninstrument("fakestainless")
    assert fakestainless.SyncAPIClient.__dict__["request"] is original


def test_request_point_error_is_recorded_and_reraised():
    import fakestainless

    tokentrail.instrument("fakestainless")
    client = fakestainless.Client(lambda path, body: (429, b""))
    with tokentrail.tracking() as log:
        with pytest.raises(fakestainless.APIStatusError):
            client.chat(model="fake-1", messages=[])
    assert log.calls[0].status_code == 429 and log.calls[0].error_category == "rate_limit"


# -- method point ----------------------------------------------------------------------------------------


def backend(operation, payload):
    if payload.get("fail"):
        import fakemethod

        raise fakemethod.ServerError(503)
    if payload.get("stream"):
        return iter([{"text": "a"}, {"text": "b"}, {"id": "m-2", "text": "", "usage": {"input_tokens": 3, "output_tokens": 2}}])
    return {"id": "m-1", "text": "answer", "usage": {"input_tokens": 3, "output_tokens": 1}}


def test_method_point_sync_async_streams_and_errors():
    import fakemethod

    tokentrail.instrument("fakemethod")
    client, aclient = fakemethod.Client(backend), fakemethod.AsyncClient(backend)

    async def use_async():
        await aclient.send("generate", {"model": "m", "prompt": "x"})
        chunks = await aclient.send("generate", {"model": "m", "prompt": "x", "stream": True}, stream=True)
        return [c async for c in chunks]

    with tokentrail.tracking() as log:
        assert client.generate("m", "hello")["text"] == "answer"
        stream = client.send("generate", {"model": "m", "prompt": "x", "stream": True}, stream=True)
        assert isinstance(stream, types.GeneratorType)  # the proxy keeps the SDK's type
        assert [c["text"] for c in stream] == ["a", "b", ""]
        assert len(asyncio.run(use_async())) == 3
        with pytest.raises(fakemethod.ServerError):
            client.send("generate", {"model": "m", "fail": True})
        client.send("embed", {"model": "m"})  # not recognised: passes through
    plain, streamed, async_plain, async_streamed, failed = log.calls
    assert (plain.response_id, plain.input_tokens, plain.output_tokens, plain.operation) == ("m-1", 3, 1, "text_completion")
    assert streamed.stream and streamed.chunk_count == 3 and streamed.output_tokens == 2 and streamed.response_id == "m-2"
    assert async_plain.response_id == "m-1" and async_streamed.chunk_count == 3
    assert failed.status_code == 503 and failed.error_category == "server"


def test_method_point_stream_dropped_unread_is_recorded_as_incomplete():
    import fakemethod

    tokentrail.instrument("fakemethod")
    client = fakemethod.Client(backend)
    with tokentrail.tracking() as log:
        stream = client.send("generate", {"model": "m", "stream": True}, stream=True)
        next(stream)
        del stream
        gc.collect()
    assert log.calls[0].metadata["stream_incomplete"] is True and log.calls[0].chunk_count == 1


# -- callback point and the innermost-record rule ----------------------------------------------------------


def test_callback_point_records_a_call_no_sdk_saw_with_its_chain_as_parent():
    import fakeframework

    tokentrail.instrument("fakeframework")
    with tokentrail.tracking() as log:
        fakeframework.Chain("summarize", fakeframework.LLM("fake-model")).run("hi")
    (call,) = log.calls
    assert (call.source, call.provider, call.request_model, call.input_tokens, call.output_tokens) == \
        ("fakeframework", "fakeprovider", "fake-model", 7, 2)
    assert call.parent_span_id is not None and call.metadata["framework_run"]


def test_a_call_through_an_sdk_we_patch_is_recorded_once_by_the_sdk_with_the_framework_as_parent():
    import fakeframework
    import fakemethod

    tokentrail.instrument("fakeframework", "fakemethod")
    sdk = fakemethod.Client(backend)
    llm = fakeframework.LLM("m", backend=lambda prompt: sdk.generate("m", prompt))
    seen = {}

    class Spy:  # the chain's span id, as the framework layer opened it
        def on_chain_start(self, run, name):
            from tokentrail.context import current_span

            seen["chain"] = current_span.get()

        def __getattr__(self, name):
            return lambda *args: None

    fakeframework.callbacks.append(Spy())
    try:
        with tokentrail.tracking() as log:
            fakeframework.Chain("answer", llm).run("hello")
    finally:
        fakeframework.callbacks.pop()
    (call,) = log.calls  # once: the SDK layer recorded, the framework's call deferred to it
    assert call.source == "fakemethod" and call.response_id == "m-1" and call.input_tokens == 3
    assert call.metadata["framework_run"]  # the framework's labels travel down
    assert call.parent_span_id == f"{seen['chain'].span:016x}"  # the chain, not the deferred LLM run


def test_framework_error_is_recorded_once():
    import fakeframework
    import fakemethod

    tokentrail.instrument("fakeframework", "fakemethod")
    sdk = fakemethod.Client(backend)
    llm = fakeframework.LLM("m", backend=lambda prompt: sdk.send("generate", {"model": "m", "fail": True}))
    with tokentrail.tracking() as log:
        with pytest.raises(fakemethod.ServerError):
            llm.invoke("x")
    (call,) = log.calls
    assert call.source == "fakemethod" and call.error_category == "server"


def test_callbacks_from_another_context_meet_the_sdk_record_by_response_id():
    """When the framework runs its callbacks where the call's context is not seen (a thread pool),
    both layers record; the worker keeps the SDK's record and drops the framework's."""
    import fakeframework
    import fakemethod

    tokentrail.instrument("fakeframework", "fakemethod")
    sdk = fakemethod.Client(backend)
    handler = fakeframework.callbacks[0]

    def in_another_context(*args, method):
        thread = threading.Thread(target=contextvars.Context().run, args=(getattr(handler, method), *args))
        thread.start()
        thread.join()

    with tokentrail.tracking() as log:
        tokentrail.track()  # the other context has no tracking() route: record globally
        in_another_context("run-1", None, "m", "x", method="on_llm_start")
        answer = sdk.generate("m", "x")
        in_another_context("run-1", answer, method="on_llm_end")
        tokentrail.flush(5)
    sources = [c.source for c in log.calls]
    assert sources == ["fakemethod"]


def test_framework_chains_are_recorded_as_spans_parenting_their_calls():
    import fakeframework

    tokentrail.instrument("fakeframework")
    with tokentrail.tracking() as log:
        with tokentrail.workflow("answer-questions"):
            fakeframework.Chain("summarize", fakeframework.LLM("fake-model")).run("hi")
    workflow_span, chain = sorted(log.spans, key=lambda s: s.started_at)
    (call,) = log.calls
    assert (chain.name, chain.operation, chain.source, chain.metadata) == ("summarize", "invoke_workflow", "fakeframework", {"kind": "chain"})
    assert chain.parent_span_id == workflow_span.span_id and call.parent_span_id == chain.span_id
    assert chain.workflow == "answer-questions" and len({workflow_span.trace_id, chain.trace_id, call.trace_id}) == 1


def test_a_library_whose_internals_moved_is_left_as_it_was_with_one_log_line(caplog):
    import fakemethod

    registry.register("fakemoved", "tt_fakemoved")
    try:
        original = fakemethod.Client.__dict__["send"]
        tokentrail.instrument("fakemoved")
        tokentrail.instrument("fakemoved")
        assert fakemethod.Client.__dict__["send"] is original  # the patch that did apply was undone
        assert "fakemoved" not in tokentrail.instrumented()
        lines = [r.getMessage() for r in caplog.records if "could not instrument fakemoved" in r.getMessage()]
        assert len(lines) == 1 and "left as it was" in lines[0]
        assert fakemethod.Client(backend).generate("m", "x")["text"] == "answer"  # the library still works
    finally:
        tokentrail.uninstrument("fakemoved")
        registry.ADAPTERS.pop("fakemoved", None)


def test_an_ended_framework_run_stops_being_the_contexts_current_span():
    """It must not parent later calls, nor keep its error (and its traceback's frames) alive."""
    from tokentrail.context import current_span
    from tokentrail.instrument.callback_point import Runs

    runs = Runs("fakeframework")
    with tokentrail.tracking() as log:
        with tokentrail.workflow("outer") as run:
            runs.start_span("chain", "chain")
            runs.start_call("llm", provider="openai", model="gpt-4o", parent="chain")
            runs.end_call("llm", error=RuntimeError("boom"))
            runs.end_span("chain")
            assert current_span.get() is run  # back to the nearest open span: the workflow
    assert len(log.calls) == 1 and log.calls[0].error_type == "RuntimeError"
