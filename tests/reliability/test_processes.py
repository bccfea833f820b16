"""Several processes on one store, and forked children: os.fork, multiprocessing Process and Pool.

Each scenario runs in a fresh interpreter (a child of the test) so that forks, exits and
signals happen to a process that is only doing that.
"""

from __future__ import annotations

import os
import sys

import pytest

from reliability_helpers import figure, rows, run, start

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="fork start method")

WRITER = """
import sys, tokentrail
tokentrail.init(sys.argv[1], instrument=False)
for i in range(int(sys.argv[2])):
    with tokentrail.track_llm_call("openai", "gpt-4o", user_id=sys.argv[3]) as span:
        span.set_tokens(input=1, output=i % 3)
# no flush: exit writes what is left
"""


def test_four_processes_write_one_sqlite_file_and_every_call_lands(tmp_path):
    db = tmp_path / "shared.db"
    procs = [start(WRITER, tmp_path, f"sqlite:///{db}", "5000", f"p{n}") for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    got = rows(db, "SELECT user_id, COUNT(*), SUM(output_tokens) FROM llm_calls GROUP BY user_id")
    per = sum(i % 3 for i in range(5000))
    assert sorted(got) == [(f"p{n}", 5000, per) for n in range(4)]
    figure("processes on one SQLite file", "4 processes x 5,000 calls, exiting without flush(): 20,000 of 20,000 stored")


FORKS = """
import multiprocessing as mp, os, sys, time, tokentrail

def record(tag, n):
    for i in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o", user_id=tag) as span:
            span.set_tokens(input=1, output=1)

def child_raises(tag):
    record(tag, 300)
    raise RuntimeError("the child's own failure")

def child_exits(tag):
    record(tag, 300)
    sys.exit(3)

def pool_task(args):
    tag, n = args
    record(tag, n)
    return n

if __name__ == "__main__":
    mp.set_start_method("fork")
    tokentrail.init(sys.argv[1], instrument=False)
    record("parent-before", 500)          # still queued in the parent when the children fork
    # os.fork: a child that exits normally (atexit) and one that flushes before os._exit
    pid = os.fork()
    if pid == 0:
        record("fork-exit", 500)
        sys.exit(0)
    os.waitpid(pid, 0)
    pid = os.fork()
    if pid == 0:
        record("fork-_exit", 500)
        os._exit(0 if tokentrail.flush(10) else 5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # multiprocessing.Process (fork): they end with os._exit, past atexit
    procs = [mp.Process(target=record, args=(f"process-{n}", 1000)) for n in range(4)]
    procs += [mp.Process(target=child_raises, args=("process-raises",)), mp.Process(target=child_exits, args=("process-exit3",))]
    for p in procs: p.start()
    for p in procs: p.join(60)
    print("exitcodes", [p.exitcode for p in procs], flush=True)
    # Pool: leaving `with` terminates the workers (SIGTERM); maxtasksperchild workers end through _bootstrap
    with mp.Pool(4) as pool:
        assert sum(pool.map(pool_task, [("pool", 250)] * 16)) == 4000
    with mp.Pool(2, maxtasksperchild=1) as pool:
        assert sum(pool.map(pool_task, [("pool-recycled", 100)] * 6)) == 600
    record("parent-after", 500)
"""


def test_forked_children_record_everything_os_fork_process_and_pool(tmp_path):
    db = tmp_path / "forks.db"
    result = run(FORKS, tmp_path, f"sqlite:///{db}", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exitcodes [0, 0, 0, 0, 1, 3]" in result.stdout
    got = dict(rows(db, "SELECT user_id, COUNT(*) FROM llm_calls GROUP BY user_id"))
    expected = {"parent-before": 500, "fork-exit": 500, "fork-_exit": 500, "process-raises": 300, "process-exit3": 300,
                "pool": 4000, "pool-recycled": 600, "parent-after": 500, **{f"process-{n}": 1000 for n in range(4)}}
    assert got == expected
    assert "lost" not in result.stderr
    figure("fork children", f"os.fork (exit, flush+os._exit), 6 multiprocessing.Process (one raising, one sys.exit(3)), "
           f"Pool(4) left by terminate(), Pool(maxtasksperchild=1): {sum(got.values()):,} of {sum(expected.values()):,} stored")


LOCKED_FORK = """
import multiprocessing as mp, sys, threading, time, tokentrail
from tokentrail import pricing

inside = threading.Event()
hold = float(sys.argv[2])
original = pricing.PriceBook._resolve

def slow_resolve(self, provider, model):
    if model.startswith("slow-"):
        inside.set()
        time.sleep(hold)            # the worker holds the price book's lock all this time
    return original(self, provider, model)

pricing.PriceBook._resolve = slow_resolve

def child():
    for i in range(200):
        with tokentrail.track_llm_call("openai", f"child-model-{i % 5}", user_id="child") as span:
            span.set_tokens(input=1, output=1)
    # and the usual end of a multiprocessing child: os._exit after util._exit_function

if __name__ == "__main__":
    mp.set_start_method("fork")
    tokentrail.init(sys.argv[1], instrument=False)
    with tokentrail.track_llm_call("openai", "slow-model", user_id="parent") as span:
        span.set_tokens(input=1, output=1)  # priced: the worker looks the model up
    tokentrail.flush(0)            # wake the worker now
    assert inside.wait(10)
    t = time.perf_counter()
    p = mp.Process(target=child)
    p.start()
    started = time.perf_counter() - t
    p.join(60)
    print(f"exitcode {p.exitcode} start {started:.3f}", flush=True)
"""


@pytest.mark.parametrize("hold", [0.3, 3.0], ids=["held-briefly", "held-past-the-fork-wait"])
def test_a_child_forked_while_the_worker_holds_the_price_books_lock_records_everything(tmp_path, hold):
    """Held briefly: fork waits for the worker's batch to end (at most FORK_WAIT_S). Held longer: fork goes
    ahead and the child replaces the lock it inherited locked. Either way the child never deadlocks."""
    db = tmp_path / "locked.db"
    result = run(LOCKED_FORK, tmp_path, f"sqlite:///{db}", str(hold), timeout=60)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("exitcode 0"), result.stdout + result.stderr
    assert dict(rows(db, "SELECT user_id, COUNT(*) FROM llm_calls GROUP BY user_id")) == {"child": 200, "parent": 1}
    figure(f"fork while the worker holds the price lock ({hold} s)",
           f"child stored 200/200; Process.start() took {float(line.split()[-1]):.2f} s")


BUSY_FORK = """
import multiprocessing as mp, sys, threading, time, tokentrail

def record(tag, n):
    for i in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o", user_id=tag) as span:
            span.set_content(output="x" * 200)
            span.set_tokens(input=1, output=1)

if __name__ == "__main__":
    mp.set_start_method("fork")
    tokentrail.init(sys.argv[1], instrument=False, capture_content=True, flush_interval=0.01)
    stop = threading.Event()
    def busy():                      # keeps the parent's store writing (~4,000 calls/s), so forks land mid-export
        while not stop.is_set():
            record("parent", 100)
            time.sleep(0.025)
    threading.Thread(target=busy, daemon=True).start()
    time.sleep(0.2)
    starts, codes = [], []
    for n in range(20):
        t = time.perf_counter()
        p = mp.Process(target=record, args=(f"child-{n}", 200))
        p.start()
        starts.append(time.perf_counter() - t)
        p.join(60)
        codes.append(p.exitcode)
    stop.set()
    print("codes", codes, "max_start", round(max(starts), 3), flush=True)
"""


def test_children_forked_while_the_parents_store_is_writing_never_hang(tmp_path):
    db = tmp_path / "busy.db"
    result = run(BUSY_FORK, tmp_path, f"sqlite:///{db}", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "codes [" + ", ".join(["0"] * 20) + "]" in result.stdout, result.stdout + result.stderr
    got = dict(rows(db, "SELECT user_id, COUNT(*) FROM llm_calls WHERE user_id LIKE 'child-%' GROUP BY user_id"))
    assert got == {f"child-{n}": 200 for n in range(20)}
    assert "lost" not in result.stderr, result.stderr
    figure("forks during the parent's store writes", f"20 children x 200 calls: 4,000 of 4,000 stored, none hung; "
           f"slowest Process.start() {result.stdout.split('max_start')[1].strip()} s")
