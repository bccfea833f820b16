"""The reliability suite's concurrency cases against a real PostgreSQL (tests/conftest.py `pg_server`).

16 threads and 4 processes write to one server, every call lands once; a server restart mid-run
never blocks the application, and every record either lands after it or is counted lost.
"""

import threading
import time

import tokentrail
from reliability_helpers import figure, run

THREADS, PER_THREAD = 16, 2_000
PROCESSES, PER_PROCESS = 4, 5_000


def test_16_threads_into_postgresql_every_call_lands_once_with_its_attribution(pg_url):
    tokentrail.init(store=pg_url, instrument=False)

    def work(t):
        with tokentrail.attributes(user_id=f"u{t}"):
            for i in range(PER_THREAD):
                tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": t, "output_tokens": i})

    began = time.perf_counter()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = time.perf_counter() - began
    assert tokentrail.flush(60)
    landed = time.perf_counter() - began
    store = tokentrail.open_store(pg_url)
    rows = {r["user"]: r for r in store.summary(group_by="user")}
    assert sum(r["calls"] for r in rows.values()) == THREADS * PER_THREAD
    for t in range(THREADS):  # each thread's calls carry its own user, and its own token counts
        assert rows[f"u{t}"]["calls"] == PER_THREAD and rows[f"u{t}"]["input_tokens"] == t * PER_THREAD
    figure("postgres: threads", f"{THREADS} x {PER_THREAD:,} calls made in {made:.2f} s, all {THREADS * PER_THREAD:,} "
                                f"stored {landed:.2f} s after the start, none lost or misattributed")


def test_4_processes_into_one_postgresql_every_call_lands(pg_url, tmp_path):
    code = f"""
        import sys, tokentrail
        tokentrail.init(store={pg_url!r}, instrument=False)
        with tokentrail.attributes(customer_id="p" + sys.argv[1]):
            for i in range({PER_PROCESS}):
                tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={{"input_tokens": 1, "output_tokens": 1}})
        assert tokentrail.flush(60)
    """
    import concurrent.futures

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(PROCESSES) as pool:
        results = list(pool.map(lambda p: run(code, tmp_path, str(p)), range(PROCESSES)))
    elapsed = time.perf_counter() - began
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    rows = {r["customer"]: r["calls"] for r in tokentrail.open_store(pg_url).summary(group_by="customer")}
    assert rows == {f"p{p}": PER_PROCESS for p in range(PROCESSES)}
    figure("postgres: processes", f"{PROCESSES} x {PER_PROCESS:,} calls from separate processes, all stored, "
                                  f"{elapsed:.1f} s including interpreter start")


def test_a_server_restart_mid_run_blocks_nothing_and_loses_nothing_uncounted(pg_server, pg_url):
    tracker = tokentrail.init(store=pg_url, instrument=False, flush_interval=0.05, queue_size=50_000)
    made, slowest, stop = [0], [0.0], threading.Event()

    def app():
        while not stop.is_set():
            began = time.perf_counter()
            tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 1, "output_tokens": 1})
            slowest[0] = max(slowest[0], time.perf_counter() - began)
            made[0] += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=app)
    thread.start()
    time.sleep(1.0)
    before_restart = made[0]
    pg_server.stop("fast")  # clients are disconnected; connections in the pool are dead
    time.sleep(2.0)
    pg_server.start()
    restarted_at = made[0]
    time.sleep(1.5)
    stop.set()
    thread.join()
    assert tokentrail.flush(60)
    stats = tracker.stats()["sinks"][pg_url]
    stored = tokentrail.open_store(pg_url).summary(group_by=())[0]["calls"]
    lost = stats["dropped"] + stats["failed"] + stats["rejected"]
    assert stored == stats["written"]
    assert stored + lost == made[0]  # every record landed, or is counted lost
    assert stored > restarted_at  # writing resumed after the restart
    assert stored >= before_restart
    assert slowest[0] < 0.05, slowest[0]  # the application never waited on the store
    figure("postgres: server restart", f"{made[0]:,} calls over a 2 s outage: {stored:,} stored, {stats['failed']:,} "
                                       f"failed + {stats['dropped']:,} dropped (counted); slowest call "
                                       f"{slowest[0] * 1000:.2f} ms on the app thread")


def test_a_dead_server_never_blocks_the_app_and_every_call_is_counted():
    # A port nobody listens on: the store opens (the schema waits for the server), every write fails.
    tracker = tokentrail.init(store="postgresql://nobody@127.0.0.1:9/none", instrument=False, queue_size=500,
                              flush_interval=0.05, shutdown_timeout=1)
    slowest = 0.0
    for _ in range(5_000):
        began = time.perf_counter()
        tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 1, "output_tokens": 1})
        slowest = max(slowest, time.perf_counter() - began)
    began = time.perf_counter()
    tokentrail.shutdown()
    shutdown_s = time.perf_counter() - began
    stats = tracker.stats()
    sink = stats["sinks"]["postgresql://nobody@127.0.0.1:9/none"]
    assert sink["written"] == 0 and sink["dropped"] + stats["dropped"] > 0  # the buffers filled and drops were counted
    assert slowest < 0.05 and shutdown_s < 3  # neither a call nor the exit waits on the dead server
    figure("postgres: dead server", f"5,000 calls, slowest {slowest * 1000:.2f} ms; shutdown {shutdown_s:.2f} s; "
                                    f"{sink['dropped'] + stats['dropped']:,} dropped and counted")
