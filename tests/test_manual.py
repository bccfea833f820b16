import asyncio
import contextvars
import threading

import time

import pytest

import tokentrail


def one(log):
    calls = log.calls
    assert len(calls) == 1, calls
    return calls[0]


def test_track_llm_call_every_setter():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("OpenAI", "gpt-4o", operation="Chat") as span:
            span.set_tokens(input=120, output=30, cache_read=100, cache_write=0, reasoning=10)
            span.set_request_id("chatcmpl-1")
            span.set_response_model("gpt-4o-2024-08-06")
            span.set_request_params(temperature=0.2, max_tokens=64, top_p=1)
            span.set_streaming(ttft_ms=42.5, chunk_count=17)
            span.set_cache_hit(False)
            span.set_attempt(2)
            span.set_finish_reasons("stop", "length")
            span.set_tool_call_count(1)
            span.add_metadata(prompt_version="v3")
    call = one(log)
    assert (call.provider, call.operation, call.request_model, call.response_model) == ("openai", "chat", "gpt-4o", "gpt-4o-2024-08-06")
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (120, 30, 150)
    assert (call.cache_read_tokens, call.cache_write_tokens, call.reasoning_tokens) == (100, 0, 10)
    assert call.response_id == "chatcmpl-1"
    assert call.request_params == {"temperature": 0.2, "max_tokens": 64, "top_p": 1}
    assert (call.stream, call.ttft_ms, call.chunk_count) == (True, 42.5, 17)
    assert (call.cache_hit, call.attempt, call.tool_call_count) == (False, 2, 1)
    assert call.finish_reasons == ["stop", "length"]
    assert call.metadata == {"prompt_version": "v3"}
    assert call.source == "manual" and call.error_type is None
    assert call.id == span.id and call.span_id == span.span_id and call.trace_id == span.trace_id
    assert call.duration_ms >= 0 and call.started_at.tzinfo is not None


def test_singular_finish_reason_and_usage_object():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("anthropic", "claude-3-5-haiku-latest") as span:
            span.set_finish_reason("end_turn")
            span.set_usage({"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 1})
    call = one(log)
    assert call.finish_reasons == ["end_turn"]
    assert (call.input_tokens, call.cache_read_tokens, call.cache_write_tokens) == (16, 10, 1)


def test_exception_is_recorded_and_reraised():
    class RateLimitError(Exception):
        status_code = 429

    with tokentrail.tracking() as log:
        with pytest.raises(RateLimitError):
            with tokentrail.track_llm_call("openai", "gpt-4o-mini"):
                raise RateLimitError("slow down")
    call = one(log)
    assert (call.error_type, call.error_message, call.error_category, call.status_code) == ("RateLimitError", "slow down", "rate_limit", 429)
    assert call.failed


def test_set_error_with_message_and_category():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_error("model refused", category="content_filter")
    call = one(log)
    assert (call.error_message, call.error_category) == ("model refused", "content_filter")


def test_bad_values_are_dropped_with_one_warning_never_raised(tt_warnings):
    with tokentrail.tracking() as log:
        for _ in range(3):
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input="lots", output=-5, cache_read="12")
                span.set_attempt("first")
                span.set_streaming(ttft_ms="soon")
                span.set_cache_hit("maybe")
                span.set_error(ValueError("x"), category="not-a-category")
                span.set_request_params(temperature=0.1)
    calls = log.calls
    assert len(calls) == 3
    call = calls[0]
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (None, None, 12)
    assert call.attempt is None and call.ttft_ms is None and call.cache_hit is None
    assert call.error_category == "unknown"  # the bad category was replaced by the inferred one
    messages = tt_warnings()
    for name in ("input_tokens", "output_tokens", "attempt", "ttft_ms", "cache_hit", "error category"):
        assert len([m for m in messages if name in m]) == 1, (name, messages)


def test_ids_and_clocks_cannot_be_overridden(tt_warnings):
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o", id="mine", trace_id="abc") as span:
            pass
    call = one(log)
    assert call.id == span.id and call.trace_id == span.trace_id
    assert any("id" in m for m in tt_warnings())


def test_attrs_route_to_fields_attribution_and_metadata():
    with tokentrail.tracking() as log:
        with tokentrail.attributes(user_id="outer", customer_id="acme", tags=["a"]):
            with tokentrail.track_llm_call("openai", "gpt-4o", user_id="inner", tags=["b"], message_count=3, experiment="e7"):
                pass
    call = one(log)
    assert (call.user_id, call.customer_id) == ("inner", "acme")
    assert call.tags == ["a", "b"]
    assert call.message_count == 3
    assert call.metadata == {"experiment": "e7"}


def test_content_is_dropped_unless_capture_content(db_url):
    tokentrail.init(db_url)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_content(input=[{"role": "system", "content": "s"}, {"role": "user", "content": "secret"}], output="answer")
    call = one(log)
    assert call.input_messages is None and call.output_text is None
    assert call.message_count == 2  # counted even when content is not kept


def test_content_kept_and_output_cut_with_capture_content(db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_content(input="just a string prompt", output="x" * 50)
    call = one(log)
    assert call.input_messages == [{"role": "user", "content": "just a string prompt"}]
    assert call.output_text == "x" * 10
    assert call.message_count == 1


def test_credentials_never_reach_request_params():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_request_params(api_key="sk-123", Authorization="Bearer x", extra_headers={"x-api-key": "k"},
                                    max_tokens=10, temperature=0)
    assert one(log).request_params == {"max_tokens": 10, "temperature": 0}


def test_nesting_gives_trace_and_parent_ids():
    with tokentrail.tracking() as log:
        with tokentrail.workflow("triage") as run:
            with tokentrail.track_llm_call("openai", "gpt-4o") as outer:
                with tokentrail.track_tool_call("search", tool_call_id="call_1", arguments={"q": "x"}) as tool:
                    tool.set_result("3 hits")
            run.emit_outcome("triaged", value=1)
        with tokentrail.track_llm_call("openai", "gpt-4o") as alone:
            pass
    calls = {c.span_id: c for c in log.calls}
    first, second = calls[outer.span_id], calls[alone.span_id]
    tool_call = log.tool_calls[0]
    outcome = log.outcomes[0]
    assert first.trace_id == tool_call.trace_id == outcome.trace_id == run.trace_id
    assert tool_call.parent_span_id == first.span_id
    assert first.parent_span_id == outcome.parent_span_id
    assert second.trace_id != first.trace_id and second.parent_span_id is None
    assert first.workflow == "triage" and first.workflow_run_id == run.run_id == outcome.workflow_run_id
    assert second.workflow is None
    assert tool_call.name == "search" and tool_call.tool_call_id == "call_1"
    assert tool_call.arguments is None and tool_call.result is None  # content off by default


def test_new_trace_ids_begin_with_their_millisecond_and_end_random():
    # Time first keeps the stores' trace_id index growing at its end; the low 80 bits stay random
    # (W3C's random flag covers the rightmost 7 bytes; OTel's ratio sampler reads the low 64 bits).
    before = time.time_ns() // 1_000_000
    with tokentrail.tracking() as log:
        for _ in range(50):
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                pass
    after = time.time_ns() // 1_000_000
    traces = [c.trace_id for c in log.calls]
    assert all(len(t) == 32 for t in traces) and len(set(traces)) == 50
    assert all(before <= int(t[:12], 16) <= after for t in traces)
    assert [int(t[:12], 16) for t in traces] == sorted(int(t[:12], 16) for t in traces)
    assert len({t[12:] for t in traces}) == 50 and len({t[-14:] for t in traces}) == 50
    assert all(int(c.id[:12], 16) == int(c.trace_id[:12], 16) for c in log.calls)


def test_tool_span_records_errors_and_content_when_captured(db_url):
    tokentrail.init(db_url, capture_content=True)
    with tokentrail.tracking() as log:
        with pytest.raises(KeyError):
            with tokentrail.track_tool_call("lookup", arguments={"id": 7}) as tool:
                tool.set_tool_call_id("call_9")
                tool.add_metadata(cache="miss")
                raise KeyError("missing")
    tool_call = log.tool_calls[0]
    assert (tool_call.error_type, tool_call.error_category) == ("KeyError", "unknown")
    assert tool_call.arguments == {"id": 7} and tool_call.tool_call_id == "call_9"
    assert tool_call.metadata == {"cache": "miss"}


def test_workflow_decorator_new_run_per_call_sync_and_async():
    @tokentrail.workflow("digest", customer_id="acme")
    def digest():
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        tokentrail.emit_outcome("sent", value=3)

    @tokentrail.workflow("adigest")
    async def adigest():
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            await asyncio.sleep(0)

    with tokentrail.tracking() as log:
        digest()
        digest()
        asyncio.run(adigest())
    calls = log.calls
    runs = {c.workflow_run_id for c in calls if c.workflow == "digest"}
    assert len(runs) == 2
    assert all(c.customer_id == "acme" for c in calls if c.workflow == "digest")
    assert [c.workflow for c in calls].count("adigest") == 1
    outcomes = log.outcomes
    assert [o.value for o in outcomes] == [3.0, 3.0]
    assert {o.workflow_run_id for o in outcomes} == runs
    assert all(o.customer_id == "acme" for o in outcomes)


def test_emit_outcome_outside_workflow_and_bad_value(tt_warnings):
    with tokentrail.tracking() as log:
        tokentrail.emit_outcome("signup", success=False, plan="pro")
        tokentrail.emit_outcome("odd", value="lots")
    first, second = log.outcomes
    assert (first.workflow, first.success, first.value, first.metadata) == (None, False, None, {"plan": "pro"})
    assert second.value is None
    assert any("outcome value" in m for m in tt_warnings())


def test_llm_instrumented_sync_with_default_extractors():
    @tokentrail.llm_instrumented(provider="acme-llm")
    def complete(prompt, model="acme-1"):
        return {"id": "r1", "model": "acme-1-0614", "choices": [{"message": {"content": "hi there"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2}}

    with tokentrail.tracking() as log:
        assert complete("hello", model="acme-1")["id"] == "r1"
    call = one(log)
    assert (call.provider, call.request_model, call.response_model, call.response_id) == ("acme_llm", "acme-1", "acme-1-0614", "r1")
    assert (call.input_tokens, call.output_tokens) == (9, 2)
    assert call.message_count == 1 and call.output_text is None


def test_llm_instrumented_custom_extractors_and_content(db_url):
    tokentrail.init(db_url, capture_content=True)

    @tokentrail.llm_instrumented(
        provider="local", model="tiny",
        extract_usage=lambda r: {"input_tokens": r["in"], "output_tokens": r["out"]},
        extract_prompt=lambda question: [{"role": "user", "content": question}],
        extract_response=lambda r: r["text"],
        extract_model=lambda r: r["version"],
    )
    def ask(question):
        return {"in": 4, "out": 6, "text": "forty-two", "version": "tiny-2"}

    with tokentrail.tracking() as log:
        ask("meaning?")
    call = one(log)
    assert (call.input_tokens, call.output_tokens, call.response_model) == (4, 6, "tiny-2")
    assert call.input_messages == [{"role": "user", "content": "meaning?"}]
    assert call.output_text == "forty-two"


def test_llm_instrumented_extractor_failure_keeps_the_record(caplog):
    @tokentrail.llm_instrumented(provider="p", model="m", extract_usage=lambda r: r["nope"])
    def f():
        return {}

    with tokentrail.tracking() as log:
        assert f() == {}
    call = one(log)
    assert call.input_tokens is None and call.request_model == "m"
    assert any("extractor" in r.getMessage() for r in caplog.records)


def test_llm_instrumented_async_and_errors():
    @tokentrail.llm_instrumented(provider="openai")
    async def acall(model):
        await asyncio.sleep(0)
        raise TimeoutError("took too long")

    with tokentrail.tracking() as log:
        with pytest.raises(TimeoutError):
            asyncio.run(acall(model="gpt-4o"))
    call = one(log)
    assert (call.request_model, call.error_category) == ("gpt-4o", "timeout")


def test_llm_instrumented_generator_streams():
    @tokentrail.llm_instrumented(provider="openai", model="gpt-4o",
                                 extract_usage=lambda chunk: chunk.get("usage"),
                                 extract_response=lambda chunk: chunk.get("text"))
    def stream():
        yield {"text": "Hel"}
        yield {"text": "lo"}
        yield {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    with tokentrail.tracking() as log:
        assert [c.get("text") for c in stream()] == ["Hel", "lo", None]
    call = one(log)
    assert call.stream and call.chunk_count == 3 and call.ttft_ms is not None and call.ttft_ms >= 0
    assert (call.input_tokens, call.output_tokens) == (3, 2)


def test_llm_instrumented_generator_closed_early_is_marked_incomplete():
    @tokentrail.llm_instrumented(provider="openai", model="gpt-4o")
    def stream():
        for i in range(10):
            yield str(i)

    with tokentrail.tracking() as log:
        gen = stream()
        next(gen), next(gen)
        gen.close()
    call = one(log)
    assert call.chunk_count == 2 and call.metadata == {"stream_incomplete": True, "tokens_estimated": "chars/4"}
    assert call.error_type is None and call.output_tokens == 1  # "01": 2 chars, estimated (no usage was reported)


def test_llm_instrumented_async_generator():
    @tokentrail.llm_instrumented(provider="anthropic", model="claude-3-5-haiku-latest")
    async def stream():
        for word in ("a", "b"):
            await asyncio.sleep(0)
            yield word

    async def consume():
        return [w async for w in stream()]

    with tokentrail.tracking() as log:
        assert asyncio.run(consume()) == ["a", "b"]
    assert one(log).chunk_count == 2


def test_log_llm_call_usage_spellings_and_timing():
    with tokentrail.tracking() as log:
        rid = tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"prompt_tokens": 10, "completion_tokens": 5},
                                      duration_ms=250, user_id="u7")
        tokentrail.log_llm_call(provider="anthropic", model="claude-3-opus", usage={"input_tokens": 1, "output_tokens": 2, "cache_creation_input_tokens": 3})
        tokentrail.log_llm_call(provider="mine", model="m", usage={"input_tokens": 4, "output_tokens": 5, "reasoning_tokens": 1},
                                error=RuntimeError("boom"), response="partial")
    calls = {c.provider: c for c in log.calls}
    assert calls["openai"].id == rid and calls["openai"].duration_ms == pytest.approx(250)
    assert calls["openai"].user_id == "u7" and calls["openai"].input_tokens == 10
    assert calls["anthropic"].input_tokens == 4 and calls["anthropic"].cache_write_tokens == 3
    assert calls["mine"].reasoning_tokens == 1 and calls["mine"].error_type == "RuntimeError"


def test_log_llm_call_reads_a_response_object():
    response = {"id": "msg_1", "model": "claude-3-5-sonnet-20241022", "content": [{"type": "text", "text": "ok"}],
                "usage": {"input_tokens": 8, "output_tokens": 1}}
    with tokentrail.tracking() as log:
        tokentrail.log_llm_call(provider="anthropic", model="claude-3-5-sonnet-latest", response=response)
    call = one(log)
    assert (call.response_id, call.response_model, call.output_tokens) == ("msg_1", "claude-3-5-sonnet-20241022", 1)


def test_nothing_is_recorded_before_init_outside_tracking(db_url):
    span = tokentrail.track_llm_call("openai", "gpt-4o")
    with span as s:
        s.set_tokens(input=1)  # inert, but usable
    assert tokentrail.log_llm_call(provider="openai", model="gpt-4o") is None
    assert not tokentrail.is_tracking()
    assert tokentrail.flush(1)


def test_async_with_span():
    async def main():
        async with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=1, output=1)

    with tokentrail.tracking() as log:
        asyncio.run(main())
    assert one(log).total_tokens == 2


def test_calls_from_many_threads_all_land_when_the_context_is_copied():
    def work():
        for _ in range(200):
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input=1, output=1)

    with tokentrail.tracking() as log:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(4)]
        threads.append(threading.Thread(target=work))  # a plain thread does not inherit the block
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert len(log.calls) == 800
    assert len({c.id for c in log.calls}) == 800


def test_calls_from_plain_threads_land_after_init(db_url):
    tokentrail.init(db_url)

    def work():
        for _ in range(100):
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert tokentrail.flush(5)
    assert len(tokentrail.open_store(db_url).calls(limit=None)) == 400


def test_a_rejected_setter_value_keeps_the_good_value_set_before_it(tt_warnings):
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=100, output=50)
            span.set_tokens(output=-5)
            span.set_streaming(ttft_ms=12.5, chunk_count=4)
            span.set_streaming(ttft_ms="soon", chunk_count=-1)
            span.set_attempt(2)
            span.set_attempt("again")
    call = log.calls[0]
    assert (call.input_tokens, call.output_tokens, call.ttft_ms, call.chunk_count, call.attempt) == (100, 50, 12.5, 4, 2)
    assert call.cost_usd == tokentrail.cost("openai", "gpt-4o", input_tokens=100, output_tokens=50).total_usd
    assert any("output_tokens=-5" in m for m in tt_warnings())


def test_a_call_priced_from_half_its_tokens_says_so():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=100)
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=100, output=5)
    partial, whole = log.calls
    assert partial.cost_usd is not None and partial.metadata == {"cost_partial": "output_tokens unknown"}
    assert not (whole.metadata or {}).get("cost_partial")


def test_log_llm_call_without_a_duration_stores_it_as_unknown(db_url):
    tokentrail.init(db_url, instrument=False)
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"prompt_tokens": 3, "completion_tokens": 1})
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", duration_ms=250)
    assert tokentrail.flush(5)
    durations = sorted((c.duration_ms for c in tokentrail.open_store(db_url).calls()), key=lambda d: d is None)
    assert durations == [250.0, None]
    assert tokentrail.open_store(db_url).summary(group_by=())[0]["p50_ms"] == 250.0  # not dragged to 125 by a 0


def test_a_workflow_run_is_recorded_as_the_span_its_calls_hang_from(db_url):
    tokentrail.init(db_url, instrument=False)
    with tokentrail.workflow("support-ticket", customer_id="acme") as run:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=10, output=2)
        run.emit_outcome("resolved")
    assert tokentrail.flush(5)
    store = tokentrail.open_store(db_url)
    (recorded,) = store.spans()
    (call,) = store.calls()
    assert (recorded.name, recorded.operation, recorded.workflow, recorded.workflow_run_id) == \
        ("support-ticket", "invoke_workflow", "support-ticket", run.run_id)
    assert recorded.customer_id == "acme" and recorded.duration_ms > 0 and recorded.parent_span_id is None
    assert call.parent_span_id == recorded.span_id and call.trace_id == recorded.trace_id


def test_a_failed_workflow_run_records_its_error():
    with tokentrail.tracking() as log:
        with pytest.raises(KeyError):
            with tokentrail.workflow("nightly"):
                raise KeyError("missing")
    (span,) = log.spans
    assert span.error_type == "KeyError" and span.name == "nightly"
