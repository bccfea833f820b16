"""`otel`: each record as an OpenTelemetry span, and the GenAI client metrics.

    tokentrail.init(exporters=["otel"])            # pip install 'tokentrail[otel]'

Where it sends. The application's global tracer and meter providers when it set
them (as every OpenTelemetry instrumentation does: `opentelemetry-instrument`,
a distro, or `trace.set_tracer_provider(...)`), else providers of our own that
export over OTLP, configured by the standard variables: `OTEL_EXPORTER_OTLP_*`
(endpoint, headers, timeout, compression, protocol `http/protobuf` by default or
`grpc` when `opentelemetry-exporter-otlp-proto-grpc` is installed),
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_{TRACES,METRICS}_EXPORTER` (`otlp`,
`console`, `none`) and `OTEL_SDK_DISABLED`. The choice is made per signal when
the first record is exported, so an application that sets up OpenTelemetry
after `tokentrail.init()` is still followed. When the application set up one
signal and not the other, the other is sent over OTLP only if an endpoint is
configured for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or the signal's own): we do not
start sending to localhost:4318 behind the back of an application that has its
own setup. Providers can also be given: `OTelSink(tracer_provider=,
meter_provider=)`.

What it sends (names in otel_attributes.py). One span per LLM call
(`{operation} {model}`, kind CLIENT), tool execution (`execute_tool {name}`) and
workflow run / framework step (`invoke_workflow {name}`, `invoke_agent {name}`),
with the record's own start and end times; metrics `gen_ai.client.token.usage`,
`gen_ai.client.operation.duration`, `gen_ai.client.operation.time_to_first_chunk`
(streams) with the convention's bucket boundaries, and ours: `tokentrail.cost`
(USD) and `tokentrail.attempts` (retries included). Outcomes stay in the store.

Ids: our trace and span ids *are* the OpenTelemetry ones. Spans are built from
finished records on the sink's thread: the parent is given as a span context of
the record's `trace_id` / `parent_span_id`, and the span's own id comes from an
id generator (`RecordIds`) that hands the SDK the record's `span_id` (and, for a
root, its `trace_id`). On our own providers it is the provider's generator; on
the application's SDK provider it wraps the generator of *our* tracer only (the
tracer of the `tokentrail` scope), delegating whenever no record is being
exported, so the application's spans keep theirs. A tracer from a provider that
is not the SDK's keeps its own span ids (one info line): the trace and the
parent links still hold. A call made inside an application span (a web request)
is its child when the core read that span as the call started (`read_parent`,
installed by `init()`). Sampling: a parent we only know by id carries the
decision the tracer's sampler makes for its trace as a root, so a trace-id-ratio
sampler keeps or drops a whole trace.

Never slower than the application. `export()` only builds spans and records
measurements in memory; the SDK's batch processor and metric reader send them on
their own threads, with bounded queues and the exporter's timeout. A failed send
is counted (`failures`) and logged once per signal; a record that cannot be
converted is counted by the pipeline (`RecordsRejected`) and the rest of the batch
still goes. `close()` flushes and shuts down only the providers we built, bounded
by `close_timeout`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections import Counter, OrderedDict
from typing import Any, Sequence

from .. import log
from ..errors import ConfigError, RecordsRejected
from ..record import LLMCall, Span, ToolCall
from . import otel_attributes as attrs

__all__ = ["OTelSink", "RecordIds", "boundaries", "INSTALL", "COST_METRIC", "ATTEMPTS_METRIC"]

INSTALL = "pip install 'tokentrail[otel]'"
_GRPC_INSTALL = "pip install opentelemetry-exporter-otlp-proto-grpc"

# Explicit bucket boundaries the GenAI convention recommends (gen-ai-metrics.md); its Python
# package names the instruments but not their buckets.
_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

COST_METRIC = "tokentrail.cost"
ATTEMPTS_METRIC = "tokentrail.attempts"
_SCOPE = "tokentrail"
_FLAGS_KEPT = 4096  # sampling decisions remembered per trace


def boundaries() -> dict[str, tuple[float, ...]]:
    """Histogram name -> the explicit bucket boundaries the convention recommends for it."""
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as m

    table = {m.GEN_AI_CLIENT_TOKEN_USAGE: _TOKENS, m.GEN_AI_CLIENT_OPERATION_DURATION: _SECONDS}
    ttfc = getattr(m, "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK", None)
    if ttfc:
        table[ttfc] = _SECONDS
    return table



def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _protocol(signal: str) -> str:
    from opentelemetry.sdk import environment_variables as ev

    own = getattr(ev, f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
    return (os.environ.get(own) or os.environ.get(ev.OTEL_EXPORTER_OTLP_PROTOCOL) or "http/protobuf").strip().lower()


def _check_installed() -> None:
    """At `init()`: the packages the sink needs, and a protocol it can speak (ConfigError with the fix)."""
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        if not _installed(module):
            raise ConfigError(f"tokentrail: the `otel` exporter needs OpenTelemetry's SDK and OTLP exporter "
                              f"({module} is not installed): {INSTALL}")
    for signal in ("traces", "metrics"):
        protocol = _protocol(signal)
        if protocol == "grpc" and not _installed("opentelemetry.exporter.otlp.proto.grpc"):
            raise ConfigError(f"tokentrail: OTLP protocol `grpc` (OTEL_EXPORTER_OTLP_PROTOCOL) needs the gRPC "
                              f"exporter: {_GRPC_INSTALL}; or use http/protobuf")
        if protocol not in ("grpc", "http/protobuf"):
            raise ConfigError(f"tokentrail: bad OTLP protocol {protocol!r} for {signal} (OTEL_EXPORTER_OTLP_PROTOCOL); "
                              f"accepted: http/protobuf, grpc")


def _id_generator_base() -> type:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    return IdGenerator


class RecordIds:
    """The SDK's id generator while a record's span is started: the record's ids, else `fallback`'s.

    `use(trace_id, span_id)` is set on the sink's thread just before `start_span`
    and cleared just after, in a thread-local: any other thread (or the same one
    between records) gets `fallback`'s ids, so wrapping a shared generator changes
    nothing for anyone else."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.pending = threading.local()

    def use(self, trace_id: int | None, span_id: int | None) -> None:
        self.pending.ids = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        trace_id = getattr(self.pending, "ids", (None, None))[0]
        return trace_id or self.fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        span_id = getattr(self.pending, "ids", (None, None))[1]
        return span_id or self.fallback.generate_span_id()

    def is_trace_id_random(self) -> bool:
        if getattr(self.pending, "ids", (None, None))[0]:
            return True  # ours are random (context.new_trace_id)
        return bool(getattr(self.fallback, "is_trace_id_random", lambda: True)())


@functools.lru_cache(maxsize=None)
def _record_ids_class() -> type:
    """`RecordIds` as a subclass of the SDK's `IdGenerator` (built when the SDK is imported)."""
    return type("RecordIds", (RecordIds, _id_generator_base()), {"__doc__": RecordIds.__doc__})


def _ns(record: Any) -> tuple[int, int]:
    start = int(record.started_at.timestamp() * 1_000_000) * 1000
    duration = record.duration_ms if record.duration_ms is not None else 0.0
    return start, start + int(duration * 1_000_000)


def _hex(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value, 16) or None
    except ValueError:
        return None


def _configured(signal: str) -> bool:
    """Whether an OTLP endpoint is set for `signal` (or for every signal)."""
    from opentelemetry.sdk import environment_variables as ev

    own = getattr(ev, f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return bool(os.environ.get(own, "").strip() or os.environ.get(ev.OTEL_EXPORTER_OTLP_ENDPOINT, "").strip())


def _exporter_names(signal: str) -> set[str]:
    from opentelemetry import environment_variables as ev

    variable = ev.OTEL_TRACES_EXPORTER if signal == "traces" else ev.OTEL_METRICS_EXPORTER
    return {part.strip().lower() for part in os.environ.get(variable, "otlp").split(",") if part.strip()}


def _sdk_disabled() -> bool:
    from opentelemetry.sdk import environment_variables as ev

    return os.environ.get(ev.OTEL_SDK_DISABLED, "").strip().lower() == "true"


def _global_tracer_provider() -> Any:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return None if isinstance(provider, trace.ProxyTracerProvider) else provider


def _global_meter_provider() -> Any:
    from opentelemetry import metrics

    provider = metrics.get_meter_provider()
    # The API's stand-in until an application sets one; it has no public class.
    return None if type(provider).__name__ == "_ProxyMeterProvider" else provider


class _AdvisedMeter:
    """A meter for the convention's `create_*` functions that adds the recommended bucket boundaries,
    so the instruments' names, units and descriptions all come from the package."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter
        self.bounds = boundaries()

    def create_histogram(self, name: str, unit: str = "", description: str = "", **kwargs: Any) -> Any:
        bounds = self.bounds.get(name)
        if bounds is not None:
            try:
                return self.meter.create_histogram(name=name, unit=unit, description=description,
                                                   explicit_bucket_boundaries_advisory=list(bounds), **kwargs)
            except TypeError:  # an API older than the advisory parameter
                pass
        return self.meter.create_histogram(name=name, unit=unit, description=description, **kwargs)


class _Instruments:
    """The metrics one LLM call records."""

    def __init__(self, meter: Any, metric_attribution: tuple[str, ...]) -> None:
        from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as m

        advised = _AdvisedMeter(meter)
        self.tokens = m.create_gen_ai_client_token_usage(advised)
        self.duration = m.create_gen_ai_client_operation_duration(advised)
        create_ttfc = getattr(m, "create_gen_ai_client_operation_time_to_first_chunk", None)
        self.ttfc = create_ttfc(advised) if create_ttfc else None
        self.cost = meter.create_counter(COST_METRIC, unit="USD", description="What the LLM calls cost, in US dollars.")
        self.attempts = meter.create_counter(ATTEMPTS_METRIC, unit="{attempt}",
                                             description="Requests sent to the provider, retries included.")
        self.attribution = metric_attribution

    def record(self, call: LLMCall) -> None:
        n = attrs.names()
        common = attrs.metric_attributes(call)
        failed = {**common, **attrs.error_attributes(call)}
        if call.input_tokens is not None:
            self.tokens.record(call.input_tokens, {**common, n.TOKEN_TYPE: n.TOKEN_INPUT})
        if call.output_tokens is not None:
            self.tokens.record(call.output_tokens, {**common, n.TOKEN_TYPE: n.TOKEN_OUTPUT})
        if call.duration_ms is not None:
            self.duration.record(call.duration_ms / 1000, failed)
        if self.ttfc is not None and call.stream and call.ttft_ms is not None:
            self.ttfc.record(call.ttft_ms / 1000, common)
        if call.cost_usd is not None:
            labels = dict(common)
            for field in self.attribution:
                value = getattr(call, field, None)
                if value is not None:
                    labels[attrs.ours(field)] = str(value)
            self.cost.add(call.cost_usd, labels)
        self.attempts.add(call.attempt or 1, failed)


class _Counted:
    """Wraps an exporter we built: a failed send is counted on the sink and logged once per signal."""

    def __init__(self, inner: Any, sink: OTelSink, signal: str) -> None:
        self.inner, self.sink, self.signal = inner, sink, signal

    def _sent(self, result: Any, error: BaseException | None, size: int) -> None:
        if error is None and getattr(result, "name", "") == "SUCCESS":
            return
        self.sink.failures[self.signal] += size
        log.error_once(f"sink.otel.{self.signal}", f"tokentrail: sending {self.signal} over OpenTelemetry failed "
                       f"({error or result}); failures are counted in OTelSink.failures", error)

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self.inner.export(batch, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - an exporter that raises fails like one that reports failure
            self._sent(None, exc, _size(batch))
            return self.failure
        self._sent(result, None, _size(batch))
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.shutdown(*args, **kwargs)

    def force_flush(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.force_flush(*args, **kwargs)


def _size(batch: Any) -> int:
    try:
        return len(batch)
    except TypeError:
        return sum(len(sm.metrics) for rm in getattr(batch, "resource_metrics", ()) for sm in rm.scope_metrics)


def _counted_span_exporter(inner: Any, sink: OTelSink) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountedSpanExporter(_Counted, SpanExporter):
        failure = SpanExportResult.FAILURE

    return CountedSpanExporter(inner, sink, "traces")


def _counted_metric_exporter(inner: Any, sink: OTelSink) -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class CountedMetricExporter(_Counted, MetricExporter):
        failure = MetricExportResult.FAILURE

        def __init__(self) -> None:
            # keep the wrapped exporter's temporality and aggregation (OTEL_EXPORTER_OTLP_METRICS_*)
            MetricExporter.__init__(self, getattr(inner, "_preferred_temporality", None),
                                    getattr(inner, "_preferred_aggregation", None))
            _Counted.__init__(self, inner, sink, "metrics")

    return CountedMetricExporter()


def _span_exporter(names: set[str]) -> Any:
    if "otlp" in names:
        if _protocol("traces") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    return None


def _metric_exporter(names: set[str]) -> Any:
    if "otlp" in names:
        if _protocol("metrics") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter()
    if "console" in names:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    return None


class OTelSink:
    """Records as OpenTelemetry spans and metrics (see the module docstring)."""

    kind = "otel"

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, *,
                 metric_attribution: Sequence[str] = ("customer_id", "feature", "workflow"),
                 close_timeout: float = 5.0) -> None:
        """`metric_attribution`: the record fields put on `tokentrail.cost` as `tokentrail.<field>`
        (`user_id` and `session_id` are left out by default: one time series per user is more than
        most metric backends take; spans carry them all)."""
        _check_installed()
        from opentelemetry import trace

        self.given = (tracer_provider, meter_provider)
        self.metric_attribution = tuple(metric_attribution)
        self.close_timeout = close_timeout
        self.failures: Counter[str] = Counter()  # spans / metric points the exporters we built failed to send
        self.owned: list[Any] = []  # providers we built: flushed and shut down by close()
        self.tracer: Any = None
        self.instruments: _Instruments | None = None
        self.ids: Any = None
        self.ready = False
        self.lock = threading.Lock()
        self.flags: OrderedDict[int, Any] = OrderedDict()
        self.current_span = trace.get_current_span

    # -- the calling thread ----------------------------------------------------------------------------

    def read_parent(self) -> tuple[int, int] | None:
        """(trace id, span id) of the application's active OpenTelemetry span, or None: what the core
        reads as a call starts when no tokentrail span is open, so the call's span becomes its child."""
        context = self.current_span().get_span_context()
        if context.is_valid:
            return context.trace_id, context.span_id
        return None

    # -- the sink's thread ------------------------------------------------------------------------------

    def export(self, records: Sequence[Any]) -> None:
        if not self.ready:
            self.setup()
        failed, first = 0, None
        for record in records:
            try:
                self.export_one(record)
            except Exception as exc:  # noqa: BLE001 - one bad record must not cost the batch
                failed, first = failed + 1, first or exc
        if failed:
            raise RecordsRejected(failed, first)

    def export_one(self, record: Any) -> None:
        if isinstance(record, LLMCall):
            if self.tracer is not None:
                self.span(record, *attrs.llm_span(record), client=True)
            if self.instruments is not None:
                self.instruments.record(record)
        elif isinstance(record, ToolCall):
            if self.tracer is not None:
                self.span(record, *attrs.tool_span(record))
        elif isinstance(record, Span):
            if self.tracer is not None:
                self.span(record, *attrs.step_span(record))

    def span(self, record: Any, name: str, attributes: dict[str, Any], client: bool = False) -> None:
        from opentelemetry import trace
        from opentelemetry.context import Context

        trace_id, span_id, parent_id = _hex(record.trace_id), _hex(record.span_id), _hex(record.parent_span_id)
        context = Context()
        if trace_id and parent_id:
            parent = trace.SpanContext(trace_id, parent_id, is_remote=False, trace_flags=self.parent_flags(trace_id))
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent), context)
        start, end = _ns(record)
        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        if self.ids is not None:
            self.ids.use(trace_id, span_id)
        try:
            span = self.tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=start)
        finally:
            if self.ids is not None:
                self.ids.use(None, None)
        if attrs.is_failed(record):
            n = attrs.names()
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.error_message or record.error_type))
            event = {n.EXCEPTION_TYPE: record.error_type or n.ERROR_OTHER}
            if record.error_message:
                event[n.EXCEPTION_MESSAGE] = record.error_message
            span.add_event("exception", event, timestamp=end)
        span.end(end_time=end)

    def parent_flags(self, trace_id: int) -> Any:
        """The trace flags of a parent known only by id: the sampler's decision for this trace as a root."""
        from opentelemetry import trace
        from opentelemetry.context import Context

        flags = self.flags.get(trace_id)
        if flags is None:
            sampled = True
            sampler = getattr(self.tracer, "sampler", None)
            if sampler is not None:
                try:
                    sampled = sampler.should_sample(Context(), trace_id, "tokentrail").decision.is_sampled()
                except Exception:  # noqa: BLE001 - a sampler we cannot ask: keep the span
                    sampled = True
            flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
            self.flags[trace_id] = flags
            if len(self.flags) > _FLAGS_KEPT:
                self.flags.popitem(last=False)
        return flags

    # -- providers --------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Choose the providers (given, the application's, else our own over OTLP) and make the tracer
        and instruments; once, on the first export."""
        with self.lock:
            if self.ready:
                return
            given_tracer, given_meter = self.given
            app_tracer, app_meter = _global_tracer_provider(), _global_meter_provider()
            app_has_setup = app_tracer is not None or app_meter is not None
            tracer_provider = given_tracer or app_tracer
            meter_provider = given_meter or app_meter
            if tracer_provider is None and not (app_has_setup and not _configured("traces")):
                tracer_provider = self.own_tracer_provider()
            if meter_provider is None and not (app_has_setup and not _configured("metrics")):
                meter_provider = self.own_meter_provider()
            if tracer_provider is not None:
                self.tracer = tracer_provider.get_tracer(_SCOPE, _version())
                self.ids = self.own_ids(self.tracer)
            if meter_provider is not None:
                self.instruments = _Instruments(meter_provider.get_meter(_SCOPE, _version()), self.metric_attribution)
            self.ready = True

    def own_ids(self, tracer: Any) -> Any:
        generator = getattr(tracer, "id_generator", None)
        if isinstance(generator, RecordIds):
            return generator
        if generator is None:
            log.info_once("otel.ids", "tokentrail: this OpenTelemetry tracer provider is not the SDK's; its spans "
                          "take their own span ids (trace ids and parent links are kept)")
            return None
        ids = _record_ids_class()(generator)
        tracer.id_generator = ids  # our tracer (the `tokentrail` scope) only: the SDK keeps one per scope
        return ids

    def own_tracer_provider(self) -> Any:
        if _sdk_disabled():
            return None
        exporter = _span_exporter(_exporter_names("traces"))
        if exporter is None:
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create(), id_generator=_record_ids_class()(_random_ids()),
                                  shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(_counted_span_exporter(exporter, self)))
        self.owned.append(provider)
        return provider

    def own_meter_provider(self) -> Any:
        if _sdk_disabled():
            return None
        exporter = _metric_exporter(_exporter_names("metrics"))
        if exporter is None:
            return None
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        reader = PeriodicExportingMetricReader(_counted_metric_exporter(exporter, self))
        provider = MeterProvider(resource=Resource.create(), metric_readers=[reader], shutdown_on_exit=False)
        self.owned.append(provider)
        return provider

    def force_flush(self, timeout: float | None = None) -> bool:
        """Send what our own providers hold now (bounded); the application's are its own to flush."""
        millis = int((self.close_timeout if timeout is None else timeout) * 1000)
        return all([provider.force_flush(millis) for provider in self.owned])

    def close(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider

        millis = int(self.close_timeout * 1000)
        for provider in self.owned:
            try:
                provider.force_flush(millis)
                if isinstance(provider, MeterProvider):
                    provider.shutdown(timeout_millis=millis)
                else:
                    provider.shutdown()  # its batch processor is bounded by the exporter's timeout
            except Exception as exc:  # noqa: BLE001 - closing must not raise into shutdown
                log.error_once("sink.otel.close", "tokentrail: closing the OpenTelemetry providers failed", exc)
        self.owned = []

    def __repr__(self) -> str:
        return "OTelSink()"


def _random_ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    return RandomIdGenerator()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tokentrail")
    except Exception:  # noqa: BLE001 - running from a source tree
        return ""
