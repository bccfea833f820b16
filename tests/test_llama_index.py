"""LlamaIndex through its root dispatcher: MockLLM / CustomLLM calls recorded by the LlamaIndex layer, innermost
only; a CustomLLM that calls the real openai SDK (on the fake provider) recorded once, by the SDK patch."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

import tokentrail
from conftest import only
from tokentrail.instrument import llama_index as adapter

HI = [ChatMessage(role="user", content="What causes tides?")]


class ViaOpenAI(CustomLLM):
    """A custom LLM that calls the real openai SDK (llama-index-llms-openai needs openai 2.x; this is its shape)."""

    model: str = "gpt-4o-mini"
    client: Any = None
    aclient: Any = None
    fail_after: int | None = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt}]

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = self.client.chat.completions.create(model=self.model, messages=self._messages(prompt), **kwargs)
        return CompletionResponse(text=reply.choices[0].message.content, raw=reply)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        stream = self.client.chat.completions.create(model=self.model, messages=self._messages(prompt), stream=True,
                                                     stream_options={"include_usage": True})

        def gen():
            text = ""
            for i, chunk in enumerate(stream):
                if self.fail_after is not None and i == self.fail_after:
                    raise ConnectionResetError("connection lost mid-stream")
                delta = (chunk.choices[0].delta.content or "") if chunk.choices else ""
                text += delta
                yield CompletionResponse(text=text, delta=delta, raw=chunk)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = await self.aclient.chat.completions.create(model=self.model, messages=self._messages(prompt))
        return CompletionResponse(text=reply.choices[0].message.content, raw=reply)


class Broken(CustomLLM):
    fail_midway: bool = False

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="broken-1")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise TimeoutError("the model did not answer")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        if not self.fail_midway:
            raise TimeoutError("the model did not answer")

        def gen():
            yield CompletionResponse(text="par", delta="par")
            raise TimeoutError("the model stopped midway")

        return gen()


class Raw(CustomLLM):
    """Returns whatever `raw` and `additional_kwargs` it is given (how integrations hand over usage)."""

    raw: Any = None
    extra: Any = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="ok", raw=self.raw, additional_kwargs=self.extra or {})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        def gen():
            yield CompletionResponse(text="ok", delta="ok", raw=self.raw, additional_kwargs=self.extra or {})

        return gen()


def via_openai(fake, **kwargs) -> ViaOpenAI:
    return ViaOpenAI(client=fake.openai_client(), aclient=fake.async_openai_client(), **kwargs)


def tracer() -> adapter.Tracer:
    return next(h.tracer for h in get_dispatcher().event_handlers if type(h).__name__ == "TokentrailEventHandler")


def by_name(spans):
    return {s.name: s for s in spans}


@pytest.fixture(autouse=True)
def mock_settings():
    Settings.llm, Settings.embed_model = MockLLM(max_tokens=5), MockEmbedding(embed_dim=4)
    yield
    Settings.llm = Settings.embed_model = None


# -- the LlamaIndex layer: innermost only -------------------------------------------------------------------


def test_chat_through_complete_is_recorded_once_by_the_llama_index_layer(log):
    reply = MockLLM(max_tokens=3).chat(HI)
    assert reply.message.content == "text text text"
    call = only(log)  # CustomLLM.chat -> complete: two Start/End pairs, one record (the innermost)
    assert (call.source, call.operation, call.provider, call.error_type) == ("llama_index", "text_completion", "unknown", None)
    assert call.metadata["llama_index_span"] == "MockLLM.chat"  # what the application called
    assert not call.stream and call.duration_ms > 0


def test_streams_record_time_to_first_token_and_async_calls_once(log):
    llm = MockLLM(max_tokens=4)
    assert [r.delta for r in llm.stream_chat(HI)][-1] == "text"

    async def use():
        await llm.achat(HI)
        return [r.delta async for r in await llm.astream_complete("hi")]

    assert asyncio.run(use())[-1] == "text"
    streamed, achat, astreamed = sorted(log.calls, key=lambda c: c.started_at)
    assert streamed.stream and streamed.ttft_ms is not None and streamed.metadata["tokens_estimated"]
    assert not achat.stream and astreamed.stream and len(log.calls) == 3


def test_usage_is_read_from_the_providers_raw_response(fake):
    tokentrail.instrument("llama_index")  # openai not patched: only the LlamaIndex layer sees the call
    fake.settings.cache_read_tokens = 4
    with tokentrail.tracking() as log:
        reply = via_openai(fake).complete("What causes tides?")
    call = only(log)
    usage = reply.raw.usage
    assert (call.source, call.provider, call.request_model) == ("llama_index", "openai", "gpt-4o-mini")
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (usage.prompt_tokens, usage.completion_tokens, 4)
    assert call.response_id == reply.raw.id and call.response_model == reply.raw.model
    assert call.cost_usd == pytest.approx(tokentrail.cost("openai", reply.raw.model, input_tokens=usage.prompt_tokens,
                                                          output_tokens=usage.completion_tokens, cache_read_tokens=4).total_usd)


@pytest.mark.parametrize("raw, extra, expected", [
    ({"usage": {"input_tokens": 7, "output_tokens": 2, "cache_read_input_tokens": 3}}, None, (10, 2)),  # Anthropic, cache added
    ({"prompt_eval_count": 1}, {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}, (5, 1)),  # additional_kwargs
    ({"usage_metadata": {"prompt_token_count": 8, "candidates_token_count": 2}}, None, (8, 2)),  # Gemini
    ("not a response", None, (None, None)),
])
def test_usage_spellings_in_raw_and_additional_kwargs(log, raw, extra, expected):
    Raw(raw=raw, extra=extra).complete("x")
    call = only(log)
    assert (call.input_tokens, call.output_tokens) == expected


def test_embeddings_are_recorded(log):
    MockEmbedding(embed_dim=3).get_text_embedding_batch(["a", "b", "c"])
    call = only(log)
    assert (call.operation, call.source, call.metadata["inputs"]) == ("embeddings", "llama_index", 3)


def test_content_is_kept_only_when_asked(db_url):
    tokentrail.init(db_url, capture_content=True)
    with tokentrail.tracking() as log:
        MockLLM(max_tokens=2).chat(HI)
        FunctionTool.from_defaults(lambda a, b: a + b, name="add").call(a=1, b=2)
    call = only(log)
    assert call.input_messages == [{"role": "user", "content": "user: What causes tides?\nassistant: "}]
    assert call.output_text == "text text"
    assert log.tool_calls[0].arguments == {"a": 1, "b": 2} and log.tool_calls[0].result == "3"


# -- through an SDK tokentrail patches: once, by the SDK -------------------------------------------------------


def test_a_custom_llm_on_the_openai_sdk_is_recorded_once_by_the_sdk_patch(fake, log):
    llm = via_openai(fake)
    llm.chat(HI)  # chat -> complete -> openai
    assert "".join(r.delta for r in llm.stream_complete("hi")) == fake.settings.reply
    asyncio.run(llm.acomplete("hi"))
    chat, streamed, acomplete = sorted(log.calls, key=lambda c: c.started_at)
    assert {c.source for c in log.calls} == {"openai"} and len(log.calls) == 3
    assert chat.metadata["llama_index_span"] == "ViaOpenAI.chat" and chat.input_tokens
    assert streamed.stream and streamed.output_tokens and streamed.ttft_ms is not None
    assert acomplete.metadata["llama_index_span"] == "ViaOpenAI.acomplete"


def test_a_query_engine_is_a_tree_of_spans_over_its_calls(fake, log):
    Settings.llm = via_openai(fake)
    index = VectorStoreIndex.from_documents([Document(text="the moon pulls the sea"), Document(text="the sun is a star")])
    with tokentrail.workflow("ask"):
        index.as_query_engine().query("What causes tides?")
    spans = by_name(log.spans)
    assert {"ask", "RetrieverQueryEngine.query", "VectorIndexRetriever.retrieve", "CompactAndRefine.synthesize"} <= set(spans)
    assert not any("split" in name or name.startswith("MockEmbedding") for name in spans)  # plumbing left out
    query, retrieve = spans["RetrieverQueryEngine.query"], spans["VectorIndexRetriever.retrieve"]
    assert retrieve.operation == "retrieval" and retrieve.parent_span_id == query.span_id
    assert query.parent_span_id == spans["ask"].span_id and query.metadata == {"kind": "query_engine"}
    embedding = next(c for c in log.calls if c.operation == "embeddings" and c.workflow == "ask")
    answer = next(c for c in log.calls if c.source == "openai")
    assert embedding.parent_span_id == retrieve.span_id
    assert answer.parent_span_id == spans["CompactAndRefine.synthesize"].span_id and answer.workflow == "ask"


# -- errors ------------------------------------------------------------------------------------------------------


def test_a_failed_call_has_no_end_event_and_is_recorded_from_the_dropped_span(log):
    with pytest.raises(TimeoutError):
        Broken().chat(HI)
    call = only(log)
    assert (call.source, call.error_type, call.error_category, call.request_model) == ("llama_index", "TimeoutError", "timeout", "broken-1")


def test_an_sdk_error_is_recorded_once_by_the_sdk(fake, log):
    fake.fail(status=429, retry_after=0)
    with pytest.raises(Exception) as raised:
        via_openai(fake).chat(HI)
    call = only(log)
    assert (call.source, call.status_code, call.error_category) == ("openai", 429, "rate_limit")
    assert type(raised.value).__name__ == "RateLimitError"


def test_a_stream_failing_midway_and_a_stream_left_early(log):
    with pytest.raises(TimeoutError, match="midway"):
        list(Broken(fail_midway=True).stream_chat(HI))
    stream = MockLLM(max_tokens=6).stream_complete("hi")
    next(stream)
    stream.close()
    del stream
    gc.collect()
    failed, left = sorted(log.calls, key=lambda c: c.started_at)
    assert (failed.source, failed.error_type, failed.stream) == ("llama_index", "TimeoutError", True)
    assert left.source == "llama_index" and left.metadata["stream_incomplete"] is True and left.error_type is None


def test_an_sdk_stream_the_app_stops_reading_is_the_sdks_record(fake, log):
    replies = via_openai(fake, fail_after=2).stream_complete("hi")
    with pytest.raises(ConnectionResetError):
        list(replies)  # the app's own code fails, not the provider
    del replies
    gc.collect()
    call = only(log)
    assert call.source == "openai" and call.metadata["stream_incomplete"] is True and call.error_type is None


def test_nothing_is_left_open(fake, log):
    llm = via_openai(fake)
    llm.chat(HI)
    list(llm.stream_complete("x"))
    with pytest.raises(TimeoutError):
        Broken().complete("x")
    FunctionTool.from_defaults(lambda: 1, name="one").call()
    state = tracer()
    assert state.runs.open_count() == 0 and not state.calls and not state.up and not state.spans and not state.tools


# -- tools, agents, workflows --------------------------------------------------------------------------------------


def test_tools_are_tool_calls_and_errors_are_recorded(log):
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    tool = FunctionTool.from_defaults(divide)
    assert tool.call(a=6, b=3).content == "2.0"
    with pytest.raises(ZeroDivisionError):
        tool.call(a=1, b=0)
    ok, failed = sorted(log.tool_calls, key=lambda t: t.started_at)
    assert (ok.name, ok.source, ok.error_type) == ("divide", "llama_index", None)
    assert failed.error_type == "ZeroDivisionError"


def test_an_agent_is_a_span_over_its_steps_calls_and_tools(log):
    def add(a: int = 1, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=MockFunctionCallingLLM(), name="calculator")

    async def run():
        return await agent.run("add 1 and 2")

    asyncio.run(run())
    (agent_span,) = [s for s in log.spans if s.metadata["kind"] == "agent"]
    steps = {s.span_id: s for s in log.spans if s.metadata["kind"] == "step"}
    assert agent_span.operation == "invoke_agent" and all(s.parent_span_id == agent_span.span_id for s in steps.values())
    assert len(log.calls) >= 2 and all(steps[c.parent_span_id].name.endswith("run_agent_step") for c in log.calls)
    (tool_call,) = log.tool_calls
    assert tool_call.name == "add" and steps[tool_call.parent_span_id].name.endswith("call_tool")
    assert len({agent_span.trace_id, tool_call.trace_id, *(c.trace_id for c in log.calls)}) == 1


def test_a_workflow_and_its_steps_parent_the_calls_inside(fake, log):
    class Answer(Workflow):
        @step
        async def answer(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=str(await via_openai(fake).acomplete(ev.question)))

    async def run():
        return await Answer().run(question="What causes tides?")

    assert asyncio.run(run()) == fake.settings.reply
    spans = by_name(log.spans)
    call = only(log)
    assert spans["Answer.run"].metadata["kind"] == "workflow" and spans["Answer.answer"].metadata["kind"] == "step"
    assert call.source == "openai" and call.parent_span_id == spans["Answer.answer"].span_id


def test_uninstrument_removes_both_handlers_and_instrument_again_records_once():
    root = get_dispatcher()
    events, spans = len(root.event_handlers), len(root.span_handlers)
    tokentrail.instrument("llama_index")
    assert (len(root.event_handlers), len(root.span_handlers)) == (events + 1, spans + 1)
    tokentrail.uninstrument("llama_index")
    assert (len(root.event_handlers), len(root.span_handlers)) == (events, spans)
    with tokentrail.tracking() as log:
        MockLLM().complete("x")
    assert log.calls == []
    tokentrail.instrument("llama_index")
    with tokentrail.tracking() as log:
        MockLLM().complete("x")
    assert len(log.calls) == 1


def test_providers_from_class_names():
    names = {"openai_llm": "openai", "Anthropic_LLM": "anthropic", "Bedrock_Converse_LLM": "aws.bedrock",
             "OpenAIEmbedding": "openai", "Ollama_llm": "ollama", "MistralAI_LLM": "mistral_ai", "MockLLM": None}
    assert {n: adapter.provider_of({"class_name": n}) for n in names} == names
    assert adapter.provider_of({"class_name": "OpenAILike", "api_base": "https://api.groq.com/openai/v1"}) == "groq"


# -- fuzz -------------------------------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=8))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["usage", "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "id", "model", "x"]),
    inner, max_size=4), max_leaves=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_json, extra=st.one_of(st.none(), st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "y"]), _json)),
       stream=st.booleans(), chat=st.booleans())
def test_fuzz_whatever_raw_holds_the_app_sees_the_same_and_one_record_is_made(raw, extra, stream, chat):
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        raw["id"] = f"lifuzz-{raw['id']}"  # a framework record with an id an SDK record has is dropped as the same call
    def run():
        llm = Raw(raw=raw, extra=extra)
        try:
            if chat:
                replies = list(llm.stream_chat(HI)) if stream else [llm.chat(HI)]
                return [(r.message.content, r.raw == raw) for r in replies]
            replies = list(llm.stream_complete("q")) if stream else [llm.complete("q")]
            return [(r.text, r.raw == raw) for r in replies]
        except Exception as exc:  # noqa: BLE001 - the same exception either way
            return type(exc), str(exc)

    tokentrail.uninstrument("llama_index")
    expected = run()
    tokentrail.instrument("llama_index")
    with tokentrail.tracking() as log:
        assert run() == expected
    assert len(log.calls) == 1
    tokentrail.uninstrument("llama_index")


def test_the_handlers_never_raise_whatever_they_are_given(log):
    state = tracer()
    for value in [None, 1, "x", object(), [None], {"span_id": 3}]:
        state.span_enter(value, value, value, value)  # type: ignore[arg-type]
        state.span_end(value, result=value, error=value)  # type: ignore[arg-type]
        state.on_event(value)
    MockLLM().complete("still fine")
    assert len(log.calls) == 1
