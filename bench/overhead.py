"""What zero-code capture costs the calling thread: the real `openai` client, tracked vs not.

    python bench/overhead.py

The same `openai.OpenAI` client runs on an in-process transport that answers
with fixed bytes (a chat completion, or a 100-chunk stream with usage), so the
untracked call is the SDK's own work: building the request, parsing the reply.

1. Recording. The SDK is instrumented once, as in an application. Short
   blocks alternate recording on and off (`untrack()` makes the wrapper a
   pass-through), timed with the calling thread's CPU clock
   (`time.thread_time`), so the background writer is not counted against the
   call; the figure is the median of (tracked - untracked) per call.
   Why not patch and unpatch between blocks: every change to a class makes
   CPython drop its attribute caches and specialized bytecode for that class,
   and the next block pays to rebuild them — a cost of the benchmark, not of
   an application, which patches once (we measured ~15 µs per call of it).
2. The patch itself when not recording: the patched `request` /
   `_process_response` against the originals, on a stand-in for the network
   call, in a tight loop (wrapt's C wrapper plus one check).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

import tokentrail
from tokentrail.testing import FakeProvider, http_module

PAIRS = 200
CHAT_CALLS = 20
STREAM_CALLS = 4
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarize the quarterly report."}]


def fixed_client(fake: FakeProvider, body: dict) -> openai.OpenAI:
    """A client whose transport replays one recorded answer (no per-call JSON building in the fake)."""
    http = http_module("openai")
    reply = fake.reply("POST", "/v1/chat/completions", {"content-type": "application/json"}, __import__("json").dumps(body).encode())
    payload = b"".join(reply.frames) if reply.frames is not None else reply.body

    def handler(request):
        request.read()
        return http.Response(reply.status, headers=reply.headers, content=payload)

    return openai.OpenAI(api_key="sk-bench", http_client=http.Client(transport=http.MockTransport(handler)), max_retries=0)


def chat_block(client: openai.OpenAI) -> None:
    for _ in range(CHAT_CALLS):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)


def stream_block(client: openai.OpenAI) -> None:
    for _ in range(STREAM_CALLS):
        for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}):
            pass


def cpu_us(block, client, calls: int) -> float:
    start = time.thread_time()
    block(client)
    return (time.thread_time() - start) / calls * 1e6


def measure(block, client, calls: int) -> tuple[float, float, float]:
    """Median and p90 of (tracked - untracked) CPU µs per call, and the untracked call's median."""
    diffs, bare_times = [], []
    for i in range(PAIRS):
        order = ("bare", "tracked") if i % 2 == 0 else ("tracked", "bare")
        times = {}
        for mode in order:
            tokentrail.untrack() if mode == "bare" else tokentrail.track()
            times[mode] = cpu_us(block, client, calls)
        tokentrail.flush(30)  # keep the queue short; not timed
        diffs.append(times["tracked"] - times["bare"])
        bare_times.append(times["bare"])
    tokentrail.track()
    return statistics.median(diffs), statistics.median(bare_times), statistics.quantiles(diffs, n=10)[8]


def pass_through_us() -> float:
    """µs the patch adds per call when not recording: our two wrappers (request, _process_response)
    on the same wrapt C wrapper, around no-op methods, against the bare no-ops."""
    import wrapt

    from tokentrail.instrument import _wrap
    from tokentrail.instrument import openai as adapter

    sync_request, _ = _wrap.request_wrappers(adapter)

    class Bare:
        def request(self, cast_to, options, *, stream=False, stream_cls=None):
            return None

        def _process_response(self, **kwargs):
            return None

    class Patched(Bare):
        request = wrapt.FunctionWrapper(Bare.request, sync_request)
        _process_response = wrapt.FunctionWrapper(Bare._process_response, _wrap.keep_raw)

    def loop(client, n=50_000):
        start = time.thread_time()
        for _ in range(n):
            client.request(None, None, stream=False, stream_cls=None)
            client._process_response(cast_to=None, options=None, response=None, stream=False, stream_cls=None)
        return (time.thread_time() - start) / n * 1e6

    tokentrail.untrack()
    diffs = [loop(Patched()) - loop(Bare()) for _ in range(15)]
    tokentrail.track()
    return statistics.median(diffs)


def main() -> None:
    fake = FakeProvider(reply=" ".join(["word"] * 97))  # role chunk + 97 words + finish + usage = 100 chunks
    with tempfile.TemporaryDirectory() as tmp:
        tokentrail.init(f"sqlite:///{Path(tmp) / 'bench.db'}", instrument=["openai"])
        chat = fixed_client(fake, {"model": "gpt-4o-mini", "messages": MESSAGES})
        stream = fixed_client(fake, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                                     "stream_options": {"include_usage": True}})
        chunks = sum(1 for _ in stream.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        for _ in range(3):  # warm up imports, caches, the worker, price lookup
            chat_block(chat)
            stream_block(stream)
        tokentrail.flush(30)
        added, bare, p90 = measure(chat_block, chat, CHAT_CALLS)
        print(f"chat call, recording: +{added:.1f} us per call on the calling thread (p90 {p90:.1f}); untracked SDK call {bare:.0f} us")
        added, bare, p90 = measure(stream_block, stream, STREAM_CALLS)
        print(f"{chunks}-chunk stream, recording: +{added:.1f} us per stream on the calling thread (p90 {p90:.1f}); untracked {bare:.0f} us")
        print(f"the patch itself, not recording: +{pass_through_us():.2f} us per call")
        tokentrail.shutdown()
    print(f"openai {openai.__version__}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
