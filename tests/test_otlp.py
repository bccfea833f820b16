"""The `otel` sink: spans and metrics checked name by name against the semconv package and value by value
against the records; then over real OTLP/HTTP to a receiver this module starts (protobuf decoded)."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g  # noqa: E402
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm  # noqa: E402
from opentelemetry.semconv.attributes import (error_attributes, exception_attributes, http_attributes,  # noqa: E402
                                              server_attributes)

import tokentrail  # noqa: E402
from tokentrail import context  # noqa: E402
from tokentrail.errors import ConfigError, RecordsRejected  # noqa: E402
from tokentrail.record import LLMCall, ToolCall  # noqa: E402
from tokentrail.sinks import otlp  # noqa: E402
from tokentrail.sinks.otlp import OTelSink  # noqa: E402

# Every name the convention package defines (attributes and metrics): an emitted name is one of these or ours.
CONVENTION = {value for module in (g, server_attributes, error_attributes, exception_attributes, http_attributes)
              for name, value in vars(module).items() if name.isupper() and isinstance(value, str)}
METRIC_NAMES = {value for name, value in vars(gm).items() if name.startswith("GEN_AI_") and isinstance(value, str)}
SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


class OTel:
    """In-memory providers behind one OTelSink, and readers of what they got."""

    def __init__(self, sampler=None, **sink_options):
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.sink = OTelSink(self.tracer_provider, self.meter_provider, **sink_options)

    def spans(self):
        tokentrail.flush(5)
        return {span.name: span for span in self.spans_out.get_finished_spans()}

    def metrics(self):
        tokentrail.flush(5)
        found = {}
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


@pytest.fixture
def otel():
    return OTel()


def start(otel, **options):
    options.setdefault("capture_content", False)
    tokentrail.init(store=None, exporters=[otel.sink], instrument=False, **options)


def ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


def check_names(span_or_attrs):
    attributes = getattr(span_or_attrs, "attributes", span_or_attrs)
    for name in attributes:
        assert name in CONVENTION or name.startswith("tokentrail."), f"{name} is not a semconv name nor ours"


def points(metric):
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}


# -- spans ------------------------------------------------------------------------------------------------


def test_a_chat_call_is_one_client_span_with_every_field_of_its_record(otel):
    start(otel)
    with tokentrail.tracking() as log:
        with tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", session_id="conv-9",
                                   tags={"team": "core"}):
            with tokentrail.track_llm_call("openai", "gpt-4o", tags=["beta"]) as span:
                span.set_tokens(input=1200, output=300, cache_read=1000, cache_write=50, reasoning=100)
                span.set_request_params(temperature=0.2, top_p=0.9, top_k=40, max_completion_tokens=512,
                                        stop=["END", "STOP"], frequency_penalty=0.5, presence_penalty=0.1, seed=7, n=2)
                span.set_request_id("chatcmpl-1")
                span.set_response_model("gpt-4o-2024-08-06")
                span.set_finish_reasons("stop", "length")
                span.set_attempt(2)
                tokentrail.set_llm_attributes(server_address="api.openai.com", server_port=443)
    call = log.calls[0]
    exported = otel.spans()["chat gpt-4o"]
    check_names(exported)
    assert exported.kind is trace.SpanKind.CLIENT
    assert exported.context.trace_id == int(call.trace_id, 16) and exported.context.span_id == int(call.span_id, 16)
    assert exported.parent is None
    assert exported.start_time == ns(call.started_at)
    assert exported.end_time - exported.start_time == int(call.duration_ms * 1e6)
    assert exported.status.status_code is trace.StatusCode.UNSET
    assert dict(exported.attributes) == {
        g.GEN_AI_OPERATION_NAME: g.GenAiOperationNameValues.CHAT.value,
        g.GEN_AI_PROVIDER_NAME: g.GenAiProviderNameValues.OPENAI.value,
        g.GEN_AI_REQUEST_MODEL: "gpt-4o",
        g.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        g.GEN_AI_RESPONSE_ID: "chatcmpl-1",
        g.GEN_AI_RESPONSE_FINISH_REASONS: ("stop", "length"),
        g.GEN_AI_REQUEST_STREAM: False,
        g.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        g.GEN_AI_REQUEST_TOP_P: 0.9,
        g.GEN_AI_REQUEST_TOP_K: 40,
        g.GEN_AI_REQUEST_MAX_TOKENS: 512,
        g.GEN_AI_REQUEST_STOP_SEQUENCES: ("END", "STOP"),
        g.GEN_AI_REQUEST_FREQUENCY_PENALTY: 0.5,
        g.GEN_AI_REQUEST_PRESENCE_PENALTY: 0.1,
        g.GEN_AI_REQUEST_SEED: 7,
        g.GEN_AI_REQUEST_CHOICE_COUNT: 2,
        g.GEN_AI_USAGE_INPUT_TOKENS: 1200,
        g.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
        g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000,
        g.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 50,
        g.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 100,
        g.GEN_AI_CONVERSATION_ID: "conv-9",
        server_attributes.SERVER_ADDRESS: "api.openai.com",
        server_attributes.SERVER_PORT: 443,
        "tokentrail.cost_usd": call.cost_usd,
        "tokentrail.input_cost_usd": call.input_cost_usd,
        "tokentrail.output_cost_usd": call.output_cost_usd,
        "tokentrail.user_id": "u1",
        "tokentrail.customer_id": "acme",
        "tokentrail.feature": "search",
        "tokentrail.attempt": 2,
        "tokentrail.source": "manual",
        "tokentrail.record_id": call.id,
        "tokentrail.tag.team": "core",
        "tokentrail.tag.beta": True,
    }
    assert call.cost_usd is not None and call.cost_usd > 0


def test_a_stream_has_its_time_to_first_chunk(otel):
    start(otel)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("anthropic", "claude-sonnet-4-5") as span:
            span.set_streaming(ttft_ms=250.0, chunk_count=12)
            span.set_tokens(input=10, output=20)
    exported = otel.spans()["chat claude-sonnet-4-5"]
    assert exported.attributes[g.GEN_AI_REQUEST_STREAM] is True
    assert exported.attributes[g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.25)
    assert exported.attributes["tokentrail.chunk_count"] == 12
    assert exported.attributes[g.GEN_AI_PROVIDER_NAME] == g.GenAiProviderNameValues.ANTHROPIC.value
    ttfc = otel.metrics()[gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK]
    (point,) = ttfc.data.data_points
    assert point.sum == pytest.approx(log.calls[0].ttft_ms / 1000) and list(point.explicit_bounds) == SECONDS


def test_a_failed_call_has_error_type_status_and_exception_event(otel):
    class RateLimitError(Exception):
        status_code = 429

    start(otel)
    with tokentrail.tracking() as log, pytest.raises(RateLimitError):
        with tokentrail.track_llm_call("openai", "gpt-4o-mini"):
            raise RateLimitError("slow down")
    call = log.calls[0]
    exported = otel.spans()["chat gpt-4o-mini"]
    check_names(exported)
    assert exported.status.status_code is trace.StatusCode.ERROR and exported.status.description == "slow down"
    assert exported.attributes[error_attributes.ERROR_TYPE] == "RateLimitError" == call.error_type
    assert exported.attributes["tokentrail.error_category"] == "rate_limit" == call.error_category
    assert exported.attributes[http_attributes.HTTP_RESPONSE_STATUS_CODE] == 429
    (event,) = exported.events
    assert event.name == "exception" and event.timestamp == exported.end_time
    assert dict(event.attributes) == {exception_attributes.EXCEPTION_TYPE: "RateLimitError",
                                      exception_attributes.EXCEPTION_MESSAGE: "slow down"}
    duration = otel.metrics()[gm.GEN_AI_CLIENT_OPERATION_DURATION]
    (point,) = duration.data.data_points
    assert point.attributes[error_attributes.ERROR_TYPE] == "RateLimitError"


def test_an_error_without_a_class_is_other(otel):
    start(otel)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.set_error("it broke", category="server")
    exported = otel.spans()["chat gpt-4o"]
    assert exported.attributes[error_attributes.ERROR_TYPE] == "Error"  # what the record says
    assert exported.status.status_code is trace.StatusCode.ERROR


def test_workflow_tool_and_calls_form_one_trace_with_our_ids(otel):
    start(otel, capture_content=True)
    with tokentrail.tracking() as log:
        with tokentrail.workflow("triage", customer_id="acme") as run:
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input=5, output=5)
            with tokentrail.track_tool_call("search", tool_call_id="call_1", arguments={"q": "x"}) as tool:
                tool.set_result("found")
    spans = otel.spans()
    flow, chat, tool = spans["invoke_workflow triage"], spans["chat gpt-4o"], spans["execute_tool search"]
    for exported in (flow, chat, tool):
        check_names(exported)
        assert exported.context.trace_id == run.trace
    assert flow.parent is None and flow.context.span_id == run.span
    assert chat.parent.span_id == flow.context.span_id and tool.parent.span_id == flow.context.span_id
    assert flow.kind is tool.kind is trace.SpanKind.INTERNAL
    assert flow.attributes[g.GEN_AI_OPERATION_NAME] == g.GenAiOperationNameValues.INVOKE_WORKFLOW.value
    assert flow.attributes[g.GEN_AI_WORKFLOW_NAME] == "triage"
    assert flow.attributes["tokentrail.workflow_run_id"] == run.run_id
    tool_record = log.tool_calls[0]
    assert tool.context.span_id == int(tool_record.span_id, 16)
    assert tool.attributes[g.GEN_AI_OPERATION_NAME] == g.GenAiOperationNameValues.EXECUTE_TOOL.value
    assert tool.attributes[g.GEN_AI_TOOL_NAME] == "search"
    assert tool.attributes[g.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert tool.attributes[g.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"q": "x"}'
    assert tool.attributes[g.GEN_AI_TOOL_CALL_RESULT] == "found"
    assert chat.attributes["tokentrail.workflow"] == "triage"


def test_a_failed_tool_is_an_error_span(otel):
    start(otel)
    with pytest.raises(KeyError):
        with tokentrail.track_tool_call("lookup"):
            raise KeyError("missing")
    exported = otel.spans()["execute_tool lookup"]
    assert exported.status.status_code is trace.StatusCode.ERROR
    assert exported.attributes[error_attributes.ERROR_TYPE] == "KeyError"


def test_an_application_span_is_the_parent_of_a_call_made_inside_it(otel):
    """The core reads the application's span as the call starts (read_parent); a record that carries
    its ids is exported as its child, in its trace."""
    app = otel.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /ask") as request:
        assert otel.sink.read_parent() == (request.get_span_context().trace_id, request.get_span_context().span_id)
    assert otel.sink.read_parent() is None
    ctx = request.get_span_context()
    record = LLMCall(id="r1", trace_id=f"{ctx.trace_id:032x}", span_id="00000000000000a1",
                     parent_span_id=f"{ctx.span_id:016x}", started_at=datetime.now(timezone.utc), duration_ms=5.0,
                     provider="openai", request_model="gpt-4o")
    otel.sink.export([record])
    exported = {s.name: s for s in otel.spans_out.get_finished_spans()}["chat gpt-4o"]
    assert exported.context.trace_id == ctx.trace_id and exported.parent.span_id == ctx.span_id
    assert exported.context.span_id == 0xA1


@pytest.mark.skipif(not hasattr(context, "install_readers"), reason="needs the core's context-reader hook")
def test_a_call_inside_an_application_span_is_its_child_end_to_end(otel):
    start(otel)
    app = otel.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /ask") as request:
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
    exported = otel.spans()["chat gpt-4o"]
    assert exported.context.trace_id == request.get_span_context().trace_id
    assert exported.parent.span_id == request.get_span_context().span_id


def test_an_sdk_call_names_the_server_its_client_sends_to(otel, fake):
    import openai

    start(otel)
    tokentrail.instrument("openai")
    with fake.serve() as url:  # real HTTP: the client's base URL is the fake's host and port
        port = int(url.rsplit(":", 1)[1])
        openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    fake.openai_client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    spans = otel.spans()
    assert spans["chat gpt-4o"].attributes[server_attributes.SERVER_ADDRESS] == "127.0.0.1"
    assert spans["chat gpt-4o"].attributes[server_attributes.SERVER_PORT] == port
    assert spans["chat gpt-4o-mini"].attributes[server_attributes.SERVER_ADDRESS] == "api.openai.com"
    assert spans["chat gpt-4o-mini"].attributes[server_attributes.SERVER_PORT] == 443  # https's, not written


def test_the_applications_own_spans_keep_their_ids(otel):
    start(otel)
    with tokentrail.track_llm_call("openai", "gpt-4o"):
        pass
    otel.spans()
    ours = otel.sink.tracer  # the tracer of the `tokentrail` scope, the only one our generator is installed on
    assert isinstance(ours.id_generator, otlp.RecordIds)
    other = otel.tracer_provider.get_tracer("app")
    assert not isinstance(other.id_generator, otlp.RecordIds)
    with ours.start_as_current_span("not a record") as span:  # no record being exported: random ids
        assert span.get_span_context().span_id != 0


def test_content_is_sent_only_when_captured(otel):
    start(otel, capture_content=False)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.set_content(input=[{"role": "user", "content": "hi"}], output="hello")
    exported = otel.spans()["chat gpt-4o"]
    assert g.GEN_AI_INPUT_MESSAGES not in exported.attributes and g.GEN_AI_OUTPUT_MESSAGES not in exported.attributes


def test_captured_content_is_in_the_conventions_message_shape(otel):
    import json

    start(otel, capture_content=True)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image_url", "image_url": {"url": "data:..."}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
    ]
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.set_content(input=messages, output="It rains.")
        span.set_finish_reasons("stop")
    exported = otel.spans()["chat gpt-4o"]
    assert json.loads(exported.attributes[g.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}, {"type": "image_url"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "weather", "arguments": "{\"city\": \"Oslo\"}"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "rain"}]},
    ]
    assert json.loads(exported.attributes[g.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It rains."}], "finish_reason": "stop"}]


def test_a_trace_the_sampler_drops_is_dropped_whole():
    dropped = OTel(sampler=ParentBased(TraceIdRatioBased(0.0)))
    start(dropped)
    with tokentrail.workflow("w"):
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
    assert dropped.spans() == {}


def test_a_record_that_cannot_be_sent_is_rejected_and_the_rest_go(otel):
    good = LLMCall(id="g", trace_id="0" * 31 + "1", span_id="0" * 15 + "2", started_at=datetime.now(timezone.utc),
                   duration_ms=1.0, provider="openai", request_model="gpt-4o")
    bad = ToolCall(id="b", trace_id="0" * 31 + "1", span_id="0" * 15 + "3", name="x")  # no start time
    with pytest.raises(RecordsRejected) as caught:
        otel.sink.export([bad, good])
    assert caught.value.count == 1
    assert [s.name for s in otel.spans_out.get_finished_spans()] == ["chat gpt-4o"]


def test_every_emitted_name_is_the_conventions_or_ours(otel):
    start(otel, capture_content=True)
    with tokentrail.attributes(user_id="u", session_id="s"):
        with tokentrail.workflow("w"):
            with tokentrail.track_llm_call("gcp.gemini", "gemini-2.0-flash", operation="generate_content") as span:
                span.set_streaming(ttft_ms=10)
                span.set_content(input="hi", output="yo")
            with tokentrail.track_tool_call("t", tool_call_id="1", arguments={"a": 1}):
                pass
            with pytest.raises(ValueError), tokentrail.track_llm_call("openai", "text-embedding-3-small", operation="embeddings"):
                raise ValueError("bad")
    spans = otel.spans()
    assert set(spans) == {"invoke_workflow w", "generate_content gemini-2.0-flash", "execute_tool t",
                          "embeddings text-embedding-3-small"}
    for exported in spans.values():
        check_names(exported)
        for event in exported.events:
            check_names(event.attributes)
    for name, metric in otel.metrics().items():
        assert name in METRIC_NAMES or name.startswith("tokentrail."), name
        for point in metric.data.data_points:
            check_names(point.attributes)


# -- metrics ----------------------------------------------------------------------------------------------


def test_token_usage_and_duration_histograms_use_the_conventions_buckets(otel):
    start(otel)
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=100, output=40)
            span.set_response_model("gpt-4o-2024-08-06")
    call = log.calls[0]
    metrics = otel.metrics()
    base = {g.GEN_AI_OPERATION_NAME: "chat", g.GEN_AI_PROVIDER_NAME: "openai", g.GEN_AI_REQUEST_MODEL: "gpt-4o",
            g.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06"}
    usage = metrics[gm.GEN_AI_CLIENT_TOKEN_USAGE]
    assert usage.unit == "{token}"
    by_type = {p.attributes[g.GEN_AI_TOKEN_TYPE]: p for p in usage.data.data_points}
    assert by_type[g.GenAiTokenTypeValues.INPUT.value].sum == call.input_tokens
    assert by_type[g.GenAiTokenTypeValues.OUTPUT.value].sum == call.output_tokens
    for point in by_type.values():
        assert list(point.explicit_bounds) == TOKENS
        assert {k: v for k, v in point.attributes.items() if k != g.GEN_AI_TOKEN_TYPE} == base
    duration = metrics[gm.GEN_AI_CLIENT_OPERATION_DURATION]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.sum == pytest.approx(call.duration_ms / 1000) and list(point.explicit_bounds) == SECONDS
    assert dict(point.attributes) == base
    assert gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK not in metrics  # not a stream


def test_cost_counter_carries_provider_model_and_attribution(otel):
    start(otel)
    with tokentrail.tracking() as log:
        with tokentrail.attributes(customer_id="acme", feature="search", user_id="u1"):
            for _ in range(2):
                with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                    span.set_tokens(input=1000, output=100)
        with tokentrail.track_llm_call("acme-llm", "unknown-model") as span:  # no price: no cost point
            span.set_tokens(input=1, output=1)
    cost = otel.metrics()[otlp.COST_METRIC]
    assert cost.unit == "USD"
    (point,) = cost.data.data_points
    assert point.value == pytest.approx(sum(c.cost_usd for c in log.calls if c.cost_usd is not None))
    assert dict(point.attributes) == {g.GEN_AI_OPERATION_NAME: "chat", g.GEN_AI_PROVIDER_NAME: "openai",
                                      g.GEN_AI_REQUEST_MODEL: "gpt-4o", "tokentrail.customer_id": "acme",
                                      "tokentrail.feature": "search"}  # user_id: not by default


def test_cost_attribution_is_configurable():
    otel = OTel(metric_attribution=("user_id",))
    start(otel)
    with tokentrail.attributes(user_id="u1"), tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.set_tokens(input=10, output=10)
    (point,) = otel.metrics()[otlp.COST_METRIC].data.data_points
    assert point.attributes["tokentrail.user_id"] == "u1"


def test_attempts_count_retries(otel):
    start(otel)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.set_attempt(3)
    with tokentrail.track_llm_call("openai", "gpt-4o"):
        pass
    (point,) = otel.metrics()[otlp.ATTEMPTS_METRIC].data.data_points
    assert point.value == 4


# -- wiring ---------------------------------------------------------------------------------------------


def test_without_opentelemetry_init_fails_with_the_install_command(monkeypatch):
    monkeypatch.setattr(otlp, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'tokentrail\[otel\]'"):
        tokentrail.init(store=None, exporters=["otel"], instrument=False)


@pytest.mark.skipif(otlp._installed("opentelemetry.exporter.otlp.proto.grpc"), reason="the gRPC exporter is installed")
def test_grpc_without_its_package_fails_at_init(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        tokentrail.init(store=None, exporters=["otel"], instrument=False)


def test_an_unknown_protocol_fails_at_init(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match="http/protobuf, grpc"):
        tokentrail.init(store=None, exporters=["otel"], instrument=False)


def test_the_applications_global_providers_are_used(tmp_path):
    """A process of its own: the global providers can be set once per process."""
    code = textwrap.dedent("""
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import tokentrail

        tokentrail.init(store=None, exporters=["otel"], instrument=False)   # before the app's setup: followed
        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        with tokentrail.tracking() as log, tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=3, output=4)
        tokentrail.flush(5)
        (exported,) = spans.get_finished_spans()
        assert exported.name == "chat gpt-4o" and exported.context.span_id == int(log.calls[0].span_id, 16)
        names = [m.name for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
        assert "gen_ai.client.token.usage" in names, names
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**_clean_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_an_app_with_tracing_only_gets_no_metrics_to_an_unconfigured_endpoint(tmp_path):
    code = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        import tokentrail
        trace.set_tracer_provider(TracerProvider())
        sink = tokentrail.init(store=None, exporters=["otel"], instrument=False).sinks[0]
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        tokentrail.flush(5)
        assert sink.tracer is not None and sink.instruments is None and sink.owned == []
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=_clean_env())
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _clean_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}


# -- over OTLP/HTTP to a local receiver -------------------------------------------------------------------


class Receiver:
    """A tiny OTLP/HTTP receiver: decodes each protobuf request; `status` and `delay` make it fail or hang."""

    def __init__(self, status=200, delay=0.0):
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.status, self.delay = status, delay
        self.traces, self.metrics, self.headers = [], [], []
        receiver = self
        kinds = {"/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse, self.traces),
                 "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse, self.metrics)}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request_type, response_type, found = kinds[self.path]
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.headers.append(dict(self.headers))
                if receiver.status != 200:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found.append(request_type.FromString(body))
                payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the exporter gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    made = []

    def make(**options):
        found = Receiver(**options)
        made.append(found)
        for name in [n for n in __import__("os").environ if n.startswith("OTEL_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=core")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        return found

    yield make
    for found in made:
        found.close()


def _no_global_providers():
    return otlp._global_tracer_provider() is None and otlp._global_meter_provider() is None


@pytest.mark.skipif(not _no_global_providers(), reason="this process has global OpenTelemetry providers")
def test_spans_and_metrics_reach_an_otlp_receiver(receiver):
    got = receiver()
    tokentrail.init(store=None, exporters=["otel"], instrument=False)
    with tokentrail.tracking() as log:
        with tokentrail.workflow("checkout-flow"):
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input=100, output=50)
    calls = log.calls
    tokentrail.shutdown(timeout=10)  # closes the sink: flushes our providers
    spans = [span for request in got.traces for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    by_name = {span.name: span for span in spans}
    chat, flow = by_name["chat gpt-4o"], by_name["invoke_workflow checkout-flow"]
    assert chat.trace_id.hex() == calls[0].trace_id and chat.span_id.hex() == calls[0].span_id
    assert chat.parent_span_id == flow.span_id
    assert chat.kind == 3  # SPAN_KIND_CLIENT
    assert chat.start_time_unix_nano == ns(calls[0].started_at)
    attributes = {a.key: a.value for a in chat.attributes}
    assert attributes[g.GEN_AI_USAGE_INPUT_TOKENS].int_value == 100
    assert attributes[g.GEN_AI_PROVIDER_NAME].string_value == "openai"
    resource = {a.key: a.value.string_value for a in got.traces[0].resource_spans[0].resource.attributes}
    assert resource["service.name"] == "checkout"
    assert got.traces[0].resource_spans[0].scope_spans[0].scope.name == "tokentrail"
    assert got.headers[0]["x-team"] == "core"
    metrics = {m.name: m for request in got.metrics for rm in request.resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics}
    usage = metrics[gm.GEN_AI_CLIENT_TOKEN_USAGE].histogram.data_points
    assert list(usage[0].explicit_bounds) == TOKENS and sorted(p.sum for p in usage) == [50, 100]
    assert otlp.COST_METRIC in metrics and gm.GEN_AI_CLIENT_OPERATION_DURATION in metrics


@pytest.mark.skipif(not _no_global_providers(), reason="this process has global OpenTelemetry providers")
def test_a_failing_receiver_is_counted_and_logged_once_and_never_slows_the_app(receiver, caplog):
    receiver(status=503)
    caplog.set_level(logging.ERROR, logger="tokentrail")
    tracker = tokentrail.init(store=None, exporters=["otel"], instrument=False)
    sink = tracker.sinks[0]
    started = time.perf_counter()
    for _ in range(2):
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        tokentrail.flush(5)
        sink.force_flush(3)
    assert time.perf_counter() - started < 8
    assert sink.failures["traces"] >= 2
    ours = [r for r in caplog.records if r.name == "tokentrail" and "sending traces" in r.getMessage()]
    assert len(ours) == 1


@pytest.mark.skipif(not _no_global_providers(), reason="this process has global OpenTelemetry providers")
def test_a_hanging_receiver_does_not_block_export_or_shutdown(receiver):
    receiver(delay=5)
    tracker = tokentrail.init(store=None, exporters=["otel"], instrument=False, shutdown_timeout=2)
    sink = tracker.sinks[0]
    sink.close_timeout = 1
    started = time.perf_counter()
    for _ in range(50):
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
    assert time.perf_counter() - started < 0.5  # the calls never wait on the network
    assert tokentrail.flush(5)  # the sink took them: export only builds spans
    started = time.perf_counter()
    tokentrail.shutdown(timeout=2)
    assert time.perf_counter() - started < 8  # bounded by close_timeout and the exporter's timeout
