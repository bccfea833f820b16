"""What tokentrail and its peers add to an OpenAI call, measured the same way.

    python bench/peers.py                  # build what is missing, measure all four
    python bench/peers.py --only openlit,tokentrail --pairs 100
    python bench/peers.py --rebuild        # recreate the venvs

Peers, each in its own venv under bench/.peers/ (built on first run, reused after,
rebuilt when its requirements here change; only PyPI is needed):

- opentelemetry: the official `opentelemetry-instrumentation-openai-v2` on the OTel SDK.
- openlit: `openlit.init()`, with its defaults.
- openllmetry: Traceloop's `opentelemetry-instrumentation-openai` on the OTel SDK.
- tokentrail: this repository, installed editable.

Each peer gets the `openai` it supports: openai 3.x (on `httpx2`) where it works,
2.x (on `httpx`) for openlit (it requires openai<3) and openai-v2 (it imports
`httpx` itself). OTel-based peers export into memory: a BatchSpanProcessor into
an InMemorySpanExporter, an InMemoryMetricReader, a BatchLogRecordProcessor
into memory, so the work is done as in production but nothing leaves the process.

The harness (bench/_peer_harness.py, run in each venv as a subprocess) is the
same for all: the real `openai.OpenAI` client on an in-process MockTransport
replaying fixed bytes, a chat completion with usage or a 100-chunk stream (role
chunk, 97 content chunks, finish chunk, usage chunk), so the bare call is the
SDK's own work. The peer is instrumented once, as in an application; short
blocks (20 chat calls, or 4 streams) then alternate recording on and off for
200 pairs, ordered ABAB / BABA. Per pair, the figure is (tracked - bare) per call:

- caller: CPU of the calling thread (`time.thread_time`), what the call itself pays;
- process: CPU of the whole process (`time.process_time`), from the start of the
  tracked block to the end of a flush of the peer's background work
  (`tokentrail.flush()`, or `force_flush()` of the OTel tracer, meter and logger
  providers). The flush comes once per pair, right after the tracked block:
  flushing after every block would add flush and GC work to the bare figure too,
  and flushing at the end of a BABA pair would let the tracked block's exports
  run during the bare one. Flushing every 20 calls exports smaller batches, and
  collects metrics far more often, than an application would: for OTel peers the
  process figure is an upper bound.

Reported: the median of the per-pair differences in µs per call, and that as a
share of the median bare call in the same process.

How recording is turned off for the bare blocks (never by unpatching: each patch
or unpatch of the SDK's classes drops CPython's type caches and specialized
bytecode, which the next block pays for, a benchmark artefact of ~15 µs a call):

- tokentrail: `tokentrail.untrack()` / `tokentrail.track()`; its wrapper stays in place.
- openllmetry: OTel's suppress-instrumentation context key
  (`opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY`), which its wrappers check.
- opentelemetry (openai-v2) and openlit: the same key; their OpenAI wrappers do not
  check it, so the harness installs them with wrapt's per-call `enabled` hook
  reading it (it replaces `wrapt.wrap_function_wrapper` before the peer is
  imported). The wrapt wrapper and one context lookup stay in both blocks.

The harness checks the toggle: the number of records (GenAI spans, or tokentrail
records) must equal the number of tracked calls; the table flags any other count.
The machine should be otherwise idle: CPU clocks exclude waiting, not cache contention.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".peers"
HARNESS = BENCH / "_peer_harness.py"
INSTALL_TIMEOUT = 600  # s; a resolver that backtracks longer than this is a failure, reported as such
RUN_TIMEOUT = 900


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    requirements: tuple[str, ...]


PEERS = (
    Peer("opentelemetry", "OTel openai-v2", (
        "opentelemetry-instrumentation-openai-v2>=2.0b0",  # only beta releases exist
        # util-genai 1.2 dropped the `instruments` module that openai-v2 2.4b0 imports.
        "opentelemetry-util-genai>=1.0b0,<1.2b0",  # bounds that name betas: it has no other releases
        "opentelemetry-sdk",
        "openai<3",  # openai-v2 imports httpx, which openai 3.x no longer brings
    )),
    Peer("openlit", "OpenLIT", (
        # openlit depends on 14 OTel instrumentations whose newest releases are not all of
        # one OTel version; unpinned, pip backtracks for over 20 minutes. One consistent
        # OTel release resolves in seconds. Bump these together.
        "openlit==1.45.0",
        "opentelemetry-instrumentation==0.66b1",
        "opentelemetry-sdk==1.45.1",
        "opentelemetry-exporter-otlp==1.45.1",
        "openai<3",  # openlit requires it; said here so pip need not find out
    )),
    Peer("openllmetry", "OpenLLMetry", ("opentelemetry-instrumentation-openai", "opentelemetry-sdk", "openai")),
    Peer("tokentrail", "tokentrail", ("-e", str(REPO), "openai")),
)


# -- environments -------------------------------------------------------------------------------

def venv_python(home: Path) -> Path:
    return home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def tail(text: str) -> str:
    """The last informative line of pip's output (its index warnings are noise)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return lines[-1][:200] if lines else "no output"


def build(peer: Peer, rebuild: bool) -> str | None:
    """Create or reuse the peer's venv; None when ready, else why not (one line)."""
    home = CACHE / peer.name
    stamp = home / "bench-requirements.json"
    wanted = json.dumps(peer.requirements)
    if not rebuild and venv_python(home).exists() and stamp.exists() and stamp.read_text() == wanted:
        return None
    shutil.rmtree(home, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, capture_output=True, text=True)
        pip = [str(venv_python(home)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *peer.requirements]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"pip did not finish in {INSTALL_TIMEOUT} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"could not create a venv: {exc}"
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)  # half-built: start afresh next time
        return tail(done.stderr or done.stdout)
    stamp.write_text(wanted)
    return None


def build_all(peers: list[Peer], rebuild: bool) -> list[Peer]:
    """Build in parallel (pip mostly waits on downloads), report failures, return the ready peers."""
    CACHE.mkdir(exist_ok=True)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = list(pool.map(lambda peer: build(peer, rebuild), peers))
    for peer, error in zip(peers, errors):
        if error:
            print(f"{peer.label}: install failed, skipped: {error}", flush=True)
    print(f"environments ready in {time.monotonic() - start:.0f} s", flush=True)
    return [peer for peer, error in zip(peers, errors) if not error]


# -- measuring ----------------------------------------------------------------------------------

def measure(peer: Peer, pairs: int) -> dict | str:
    """The harness's result in the peer's venv, or why there is none (one line)."""
    # -I: the harness must see only the venv, not bench/ (whose modules could shadow a peer's).
    command = [str(venv_python(CACHE / peer.name)), "-I", str(HARNESS), peer.name, "--pairs", str(pairs)]
    # Belt and braces: any exporter a peer builds from the environment exports nowhere.
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return f"did not finish in {RUN_TIMEOUT} s"
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return f"exit {done.returncode}: {tail(done.stderr or done.stdout)}"


# -- reporting ----------------------------------------------------------------------------------

def cell(figures: dict, kind: str) -> str:
    added, bare = figures[f"{kind}_us"], figures[f"bare_{kind}_us"]
    return f"{added:+8.1f} {added / bare * 100:+6.1f}%"


def row(peer: Peer, result: dict) -> str:
    versions = result["versions"]
    version = f"{versions['peer']} (openai {versions['openai']})"
    chat, stream = result["chat"], result["stream"]
    cells = [cell(chat, "caller"), cell(chat, "process"), cell(stream, "caller"), cell(stream, "process")]
    bare = f"{chat['bare_caller_us']:7.0f} {stream['bare_caller_us']:8.0f}"
    return f"{peer.label:<15} {version:<28} " + "  ".join(cells) + f"  {bare}{check(result)}"


def check(result: dict) -> str:
    """A flag when the toggle did not hold: records must match the tracked calls exactly."""
    wrong = [f"{kind} {result[kind]['records']}/{result[kind]['expected_records']} records"
             for kind in ("chat", "stream") if result[kind]["records"] != result[kind]["expected_records"]]
    return "  !! " + ", ".join(wrong) if wrong else ""


def table(rows: list[tuple[Peer, dict]], pairs: int) -> None:
    stream_chunks = rows[0][1]["chunks"] if rows else 100
    print(f"\nadded per call: median of {pairs} per-pair differences, µs and % of the bare call"
          f" (stream: one {stream_chunks}-chunk stream)")
    print(f"{'':<15} {'':<28} {'chat caller':>16}  {'chat process':>16}  {'stream caller':>16}  {'stream process':>16}"
          f"  {'bare chat / stream µs':>16}")
    for peer, result in rows:
        print(row(peer, result))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="tracked/bare block pairs per measurement")
    parser.add_argument("--only", help="comma-separated peers: " + ",".join(peer.name for peer in PEERS))
    parser.add_argument("--rebuild", action="store_true", help="recreate the venvs")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    chosen = [peer for peer in PEERS if not args.only or peer.name in args.only.split(",")]
    rows, raw = [], {}
    for peer in build_all(chosen, args.rebuild):
        start = time.monotonic()
        result = measure(peer, args.pairs)
        if isinstance(result, str):
            print(f"{peer.label}: measurement failed, skipped: {result}", flush=True)
            continue
        print(f"{peer.label}: measured in {time.monotonic() - start:.0f} s", flush=True)
        rows.append((peer, result))
        raw[peer.name] = result
    table(rows, args.pairs)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
