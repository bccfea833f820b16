"""Shared budgets (budget.py, "Shared budgets"): 4 processes against one store stop together, within the documented bound.

Each process spends $0.01 a call at its own pace under one raising $3/day budget. Per-process budgets
would let the fleet spend $12; shared, spending may pass $3 by at most what the other processes spend
in one sync round trip (2 x SHARE_INTERVAL_S) plus one call per process. A process that starts after
the limit is reached is refused at its first call, though it has spent nothing itself.
"""

import json
import subprocess
import sys
import textwrap
import time

import pytest

import tokentrail
from tokentrail.budget import SHARE_INTERVAL_S

LIMIT = 3.0
CALL_USD = 0.01

WORKER = textwrap.dedent("""
    import json, sys, time
    import tokentrail

    url, start_at, pause = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    tokentrail.init(store=url, instrument=False, flush_interval=0.05,
                    prices={"openai/tt-shared": {"input": 10.0, "output": 0.0}},   # 1,000 tokens = $0.01
                    budgets=[tokentrail.Budget(limit_usd=3.0, period="day", action="raise")])
    while time.time() < start_at:
        time.sleep(0.001)
    calls, began, refused = 0, time.time(), False
    while time.time() - began < 30:
        try:
            with tokentrail.track_llm_call("openai", "tt-shared") as span:
                span.set_tokens(input=1000, output=0)
        except tokentrail.BudgetExceeded:
            refused = True
            break
        calls += 1
        time.sleep(pause)
    elapsed = time.time() - began
    tokentrail.shutdown()
    print(json.dumps({"calls": calls, "refused": refused, "rate_usd": calls * 0.01 / max(elapsed, 1e-3)}))
""")


@pytest.fixture(params=["postgresql", "sqlite"])
def fleet_store(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return request.getfixturevalue("pg_url")


def run(url, n, pause, delay=4.0):
    start_at = time.time() + delay
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(start_at), str(pause)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=90)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_four_processes_share_one_budget_within_the_bound(fleet_store):
    results = run(fleet_store, 4, pause=0.01)
    assert all(r["refused"] for r in results), results  # the budget stopped every process, not one
    spent = sum(r["calls"] for r in results) * CALL_USD
    store = tokentrail.open_store(fleet_store)
    stored = store.summary(group_by=())[0]["cost_usd"]
    assert stored == pytest.approx(spent)  # every call that ran is in the store (refused ones cost nothing)
    fastest = max(r["rate_usd"] for r in results)
    bound = LIMIT + 3 * fastest * 2 * SHARE_INTERVAL_S + 4 * CALL_USD
    assert LIMIT <= spent <= bound, (spent, bound, results)
    assert spent < 4 * LIMIT * 0.75  # far from what 4 separate per-process budgets would allow
    # A newcomer has spent nothing, yet the fleet's budget is used up: its first call is refused.
    late = run(fleet_store, 1, pause=0.0, delay=1.0)[0]
    assert late == {**late, "calls": 0, "refused": True}
