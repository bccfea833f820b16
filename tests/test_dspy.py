"""Real DSPy programs against tokentrail.testing's fake provider over real HTTP (127.0.0.1): modules as
parent spans, LM calls recorded once through DSPy's own engine, through LiteLLM (its own handler or the
openai SDK), cache hits, errors, budgets, async, and a fuzz test of what the provider sends.

Runs in the environment with openai 2.x (DSPy needs LiteLLM, which needs `openai<3`); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never download LiteLLM's price map
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="tokentrail-dspy-"))  # never the user's cache
dspy = pytest.importorskip("dspy")

from dspy.utils.dummies import DummyLM  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import tokentrail  # noqa: E402
from conftest import only  # noqa: E402
from tokentrail.instrument import dspy as adapter  # noqa: E402
from tokentrail.testing import FakeProvider, Settings  # noqa: E402

REPLY = "[[ ## reasoning ## ]]\nIt is the capital.\n\n[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
FAKE = FakeProvider()
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)


@pytest.fixture(scope="module")
def url():
    with FAKE.serve() as base:
        yield base


@pytest.fixture(autouse=True)
def fresh_fake():
    FAKE.settings = Settings(reply=REPLY)
    FAKE.requests.clear()
    yield


def lm(url, model="openai/gpt-4o-mini", **kwargs):
    kwargs.setdefault("cache", False)
    kwargs.setdefault("num_retries", 0)
    base = f"{url}/v1"
    if model.startswith("anthropic/") and kwargs.get("engine") == "litellm":
        base = url  # LiteLLM adds /v1 for Anthropic itself
    return dspy.LM(model, api_base=base, api_key="sk-test", **kwargs)


def priced(call, provider):
    return tokentrail.cost(provider, call.response_model or call.request_model, input_tokens=call.input_tokens,
                           output_tokens=call.output_tokens, cache_read_tokens=call.cache_read_tokens or 0,
                           cache_write_tokens=call.cache_write_tokens or 0).total_usd


def ask(model, question="What is the capital of France?"):
    with dspy.context(lm=model):
        return dspy.Predict("question -> answer")(question=question)


def spans_by_name(log):
    return {s.name: s for s in log.spans}


# -- DSPy's own HTTP engine: DSPy's record is the call -------------------------------------------------------


def test_predict_through_dspys_own_engine_records_the_call_under_its_module(url, log):
    FAKE.settings.cache_read_tokens = 100
    answer = ask(lm(url))
    assert answer.answer == "Paris"  # the program's result is untouched
    call = only(log)
    assert (call.source, call.provider, call.operation) == ("dspy", "openai", "chat")
    assert (call.request_model, call.response_model) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert call.input_tokens > 100 and call.cache_read_tokens == 100 and call.output_tokens == len(REPLY.split(" "))
    assert call.cost_usd == pytest.approx(priced(call, "openai")) and call.cost_usd > 0
    assert call.metadata["dspy_cost"] > 0  # DSPy's own figure, kept beside ours
    assert call.message_count == 2 and call.finish_reasons == ["stop"] and call.error_type is None
    predict = spans_by_name(log)["Predict"]
    assert (predict.operation, predict.source, predict.metadata) == ("invoke_workflow", "dspy", {"kind": "module"})
    assert call.parent_span_id == predict.span_id and call.trace_id == predict.trace_id


def test_anthropic_through_dspys_own_engine_counts_cache_reads_and_writes_once(url, log):
    FAKE.settings.cache_read_tokens, FAKE.settings.cache_write_tokens = 50, 20
    ask(lm(url, "anthropic/claude-3-5-haiku-latest"))
    call = only(log)
    assert (call.source, call.provider, call.response_model) == ("dspy", "anthropic", "claude-3-5-haiku-20241022")
    assert (call.cache_read_tokens, call.cache_write_tokens) == (50, 20) and call.input_tokens > 70
    assert call.cost_usd == pytest.approx(priced(call, "anthropic"))


def test_nested_modules_are_the_parents_of_their_calls(url, log):
    class Answer(dspy.Module):
        def __init__(self):
            super().__init__()
            self.draft = dspy.Predict("question -> answer")
            self.think = dspy.ChainOfThought("question -> answer")

        def forward(self, question):
            self.draft(question=question)
            return self.think(question=question)

    with tokentrail.workflow("qa"), dspy.context(lm=lm(url)):
        assert Answer()(question="Capital of France?").answer == "Paris"
    spans = {(s.name, s.parent_span_id): s for s in log.spans}
    (workflow,) = [s for s in log.spans if s.name == "qa"]
    program = spans[("Answer", workflow.span_id)]
    chain = spans[("ChainOfThought", program.span_id)]
    draft, inner = spans[("Predict", program.span_id)], spans[("Predict", chain.span_id)]
    first, second = log.calls
    assert (first.parent_span_id, second.parent_span_id) == (draft.span_id, inner.span_id)
    assert {c.workflow for c in log.calls} == {"qa"} and len({s.trace_id for s in log.spans}) == 1


def test_async_module_and_lm_call(url, log):
    async def main():
        with dspy.context(lm=lm(url)), tokentrail.attributes(user_id="ada"):
            return await dspy.Predict("question -> answer").acall(question="Capital?")

    assert asyncio.run(main()).answer == "Paris"
    call = only(log)
    assert call.source == "dspy" and call.user_id == "ada" and call.output_tokens > 0
    assert call.parent_span_id == spans_by_name(log)["Predict"].span_id


# -- through LiteLLM: the innermost layer records ------------------------------------------------------------------


def test_engine_litellm_through_the_openai_sdk_is_recorded_once_by_the_sdk(url, log):
    ask(lm(url, engine="litellm"))
    call = only(log)
    assert call.source == "openai" and call.metadata["litellm_call_id"]  # the SDK's record, LiteLLM's labels
    assert call.parent_span_id == spans_by_name(log)["Predict"].span_id  # DSPy's module, not a deferred call


def test_engine_litellm_through_litellms_own_handler_is_recorded_once_by_litellm(url, log):
    ask(lm(url, "anthropic/claude-3-5-haiku-latest", engine="litellm"))
    call = only(log)
    assert (call.source, call.provider) == ("litellm", "anthropic") and call.output_tokens > 0
    assert call.parent_span_id == spans_by_name(log)["Predict"].span_id


def test_async_engine_litellm(url, log):
    async def main():
        with dspy.context(lm=lm(url, engine="litellm")):
            return await dspy.Predict("question -> answer").acall(question="Capital?")

    asyncio.run(main())
    call = only(log)
    assert call.source == "openai" and call.parent_span_id == spans_by_name(log)["Predict"].span_id


def test_a_direct_lm_call_and_a_fake_model(url, log):
    assert lm(url)("Say hi") == [REPLY]  # a bare LM call: no module around it
    with dspy.context(lm=DummyLM([{"answer": "42"}])):
        dspy.Predict("question -> answer")(question="?")
    direct, dummy = log.calls
    assert direct.source == "dspy" and direct.parent_span_id is None and direct.output_tokens > 0
    assert (dummy.source, dummy.request_model, dummy.input_tokens, dummy.cost_usd) == ("dspy", "dummy", None, None)


# -- cache hits, errors, budgets ----------------------------------------------------------------------------------


def test_cache_hits_are_recorded_as_cache_hits_with_no_cost(url, log):
    cached = lm(url, cache=True)
    question = f"unique question {time.time_ns()}"
    first, again = ask(cached, question), ask(cached, question)
    assert first.answer == again.answer and len(FAKE.requests) == 1  # DSPy answered the second from its cache
    paid, hit = log.calls
    assert paid.cache_hit is None and paid.cost_usd > 0
    assert hit.cache_hit is True and hit.cost_usd == 0.0 and hit.input_tokens is None and hit.output_tokens is None
    assert "dspy_cost" not in (hit.metadata or {})  # DSPy repeats the first call's cost on a hit


def test_errors_are_recorded_with_status_and_category(url, log):
    FAKE.fail(429, retry_after=0)
    with pytest.raises(dspy.utils.exceptions.LMRateLimitError):
        lm(url)("Say hi")
    call = only(log)
    assert (call.status_code, call.error_category, call.error_type) == (429, "rate_limit", "LMRateLimitError")
    assert call.cost_usd == 0.0 and call.source == "dspy"


def test_module_error_is_recorded_on_its_span(url, log):
    FAKE.fail(500)
    with pytest.raises(dspy.utils.exceptions.LMError):
        ask(lm(url))
    assert spans_by_name(log)["Predict"].error_category == "server"
    assert only(log).error_category == "server"


def test_a_budget_set_to_raise_stops_the_lm_call_before_the_provider(url, db_url):
    tokentrail.init(db_url, budgets=[tokentrail.Budget(limit_tokens=1, period="total", action="raise")])
    model = lm(url)
    model("Say hi")
    assert tokentrail.flush(10)
    with pytest.raises(tokentrail.BudgetExceeded):
        model("Say hi again")
    assert len(FAKE.requests) == 1


def test_content_captured_when_asked(url, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=12)
    with tokentrail.tracking() as log:
        lm(url)("Say hi")
    call = only(log)
    assert call.input_messages == [{"role": "user", "content": "Say hi"}] and call.output_text == REPLY[:12]


def test_uninstrument_restores_dspy(url):
    original_call = dspy.Module.__dict__["__call__"]
    tokentrail.instrument("dspy")
    assert dspy.Module.__dict__["__call__"] is not original_call
    tokentrail.uninstrument("dspy")
    assert dspy.Module.__dict__["__call__"] is original_call
    with tokentrail.tracking() as log:
        ask(lm(url))
    assert log.calls == [] and log.spans == []


def test_split_model():
    assert adapter.split_model("openai/gpt-4o-mini") == ("gpt-4o-mini", "openai")
    assert adapter.split_model("azure/my-deployment") == ("my-deployment", "azure.ai.openai")
    assert adapter.split_model("dummy") == ("dummy", None)


# -- fuzz: whatever the provider sends, the program sees the same thing, and one record is made ---------------------

_FUZZ: dict[str, tuple[int, str, bytes]] = {}


class _Replay(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, kind, data = _FUZZ["reply"]
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def replay_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values, "completion_tokens": json_values, "total_tokens": json_values,
    "prompt_tokens_details": json_values, "completion_tokens_details": json_values})
choices = json_values | st.lists(st.fixed_dictionaries({}, optional={
    "message": json_values | st.fixed_dictionaries({"role": st.just("assistant")}, optional={"content": json_values}),
    "finish_reason": json_values, "index": json_values}), max_size=3)
bodies = st.fixed_dictionaries({}, optional={"id": json_values, "model": json_values, "object": json_values,
                                             "choices": choices, "usage": usages})


@st.composite
def replies(draw):
    data = json.dumps(draw(bodies)).encode()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from([200, 200, 200, 400, 429, 500])), "application/json", data


def outcome(model):
    try:
        return "ok", repr(model("Say hi"))
    except Exception as exc:  # noqa: BLE001 - we compare what the program would see
        return "raised", type(exc).__name__, getattr(exc, "status", None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies())
def test_fuzz_the_program_sees_the_same_results_and_one_record(replay_url, reply):
    _FUZZ["reply"] = reply
    model = dspy.LM("openai/gpt-4o-mini", api_base=f"{replay_url}/v1", api_key="k", cache=False, num_retries=0)
    tokentrail.uninstrument()
    bare = outcome(model)
    tokentrail.instrument("dspy")
    with tokentrail.tracking() as log:
        tracked = outcome(model)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == "gpt-4o-mini" and call.provider == "openai" and call.source == "dspy"
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    assert (call.error_type is not None) == (bare[0] == "raised")
