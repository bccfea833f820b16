"""Instructions, not microseconds: what recording adds, counted by valgrind (deterministic).

    python bench/instructions.py                       # every scenario of bench/overhead.py
    python bench/instructions.py openai-chat --blocks 20

On a shared, noisy machine CPU times move by a factor of two between runs and
a few microseconds are lost in the noise; instruction counts do not move.
Each figure comes from two runs of the same script under `valgrind
--tool=callgrind`, counting only the measured part (`callgrind_control -i on`
after warm-up):

- caller: the scenario's blocks recording vs not recording (`untrack()`), the
  queue emptied after each block so the worker never runs: instructions the
  calling thread adds per call, and the bare call's own count for scale;
- worker: the same recorded blocks, their records then built, priced and
  written (one batch and one flush per block, as bench/overhead.py flushes)
  vs not processed: instructions per record on the worker and the store's
  thread. Kernel time (thread wake-ups, SQLite's writes) is not counted here;
  bench/overhead.py's whole-process CPU includes it.

Needs valgrind (`apt-get install valgrind`). Slow: a few minutes per scenario.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(mode: str, name: str, blocks: int, large_store: bool = False) -> None:
    """Run under valgrind: warm up, switch counting on, run the measured part, exit without cleanup."""
    import gc

    sys.path.insert(0, str(HERE))
    import overhead

    import tokentrail
    from tokentrail import runtime

    from tokentrail.sinks import aggregates

    # Written as a store past `KEPT_FROM` calls (its aggregates kept per batch) or as a small one.
    aggregates.KEPT_FROM = 0 if large_store else 10**18
    tmp = tempfile.mkdtemp()
    tokentrail.init(f"sqlite:///{tmp}/bench.db", instrument=True, flush_interval=3600)
    scenario = overhead.scenarios()[name]()
    for _ in range(5):
        scenario.block()
    tokentrail.flush(30)
    gc.collect()
    gc.freeze()
    pipeline = runtime.State.pipeline
    batches = []
    if mode == "off":
        tokentrail.untrack()
    if mode in ("process", "keep"):
        for _ in range(blocks + 1):
            scenario.block()
            batches.append(list(pipeline._queue))
            pipeline._queue.clear()
        pipeline._process(batches.pop())  # warm the worker's paths
        tokentrail.flush(30)
    else:
        scenario.block()
        pipeline._queue.clear()
    os.system(f"callgrind_control -i on {os.getpid()} > /dev/null")
    if mode in ("on", "off"):
        for _ in range(blocks):
            scenario.block()
            pipeline._queue.clear()
    elif mode == "process":
        for batch in batches:
            pipeline._process(batch)
            tokentrail.flush(30)
    os._exit(0)


def _count(mode: str, name: str, blocks: int, large_store: bool = False) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", mode, name, "--blocks", str(blocks), *(["--large-store"] if large_store else [])],
        capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise SystemExit(f"valgrind failed for {name} {mode}:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    sys.path.insert(0, str(HERE))
    import overhead

    builders = overhead.scenarios()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"scenarios (default: all): {', '.join(builders)}")
    parser.add_argument("--blocks", type=int, default=0, help="measured blocks per run (default: 10 for calls, 4 for streams)")
    parser.add_argument("--large-store", action="store_true",
                        help="write as a store past 10,000 calls does: its aggregates kept per batch")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.blocks, args.large_store)
        return
    print("| scenario | bare call | caller: added per call | worker: added per record |")
    print("| --- | --- | --- | --- |")
    for name in args.names or list(builders):
        blocks = args.blocks or (4 if "stream" in name else 10)
        calls = builders[name]().calls * blocks
        on, off = _count("on", name, blocks), _count("off", name, blocks)
        processed, kept = _count("process", name, blocks, args.large_store), _count("keep", name, blocks, args.large_store)
        bare = off / calls
        caller, worker = (on - off) / calls, (processed - kept) / calls
        print(f"| {name} | {bare:,.0f} | +{caller:,.0f} ({100 * caller / bare:.2f} %) "
              f"| +{worker:,.0f} ({100 * worker / bare:.2f} %) |", flush=True)


if __name__ == "__main__":
    main()
