"""The hot path's module: tracking() and CallLog never block a running event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import tokentrail


class SlowSink:
    """A sink that takes `delay` seconds per batch: the worker is busy for that long."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.records: list = []

    def export(self, records):
        time.sleep(self.delay)
        self.records.extend(records)


def test_leaving_async_tracking_waits_without_blocking_the_loop():
    ticks = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        async with tokentrail.tracking(sink=SlowSink(0.4)) as log:
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input=10, output=2)
        before = len(ticks)
        await asyncio.sleep(0)
        stop.set()
        await task
        return log, before

    start = time.perf_counter()
    log, ticks_by_exit = asyncio.run(main())
    assert time.perf_counter() - start >= 0.35  # __aexit__ did wait for the slow sink…
    assert ticks_by_exit >= 10  # …while the loop kept running other tasks (a blocking wait allows ~1 tick)
    assert log.counts()[0] == 1 and log.calls[0].input_tokens == 10


def test_reading_calls_inside_a_running_loop_does_not_block_and_settled_waits():
    async def main():
        with tokentrail.tracking(sink=SlowSink(0.5)) as log:
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                pass
            start = time.perf_counter()
            log.calls  # what has arrived so far: no wait on a thread that runs a loop
            read_s = time.perf_counter() - start
            await log.settled()
            return read_s, len(log.calls)

    read_s, settled = asyncio.run(main())
    assert read_s < 0.2 and settled == 1


def test_reading_calls_off_the_loop_still_waits_for_the_records():
    with tokentrail.tracking(sink=SlowSink(0.2)) as log:
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        assert len(log.calls) == 1  # a plain thread may wait: the record is there when read
    result = []
    thread = threading.Thread(target=lambda: result.append(len(log.calls)))
    thread.start()
    thread.join()
    assert result == [1]


def test_the_worker_thread_imports_no_module(tmp_path):
    """Imports happen on the calling thread (at init() or the first tracking()): a package imported by two
    threads at once can hand one of them a partially initialised module (seen: 'partially initialized
    module httpx2 has no attribute Timeout' in an app importing openai while the worker loaded the prices)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys, threading
        imports = []
        def hook(event, args):
            if event == "import" and threading.current_thread().name.startswith("tokentrail"):
                imports.append(args[0])
        sys.addaudithook(hook)
        import tokentrail
        for start in ("init", "tracking"):
            if start == "init":
                tokentrail.init("sqlite:///audit.db", instrument=False, exporters=["jsonl:calls.jsonl"])
            with tokentrail.tracking():
                with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                    span.set_tokens(input=10, output=5)
                tokentrail.log_llm_call(provider="anthropic", model="claude-sonnet-4-5",
                                        usage={"input_tokens": 3, "output_tokens": 1}, error=ValueError("x"))
                with tokentrail.track_tool_call("search"):
                    pass
                tokentrail.emit_outcome("done")
            assert tokentrail.flush(10)
            tokentrail.shutdown()
        print(imports)
    """)
    for first in ("init", "tracking"):
        script = code if first == "init" else code.replace('("init", "tracking")', '("tracking",)')
        out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]", out.stdout
