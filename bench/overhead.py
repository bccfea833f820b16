"""What zero-code capture costs: the real SDK clients, recording vs not.

    python bench/overhead.py                 # all scenarios
    python bench/overhead.py --pairs 300 openai-chat openai-stream
    python bench/overhead.py groq-chat mistral-chat cohere-chat gemini-generate bedrock-converse ollama-chat

Each scenario runs the real SDK client on an in-process transport that replays
fixed bytes (a chat completion, or a 100-chunk stream with usage, delivered one
SSE frame per read as a network would), so the untracked call is the SDK's own
work: building the request, parsing the reply. The other SDKs (groq, mistralai,
cohere, google-genai, boto3 Bedrock, ollama) run on `tokentrail.testing`'s fake
provider answering each distinct request once and replaying it after.

Two figures per scenario, both per call, in µs and as a share of the bare call
measured in the same run:

- **caller**: CPU of the calling thread (`time.thread_time`) — what the
  application's thread pays;
- **process**: CPU of the whole process (`time.process_time`), the background
  worker included — what the machine pays. The worker's share of a block is
  done in the `flush()` that ends each pair of blocks and is timed with the
  tracked block.

Method (the machine is shared and noisy, so only figures from one process are
compared, and only as medians of differences):

- The SDK is instrumented once, as in an application. Short blocks alternate
  recording on and off with `tokentrail.untrack()` / `track()` (the wrapper
  becomes a pass-through). Patching and unpatching between blocks would
  measure the benchmark: every change to a class makes CPython drop its
  attribute caches and specialized bytecode for that class, and the next block
  pays to rebuild them (~15 µs per call), which an application never does.
- The order alternates (bare first, then tracked first) so that drift and
  warm caches cancel.
- One `flush()` per pair of blocks, never one per block: a flush after each
  block puts most garbage collections in the tracked block (≈ 1 point of bias).
  The worker's wake-up interval is set longer than a pair, so it works only in
  that flush, not during the next (possibly bare) block.
- After warm-up the heap is frozen (`gc.freeze()`): a full collection rescanning
  the SDKs' import-time objects (tens of ms) would otherwise land at random in
  one block. Collections of what the blocks allocate still happen in both.
- The figure is the median over pairs of (tracked − bare) per call; the
  untracked call's median is the 100 % it is compared with.

`measure()` and the scenario builders are importable (bench/peers.py measures
other trackers with the same method).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tokentrail.testing import FakeProvider, http_module

PAIRS = 200
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarize the quarterly report."}]
ANTHROPIC_MESSAGES = [{"role": "user", "content": "Summarize the quarterly report."}]
REPLY_WORDS = 97  # openai: role chunk + 97 words + finish + usage = 100 chunks


# -- clients that replay one recorded answer -------------------------------------------------------


def replay_client(sdk: str, path: str, body: dict[str, Any], fake: FakeProvider | None = None) -> Any:
    """A real client of `sdk` whose transport answers every request with the fake's answer to
    `body` (built once: no per-call JSON building in the fake). Streams arrive one SSE frame per read."""
    fake = fake or FakeProvider(reply=" ".join(["word"] * REPLY_WORDS))
    http = http_module(sdk)
    reply = fake.reply("POST", path, {"content-type": "application/json"}, json.dumps(body).encode())
    frames, payload = reply.frames, reply.body

    def handler(request: Any) -> Any:
        request.read()
        content = payload if frames is None else iter(frames)
        return http.Response(reply.status, headers=reply.headers, content=content)

    client = http.Client(transport=http.MockTransport(handler))
    if sdk == "openai":
        import openai

        return openai.OpenAI(api_key="sk-bench", base_url="https://api.openai.com/v1", http_client=client, max_retries=0)
    import anthropic

    return anthropic.Anthropic(api_key="sk-ant-bench", base_url="https://api.anthropic.com", http_client=client, max_retries=0)


class Replaying(FakeProvider):
    """The fake provider answering each distinct request once, then replaying that answer: the other
    SDKs' clients (`fake.client("groq")`, …) run on its transports, and the bare call is the SDK's work."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.answers: dict[tuple[str, str, bytes], Any] = {}

    def reply(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        key = (method, path, body)
        answer = self.answers.get(key)
        if answer is None:
            answer = self.answers[key] = super().reply(method, path, headers, body)
        return answer


@dataclass
class Scenario:
    name: str
    what: str
    calls: int  # per block
    block: Callable[[], None]


def scenarios() -> dict[str, Callable[[], Scenario]]:
    """Builders of every scenario (each imports its SDK only when built)."""

    def openai_chat() -> Scenario:
        client = replay_client("openai", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES})
        create = client.chat.completions.create

        def block() -> None:
            for _ in range(20):
                create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)

        return Scenario("openai-chat", "openai chat call", 20, block)

    def openai_stream() -> Scenario:
        client = replay_client("openai", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES,
                                                                  "stream": True, "stream_options": {"include_usage": True}})
        create = client.chat.completions.create
        chunks = sum(1 for _ in create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

        def block() -> None:
            for _ in range(4):
                for _chunk in create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                     stream_options={"include_usage": True}):
                    pass

        return Scenario("openai-stream", f"openai {chunks}-chunk stream", 4, block)

    def anthropic_messages() -> Scenario:
        client = replay_client("anthropic", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 256,
                                                             "messages": ANTHROPIC_MESSAGES})
        create = client.messages.create

        def block() -> None:
            for _ in range(20):
                create(model="claude-haiku-4-5", max_tokens=256, messages=ANTHROPIC_MESSAGES)

        return Scenario("anthropic-messages", "anthropic messages call", 20, block)

    def anthropic_stream() -> Scenario:
        client = replay_client("anthropic", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 256,
                                                             "messages": ANTHROPIC_MESSAGES, "stream": True})
        create = client.messages.create
        events = sum(1 for _ in create(model="claude-haiku-4-5", max_tokens=256, messages=ANTHROPIC_MESSAGES, stream=True))

        def block() -> None:
            for _ in range(4):
                for _event in create(model="claude-haiku-4-5", max_tokens=256, messages=ANTHROPIC_MESSAGES, stream=True):
                    pass

        return Scenario("anthropic-stream", f"anthropic {events}-event stream", 4, block)

    def other_sdk(name: str, what: str, call: Callable[[Any], Callable[[], Any]], provider: str, **options: Any) -> Callable[[], Scenario]:
        """One chat call per iteration through another SDK's real client on the replaying fake."""

        def build() -> Scenario:
            ask = call(Replaying(reply=" ".join(["word"] * 40)).client(provider, **options))

            def block() -> None:
                for _ in range(20):
                    ask()

            return Scenario(name, what, 20, block)

        return build

    text = MESSAGES[1]["content"]
    others = {
        "groq-chat": other_sdk("groq-chat", "groq chat call", lambda c: lambda: c.chat.completions.create(
            model="llama-3.3-70b-versatile", messages=MESSAGES, temperature=0.2), "groq"),
        "mistral-chat": other_sdk("mistral-chat", "mistralai chat.complete", lambda c: lambda: c.chat.complete(
            model="mistral-small-latest", messages=MESSAGES), "mistral"),
        "cohere-chat": other_sdk("cohere-chat", "cohere v2 chat", lambda c: lambda: c.chat(
            model="command-r-plus", messages=MESSAGES), "cohere"),
        "gemini-generate": other_sdk("gemini-generate", "google-genai generate_content", lambda c: lambda: c.models.generate_content(
            model="gemini-2.0-flash", contents=text), "gemini"),
        "bedrock-converse": other_sdk("bedrock-converse", "boto3 bedrock converse", lambda c: lambda: c.converse(
            modelId="anthropic.claude-3-5-haiku-20241022-v1:0", messages=[{"role": "user", "content": [{"text": text}]}]),
            "bedrock"),
        "ollama-chat": other_sdk("ollama-chat", "ollama chat", lambda c: lambda: c.chat(model="llama3.2", messages=MESSAGES),
                                 "ollama"),
    }
    return {"openai-chat": openai_chat, "openai-stream": openai_stream,
            "anthropic-messages": anthropic_messages, "anthropic-stream": anthropic_stream, **others}


# -- the measurement ---------------------------------------------------------------------------------


@dataclass
class Result:
    caller_us: float  # median added calling-thread CPU per call
    caller_bare_us: float  # the untracked call's calling-thread CPU
    process_us: float  # median added whole-process CPU per call (worker included), the flush's wake-up not counted
    process_bare_us: float
    caller_p90_us: float
    process_p90_us: float
    flush_us: float  # whole-process CPU of a flush with nothing to do (waking the threads), per flush
    calls: int  # per block, so per flush

    @property
    def caller_pct(self) -> float:
        return 100 * self.caller_us / self.caller_bare_us

    @property
    def process_pct(self) -> float:
        return 100 * self.process_us / self.process_bare_us

    @property
    def process_raw_us(self) -> float:
        """The whole-process figure with the flush's own wake-up counted, as the benchmark paid it."""
        return self.process_us + self.flush_us / self.calls


def idle_flush_us(flush: Callable[[], Any], times: int = 40) -> float:
    """Whole-process CPU of one flush with nothing queued: waking the worker and the stores' threads
    and waiting for them. The benchmark pays it once per pair of blocks; an application once per
    `flush_interval` (0.5 s by default) whatever the number of calls, so it is not counted per call."""
    process_time = time.process_time
    costs = []
    for _ in range(times):
        p0 = process_time()
        flush()
        costs.append(process_time() - p0)
    return statistics.median(costs) * 1e6


def measure(block: Callable[[], None], calls: int, on: Callable[[], None], off: Callable[[], None],
            flush: Callable[[], Any], pairs: int = PAIRS) -> Result:
    """Alternate `off` / `on` blocks (`pairs` of each), one `flush()` per pair, timed with the
    thread's and the process's CPU clocks; medians of the per-pair differences per call."""
    thread_time, process_time = time.thread_time, time.process_time
    flush()
    idle = idle_flush_us(flush)
    caller, process, caller_bare, process_bare = [], [], [], []
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        t: dict[bool, float] = {}
        p: dict[bool, float] = {}
        for tracked in order:
            (on if tracked else off)()
            t0, p0 = thread_time(), process_time()
            block()
            t1, p1 = thread_time(), process_time()
            t[tracked], p[tracked] = t1 - t0, p1 - p0
        p0 = process_time()
        flush()  # the worker finishes the tracked block's records here
        p[True] += process_time() - p0
        scale = 1e6 / calls
        caller.append((t[True] - t[False]) * scale)
        process.append((p[True] - p[False]) * scale)
        caller_bare.append(t[False] * scale)
        process_bare.append(p[False] * scale)
    on()
    idle = (idle + idle_flush_us(flush)) / 2  # before and after: the machine may have drifted
    per_call = idle / calls
    return Result(statistics.median(caller), statistics.median(caller_bare), statistics.median(process) - per_call,
                  statistics.median(process_bare), statistics.quantiles(caller, n=10)[8],
                  statistics.quantiles(process, n=10)[8] - per_call, idle, calls)


def pass_through_us() -> float:
    """µs the patch adds per call when not recording: our wrappers on `request` and
    `_process_response` (wrapt's C wrapper plus one check), around no-op methods, against the no-ops."""
    import wrapt

    import tokentrail
    from tokentrail.instrument import openai as adapter
    from tokentrail.instrument import request_point

    sync_request = request_point._request_wrappers(adapter)[0]

    class Bare:
        def request(self, cast_to, options, *, stream=False, stream_cls=None):
            return None

        def _process_response(self, **kwargs):
            return None

    class Patched(Bare):
        request = wrapt.FunctionWrapper(Bare.request, sync_request)
        _process_response = wrapt.FunctionWrapper(Bare._process_response, request_point.keep_raw(adapter))

    def loop(client: Any, n: int = 50_000) -> float:
        start = time.thread_time()
        for _ in range(n):
            client.request(None, None, stream=False, stream_cls=None)
            client._process_response(cast_to=None, options=None, response=None, stream=False, stream_cls=None)
        return (time.thread_time() - start) / n * 1e6

    tokentrail.untrack()
    diffs = [loop(Patched()) - loop(Bare()) for _ in range(15)]
    tokentrail.track()
    return statistics.median(diffs)


def _row(what: str, r: Result) -> str:
    return (f"| {what} | +{r.caller_us:.1f} µs ({r.caller_pct:.2f} %) of {r.caller_bare_us:,.0f} µs "
            f"| +{r.process_us:.1f} µs ({r.process_pct:.2f} %) of {r.process_bare_us:,.0f} µs "
            f"| +{r.process_raw_us:.1f} µs ({r.flush_us:.0f} µs per flush of {r.calls}) "
            f"| {r.caller_p90_us:.1f} / {r.process_p90_us:.1f} µs |")


def main(argv: list[str] | None = None) -> None:
    builders = scenarios()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"scenarios (default: all): {', '.join(builders)}")
    parser.add_argument("--pairs", type=int, default=PAIRS, help=f"block pairs per scenario (default {PAIRS})")
    parser.add_argument("--no-pass-through", action="store_true", help="skip the patch-only loop")
    parser.add_argument("--large-store", action="store_true",
                        help="write as a store past 10,000 calls does: its aggregates kept per batch")
    args = parser.parse_args(argv)
    names = args.names or list(builders)
    unknown = [n for n in names if n not in builders]
    if unknown:
        parser.error(f"unknown scenario {unknown}; choose from {', '.join(builders)}")

    import tokentrail

    from tokentrail.sinks import aggregates

    # One store for every scenario: written as a small one throughout (no aggregates), or as one past
    # `KEPT_FROM` calls (`--large-store`), not one and then the other as it fills.
    aggregates.KEPT_FROM = 0 if args.large_store else 10**18
    versions = []
    with tempfile.TemporaryDirectory() as tmp:
        # The worker wakes only when flushed (the wake-up interval is longer than a pair of blocks).
        tokentrail.init(f"sqlite:///{Path(tmp) / 'bench.db'}", instrument=True, flush_interval=3600)
        print("| scenario | caller: added per call (% of the bare call) | whole process, worker included "
              "| whole process with the benchmark's flushes | p90 caller / process |")
        print("| --- | --- | --- | --- | --- |")
        for name in names:
            scenario = builders[name]()
            for _ in range(5):  # warm up imports, caches, the worker, price lookup
                scenario.block()
            tokentrail.flush(30)
            gc.collect()
            gc.freeze()  # the SDKs' import-time heap: not rescanned by a full collection landing in one block
            result = measure(scenario.block, scenario.calls, tokentrail.track, tokentrail.untrack,
                             lambda: tokentrail.flush(30), args.pairs)
            print(_row(scenario.what, result), flush=True)
        if not args.no_pass_through:
            print(f"\nthe patch itself, not recording: +{pass_through_us():.2f} µs per call")
        tokentrail.shutdown()
    from importlib import metadata

    for sdk in ("openai", "anthropic", "groq", "mistralai", "cohere", "google-genai", "boto3", "ollama"):
        module = sys.modules.get(sdk.replace("google-genai", "google.genai"))
        if module is not None:
            versions.append(f"{sdk} {metadata.version(sdk)}")
    print(f"{', '.join(versions)}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
