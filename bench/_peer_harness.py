"""One peer's measurement, run by bench/peers.py inside that peer's own venv.

    python _peer_harness.py PEER [--pairs N]

PEER is one of: opentelemetry, openlit, openllmetry, tokentrail. Prints one
line `RESULT {json}` on stdout (anything else a peer prints is ignored).
Imports only the standard library, `openai` and the peer, so the same file
runs in every venv. See bench/peers.py for what is measured and why.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

CHAT_CALLS = 20  # calls per block: long enough to time, short enough to interleave often
STREAM_CALLS = 4
WARMUP_BLOCKS = 3
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarize the quarterly report."}]
WORDS = 97  # role chunk + 97 content chunks + finish chunk + usage chunk = 100 chunks
USAGE = {
    "prompt_tokens": 24, "completion_tokens": WORDS, "total_tokens": 24 + WORDS,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
}
HEAD = {"id": "chatcmpl-bench", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench", "service_tier": "default"}


# -- the fixed replies --------------------------------------------------------------------------

def chat_bytes() -> bytes:
    message = {"role": "assistant", "content": " ".join(["word"] * WORDS), "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return json.dumps({**HEAD, "object": "chat.completion", "choices": [choice], "usage": USAGE}).encode()


def stream_bytes() -> bytes:
    def chunk(delta, finish=None, usage=None, choices=True):
        body = {**HEAD, "object": "chat.completion.chunk", "usage": usage,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": ("" if i == 0 else " ") + "word"}) for i in range(WORDS)]
    frames += [chunk({}, finish="stop"), chunk(None, usage=USAGE, choices=False), b"data: [DONE]\n\n"]
    return b"".join(frames)


def http_module():
    """httpx2 for openai 3.x, httpx before: whichever the SDK's base client imports."""
    base = importlib.import_module("openai._base_client")
    return getattr(base, "httpx2", None) or importlib.import_module("httpx")


def fixed_client(payload: bytes, content_type: str):
    """The real openai.OpenAI on an in-process transport replaying `payload`: the bare call is the SDK's own work."""
    import openai

    http = http_module()
    headers = {"content-type": content_type, "x-request-id": "req_bench"}

    def handler(request):
        request.read()
        return http.Response(200, headers=headers, content=payload)

    transport = http.MockTransport(handler)
    return openai.OpenAI(api_key="sk-bench", http_client=http.Client(transport=transport), max_retries=0)


def chat_block(client) -> None:
    for _ in range(CHAT_CALLS):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2)


def stream_block(client) -> None:
    for _ in range(STREAM_CALLS):
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        for _chunk in stream:
            pass


# -- peers: each gives on(), off(), flush(), records() and a version -----------------------------

class Tokentrail:
    dist = "tokentrail"

    def __init__(self, store_dir: Path) -> None:
        import tokentrail

        self.tt = tokentrail
        self.tracker = tokentrail.init(f"sqlite:///{store_dir / 'bench.db'}", instrument=["openai"])

    def on(self) -> None:
        self.tt.track()

    def off(self) -> None:
        self.tt.untrack()

    def flush(self) -> None:
        self.tt.flush(30)

    def records(self) -> int:
        stats = self.tracker.stats()
        return stats.get("written", stats.get("processed", -1))


class OTelPeer:
    """An OTel SDK set up as in production (batching span and log processors, a metric reader),
    but exporting into memory. Bare blocks run under OTel's suppress-instrumentation key."""

    dist = ""
    gate = False  # True: the peer's OpenAI wrappers ignore the key, so gate them on it (see gate_wrappers)

    def __init__(self, store_dir: Path) -> None:
        from opentelemetry import context

        self.context = context
        self.token = None
        self.spans = self.setup_providers()
        if self.gate:
            gate_wrappers()
        self.instrument(store_dir)

    def setup_providers(self):
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        trace.set_tracer_provider(self.tracer_provider)
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        metrics.set_meter_provider(self.meter_provider)
        self.logger_provider = logger_provider()
        return spans

    def instrument(self, store_dir: Path) -> None:
        raise NotImplementedError

    def on(self) -> None:
        if self.token is not None:
            self.context.detach(self.token)
            self.token = None

    def off(self) -> None:
        if self.token is None:
            self.token = self.context.attach(self.context.set_value(self.context._SUPPRESS_INSTRUMENTATION_KEY, True))

    def flush(self) -> None:
        # Export every finished span, collect the metrics (the reader's periodic work), emit the logs.
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()
        if self.logger_provider is not None:
            self.logger_provider.force_flush()

    def records(self) -> int:
        """GenAI spans exported so far (HTTP-client spans, if a peer makes any, are not counted)."""
        spans = self.spans.get_finished_spans()
        return sum(1 for span in spans if any(key.startswith("gen_ai.") for key in (span.attributes or {})))


def logger_provider():
    """An SDK LoggerProvider exporting into memory, for peers that emit GenAI events as logs
    (without one, OpenLIT would install a console exporter that writes to stdout)."""
    try:
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs import export as log_export
    except ImportError:
        return None
    exporter_cls = getattr(log_export, "InMemoryLogRecordExporter", None) or getattr(log_export, "InMemoryLogExporter")
    provider = LoggerProvider()
    provider.add_log_record_processor(log_export.BatchLogRecordProcessor(exporter_cls()))
    _logs.set_logger_provider(provider)
    return provider


def gate_wrappers() -> None:
    """Make every wrapt wrapper installed from now on skip its wrapper while OTel's
    suppress-instrumentation key is set, using wrapt's own per-call `enabled` hook.

    For peers whose OpenAI wrappers do not check the key themselves: it turns them off
    and on without re-patching the SDK's classes between blocks (each patch or unpatch
    drops CPython's caches for the class, a cost an application never pays per call).
    Must run before the peer is imported: peers do `from wrapt import wrap_function_wrapper`.
    """
    import wrapt
    from opentelemetry import context

    key, get_value, original = context._SUPPRESS_INSTRUMENTATION_KEY, context.get_value, wrapt.wrap_function_wrapper

    def enabled() -> bool:
        return not get_value(key)

    def wrap_function_wrapper(target, name, wrapper):
        if isinstance(target, str) and target.endswith("?"):
            if target[:-1] not in sys.modules:
                return original(target, name, wrapper)  # deferred until imported: a module the bench never uses
            target = sys.modules[target[:-1]]
        return wrapt.wrap_object(target, name, wrapt.FunctionWrapper, (wrapper, enabled))

    wrapt.wrap_function_wrapper = wrap_function_wrapper


class OpenTelemetry(OTelPeer):
    dist = "opentelemetry-instrumentation-openai-v2"
    gate = True

    def instrument(self, store_dir: Path) -> None:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
                                        logger_provider=self.logger_provider)


class OpenLLMetry(OTelPeer):
    dist = "opentelemetry-instrumentation-openai"  # checks the suppress key itself

    def instrument(self, store_dir: Path) -> None:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
                                        logger_provider=self.logger_provider)


class OpenLIT(OTelPeer):
    dist = "openlit"
    gate = True

    def instrument(self, store_dir: Path) -> None:
        import openlit

        # A local price table: by default openlit downloads one at init (no network here),
        # and with it the cost computation is part of the measured work.
        prices = store_dir / "pricing.json"
        prices.write_text(json.dumps({"chat": {MODEL: {"promptPrice": 0.00015, "completionPrice": 0.0006}}}))
        openlit.init(pricing_json=str(prices))  # reuses the providers set above


PEERS = {"opentelemetry": OpenTelemetry, "openlit": OpenLIT, "openllmetry": OpenLLMetry, "tokentrail": Tokentrail}


# -- measurement --------------------------------------------------------------------------------

def timed(block, client, calls: int, peer, tracked: bool) -> tuple[float, float]:
    """(calling-thread CPU, whole-process CPU) in µs per call for one block.
    The tracked block's process figure runs up to the flush of the peer's background
    work, so it holds everything the block caused; the flush is not in the thread figure."""
    if tracked:
        peer.on()
    else:
        peer.off()
    p0, t0 = time.process_time(), time.thread_time()
    block(client)
    t1 = time.thread_time()
    if tracked:
        peer.flush()
    p1 = time.process_time()
    return (t1 - t0) / calls * 1e6, (p1 - p0) / calls * 1e6


def measure(block, client, calls: int, peer, pairs: int) -> dict:
    """Medians of per-pair (tracked - bare) µs per call, and of the bare call, caller and process."""
    thread_diffs, process_diffs, bare_thread, bare_process = [], [], [], []
    first = peer.records()
    for i in range(pairs):
        # ABAB / BABA: one flush per pair, right after the tracked block, so each bare
        # block starts with no background work left over from a tracked one.
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {tracked: timed(block, client, calls, peer, tracked) for tracked in order}
        thread_diffs.append(times[True][0] - times[False][0])
        process_diffs.append(times[True][1] - times[False][1])
        bare_thread.append(times[False][0])
        bare_process.append(times[False][1])
    peer.on()
    peer.flush()
    return {
        "caller_us": statistics.median(thread_diffs), "process_us": statistics.median(process_diffs),
        "bare_caller_us": statistics.median(bare_thread), "bare_process_us": statistics.median(bare_process),
        "records": peer.records() - first, "expected_records": pairs * calls,
    }


def versions(peer) -> dict:
    return {"peer": metadata.version(peer.dist), "openai": metadata.version("openai"),
            "python": sys.version.split()[0]}


def run(name: str, pairs: int, store_dir: Path) -> dict:
    peer = PEERS[name](store_dir)
    chat = fixed_client(chat_bytes(), "application/json")
    stream = fixed_client(stream_bytes(), "text/event-stream; charset=utf-8")
    chunks = sum(1 for _ in stream.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                           stream_options={"include_usage": True}))
    for tracked in (True, False) * WARMUP_BLOCKS:  # imports, caches, worker threads, price lookups
        timed(chat_block, chat, CHAT_CALLS, peer, tracked)
        timed(stream_block, stream, STREAM_CALLS, peer, tracked)
    peer.flush()
    return {"versions": versions(peer), "chunks": chunks, "pairs": pairs,
            "chat": measure(chat_block, chat, CHAT_CALLS, peer, pairs),
            "stream": measure(stream_block, stream, STREAM_CALLS, peer, pairs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.peer, args.pairs, Path(tmp))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
