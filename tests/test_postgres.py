"""The PostgreSQL store against a real server the session starts (tests/conftest.py `pg_server`): no mocks.

The read side, retention and losses are one implementation for both stores (`sinks/sqlstore.py`), so
the behaviour tests here run on SQLite and PostgreSQL alike and compare the two.
"""

import fractions
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

import tokentrail
from click.testing import CliRunner
from tokentrail import report
from tokentrail.cli import main
from tokentrail.errors import ConfigError, RecordsRejected
from tokentrail.record import LLMCall, Outcome, Span, ToolCall
from tokentrail.sinks import aggregates

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)


def call(i, **kw):
    base = dict(id=f"c{i:04d}", started_at=T0 + timedelta(days=i), duration_ms=float(i), provider="openai",
                request_model="gpt-4o" if i % 3 else "gpt-4o-mini", input_tokens=10, output_tokens=5, total_tokens=15,
                cost_usd=0.01, customer_id="acme" if i % 2 else "globex")
    base.update(kw)
    return LLMCall(**base)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'calls.db'}"
    return request.getfixturevalue("pg_url")


def test_round_trip_every_field_type_and_a_retry_writes_nothing_twice(pg_url):
    store = tokentrail.open_store(pg_url)
    assert type(store).__name__ == "PostgresStore" and store.schema_version() >= 4
    rich = call(1, stream=True, cache_hit=False, finish_reasons=["stop"], request_params={"temperature": 0.5},
                tags=["a", "b"], metadata={"k": [1, 2]}, input_messages=[{"role": "user", "content": "hi"}],
                ttft_ms=12.5, error_category="timeout", status_code=408)
    records = [rich, ToolCall(id="t1", name="search", started_at=T0, arguments={"q": 1}),
               Outcome(id="o1", name="won", value=3.0, success=True, recorded_at=T0),
               Span(id="s1", name="run", started_at=T0, trace_id="ab" * 16)]
    store.export(records)
    store.export(records)  # the lane's retry after a lost connection: no duplicates
    assert store.calls() == [rich]
    assert store.tool_calls()[0].arguments == {"q": 1}
    assert store.outcomes()[0].value == 3.0 and store.spans()[0].name == "run"
    store.close()


def test_a_batch_with_known_or_repeated_ids_is_written_and_summed_once(store_url, monkeypatch):
    """A new batch goes in as a plain insert; one holding an id already stored (a retry whose commit was
    lost) or the same record twice takes the ON CONFLICT path: either way each call is stored and summed once."""
    monkeypatch.setattr(aggregates, "MIN_CALLS", 0)  # the sums below come from the aggregate tables
    store = tokentrail.open_store(store_url)
    store.export([call(i) for i in range(4)])
    store.export([call(3), call(4), call(5), call(5), call(6)])
    store.export([call(i) for i in range(7, 10)])
    assert sorted(c.id for c in store.calls(limit=None)) == [f"c{i:04d}" for i in range(10)]
    (total,) = store.summary(group_by=())
    assert total["calls"] == 10 and total["input_tokens"] == 100 and total["cost_usd"] == pytest.approx(0.1)
    by_customer = {row["customer"]: row["calls"] for row in store.summary(group_by="customer", since=T0)}
    assert by_customer == {"acme": 5, "globex": 5}
    store.close()


def test_json_values_json_cannot_spell_are_stored_as_json_can(store_url):
    """NaN and infinities (not JSON: PostgreSQL's jsonb refuses them) are null; datetimes ISO 8601; an
    enum its value — also in a value holding an int past 64 bits, which orjson refuses (the standard
    encoder writes that one, and must agree)."""
    import enum

    class Tier(enum.Enum):
        GOLD = "gold"

    store = tokentrail.open_store(store_url)
    class Score(float):  # as numpy's float64 is: a float subclass orjson does not take
        pass

    odd = {"nan": float("nan"), "inf": float("-inf"), "when": T0, "tier": Tier.GOLD, "big": 2**70,
           "text": "é ü ✓", "ids": {1: "one"}, "pair": (1, 2.5), "score": Score(0.5), "bad": Score("nan"),
           "frac": fractions.Fraction(1, 4)}
    fits = {k: v for k, v in odd.items() if k != "big"}
    store.export([call(1, metadata=odd), call(2, metadata=fits)])
    first, second = sorted(store.calls(limit=None), key=lambda c: c.id)
    expected = {"nan": None, "inf": None, "when": "2026-09-01T12:00:00+00:00", "tier": "gold",
                "text": "é ü ✓", "ids": {"1": "one"}, "pair": [1, 2.5], "score": 0.5, "bad": None, "frac": 0.25}
    assert first.metadata == {**expected, "big": 2**70} and second.metadata == expected
    store.close()


def test_open_store_accepts_postgres_scheme_and_several_processes_migrate_at_once(pg_url):
    code = f"import tokentrail; s = tokentrail.open_store({pg_url.replace('postgresql', 'postgres')!r}); print(s.schema_version())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert set(outs) == {str(tokentrail.open_store(pg_url).schema_version())}


def test_monthly_partitions_are_created_as_records_arrive(pg_url):
    store = tokentrail.open_store(pg_url)
    store.export([call(i * 10) for i in range(8)])  # 70 days: September to November
    names = [name for name, _, _ in store.partitions("llm_calls")]
    assert names == ["llm_calls_p202609", "llm_calls_p202610", "llm_calls_p202611"]
    assert len(store.calls(limit=None)) == 8


def test_both_stores_answer_the_same(tmp_path, pg_url):
    records = [call(i, error_category="rate_limit" if i == 4 else None) for i in range(20)]
    answers = []
    for url in (f"sqlite:///{tmp_path / 'x.db'}", pg_url):
        store = tokentrail.open_store(url)
        store.export(records)
        answers.append((
            [c.id for c in store.calls(limit=5, where={"customer": "acme", "model": ["gpt-4o"]})],
            [c.id for c in store.calls(limit=3, order="oldest", since=T0 + timedelta(days=10))],
            store.summary(group_by=("model", "customer")),
            store.summary(group_by="day", since=T0 + timedelta(days=17)),
            store.ids_with_prefix("c001"),
            sorted(c.id for c in store.calls_after(0, limit=100)[0]),
        ))
    (a, b) = answers
    assert a[:2] == b[:2] and a[4:] == b[4:]
    for left, right in zip(a[2] + a[3], b[2] + b[3]):
        assert left.keys() == right.keys()
        for key in left:
            assert left[key] == pytest.approx(right[key]), key


def test_a_refused_batch_is_split_so_only_the_bad_record_is_lost(pg_url):
    store = tokentrail.open_store(pg_url)
    good = [call(i) for i in range(9)]
    bad = call(99, provider="nul\x00byte")  # PostgreSQL text cannot hold NUL
    with pytest.raises(RecordsRejected) as info:
        store.export(good[:4] + [bad] + good[4:])
    assert info.value.count == 1
    assert len(store.calls(limit=None)) == 9


def test_report_cli_and_doctor_work_on_it(pg_url):
    store = tokentrail.open_store(pg_url)
    store.export([call(i) for i in range(6)])
    store.write_stats([{"run_id": "r1", "sink": "x", "pid": 1, "written": 5, "dropped": 2, "failed": 1, "rejected": 0}])
    assert store.losses()[0]["dropped"] == 2
    totals = report.totals(store)
    assert totals["calls"] == 6 and totals["cost_usd"] == pytest.approx(0.06)
    result = CliRunner().invoke(main, ["report", "--store", pg_url, "--since", "2026-01-01"], catch_exceptions=False)
    assert result.exit_code == 0 and "gpt-4o" in result.output


def test_a_down_server_is_no_error_at_open_and_export_raises_until_it_is_back(pg_server, pg_url):
    pg_server.stop()
    try:
        store = tokentrail.open_store(pg_url)  # opens: the schema waits for the server
        with pytest.raises(Exception):
            store.export([call(1)])
    finally:
        pg_server.start()
    store.export([call(1)])
    assert [c.id for c in store.calls()] == ["c0001"]


def test_without_psycopg_init_says_how_to_install_it(pg_url, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["psycopg"] = None  # as if not installed
        import tokentrail
        try:
            tokentrail.init(store={pg_url!r}, instrument=False)
        except tokentrail.ConfigError as exc:
            print(exc)
        else:
            print("no error")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout
    assert "pip install 'tokentrail[postgres]'" in out


# -- retention -----------------------------------------------------------------------------------

def test_prune_deletes_before_a_moment_and_where(store_url):
    store = tokentrail.open_store(store_url)
    store.export([call(i) for i in range(40)] + [ToolCall(id="t0", name="x", started_at=T0)])
    cut = T0 + timedelta(days=35)
    counts = store.prune(cut, where={"customer_id": "acme"})
    assert counts["llm_calls"] == 17  # the odd days before day 35
    assert counts["tool_calls"] == 0  # the tool call is for no customer
    left = store.calls(limit=None)
    assert len(left) == 23 and all(c.customer_id == "globex" or c.started_at >= cut for c in left)
    counts = store.prune(cut)
    assert counts["llm_calls"] == 18 and counts["tool_calls"] == 1
    assert all(c.started_at >= cut for c in store.calls(limit=None))
    assert store.summary(group_by=())[0]["calls"] == 5  # deleted calls are not counted any more


def test_prune_with_rollup_keeps_totals_and_breakdowns(store_url):
    store = tokentrail.open_store(store_url)
    store.export([call(i, error_category="timeout" if i == 2 else None) for i in range(40)])
    def sums(rows):
        return sorted((sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in row.items()
                              if not k.startswith(("p50", "p95", "ttft")))) for row in rows)

    before = sums(store.summary(group_by=("model", "customer")))
    by_day = {r["day"]: r["calls"] for r in store.summary(group_by="day")}
    counts = store.prune(T0 + timedelta(days=60), rollup=True)
    assert counts["llm_calls"] == 40 and store.calls(limit=None) == []
    assert sums(store.summary(group_by=("model", "customer"))) == before
    assert {r["day"]: r["calls"] for r in store.summary(group_by="day")} == by_day
    # a rolled-up day is in a range when its start (00:00 UTC) is
    assert store.summary(group_by=(), since=datetime(2026, 10, 1, tzinfo=timezone.utc))[0]["calls"] == 10
    assert store.summary(group_by=(), since=T0 + timedelta(days=30))[0]["calls"] == 9
    assert report.totals(store)["errors"] == 1


def test_partitions_wholly_before_the_cut_are_dropped(pg_url):
    store = tokentrail.open_store(pg_url)
    store.export([call(i) for i in range(0, 90, 3)])  # September to November
    counts = store.prune(datetime(2026, 10, 15, tzinfo=timezone.utc))
    assert [n for n, _, _ in store.partitions("llm_calls")] == ["llm_calls_p202610", "llm_calls_p202611"]
    assert counts["llm_calls"] == len([i for i in range(0, 90, 3) if T0 + timedelta(days=i) < datetime(2026, 10, 15, tzinfo=timezone.utc)])
    store.export([call(0)])  # a late record for a dropped month gets its partition back
    assert store.calls(where={"id": "c0000"})


def test_cli_prune(store_url):
    store = tokentrail.open_store(store_url)
    store.export([call(i) for i in range(10)])
    result = CliRunner().invoke(main, ["prune", "--store", store_url, "--before", "2026-09-06", "--where", "customer_id=acme",
                                       "--rollup"], catch_exceptions=False)
    assert result.exit_code == 0 and "llm_calls: 2 rolled up and deleted" in result.output
    assert len(store.calls(limit=None)) == 8  # days 1 and 3 rolled up
    assert report.totals(store)["calls"] == 10


def test_retention_option_prunes_from_the_stores_thread(store_url, monkeypatch):
    now = datetime.now(timezone.utc)
    store = tokentrail.open_store(store_url)
    store.export([call(i, started_at=now - timedelta(days=100 + i)) for i in range(5)])
    monkeypatch.setenv("TOKENTRAIL_RETENTION", "30d rollup")
    tracker = tokentrail.init(store=store_url, instrument=False)
    assert tracker.settings.retention == (30 * 86400.0, True)
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 1, "output_tokens": 1})
    assert tokentrail.flush(10)
    left = store.calls(limit=None)
    assert len(left) == 1 and left[0].started_at > now - timedelta(days=1)  # the old ones were pruned…
    assert report.totals(store)["calls"] == 6  # …into daily aggregates the reports count


@pytest.mark.parametrize("value", ["soon", "90d forever", "-1d", 90])
def test_a_bad_retention_fails_at_init_naming_the_option(value):
    with pytest.raises(ConfigError, match="`retention`"):
        tokentrail.init(store="none", retention=value, instrument=False)


def test_percentiles_over_a_sample_of_a_large_table(store_url, monkeypatch):
    from tokentrail.sinks import sqlstore

    store = tokentrail.open_store(store_url)
    store.export([call(i, duration_ms=float(i)) for i in range(400)])
    exact = store.summary(group_by=())[0]
    monkeypatch.setattr(sqlstore, "PERCENTILE_SAMPLE", 40)  # every 10th call
    sampled = store.summary(group_by=())[0]
    assert sampled["calls"] == 400 and sampled["cost_usd"] == pytest.approx(exact["cost_usd"])  # sums stay exact
    assert sampled["p50_ms"] != exact["p50_ms"] and abs(sampled["p50_ms"] - exact["p50_ms"]) <= 10
    assert abs(sampled["p95_ms"] - exact["p95_ms"]) <= 10


def test_calls_show_export_doctor_and_tail_on_postgresql(pg_url):
    store = tokentrail.open_store(pg_url)
    store.export([call(i) for i in range(3)])
    store.write_stats([{"run_id": "r1", "sink": "otel", "pid": 1, "written": 5, "dropped": 7, "failed": 0, "rejected": 0}])
    runner = CliRunner()
    result = runner.invoke(main, ["calls", "--store", pg_url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0 and {c["id"] for c in __import__("json").loads(result.output)} == {"c0000", "c0001", "c0002"}
    result = runner.invoke(main, ["show", "c0001", "--store", pg_url], catch_exceptions=False)
    assert result.exit_code == 0 and "c0001" in result.output
    result = runner.invoke(main, ["export", "--store", pg_url, "--format", "jsonl", "--out", "-"], catch_exceptions=False)
    assert result.exit_code == 0 and len([line for line in result.output.splitlines() if line.startswith("{")]) == 3
    result = runner.invoke(main, ["doctor", "--store", pg_url, "--json"], catch_exceptions=False)
    doctor = __import__("json").loads(result.output)
    assert doctor["store"]["ok"] and doctor["store"]["calls"] == 3 and doctor["losses"][0]["dropped"] == 7
    cursor = report.start_cursor(store)  # what `tail` does: from now on, then each new call once
    store.export([call(10), call(11)])
    pages = list(report.new_calls(store, cursor))
    assert [r["id"] for rows, _ in pages for r in rows] == ["c0010", "c0011"]
    assert [r for rows, _ in report.new_calls(store, pages[-1][1]) for r in rows] == []


def test_the_dashboards_queries_answer_the_same_on_both_stores(tmp_path, pg_url):
    records = [call(i, error_category=("rate_limit", "timeout", None, None)[i % 4], cost_usd=0.001 * (i % 7),
                    started_at=T0 + timedelta(hours=5 * i)) for i in range(60)]
    answers = []
    for url in (f"sqlite:///{tmp_path / 'x.db'}", pg_url):
        store = tokentrail.open_store(url)
        store.export(records)
        page = report.calls_page(store, sort="-cost_usd", offset=5, limit=10, where={"customer": "acme"})
        answers.append((
            report.timeseries(store, bucket="day", stack="model", since=T0, until=T0 + timedelta(days=13)),
            report.timeseries(store, bucket="hour", stack=None, since=T0, until=T0 + timedelta(days=1)),
            [c["id"] for c in page["calls"]], page["total"],
            report.errors_report(store),
            report.count_calls(store, since=T0 + timedelta(days=3)),
        ))
    (a, b) = answers
    assert a[2:4] == b[2:4] and a[5] == b[5]
    assert a[0]["buckets"] == b[0]["buckets"] and a[1]["buckets"] == b[1]["buckets"]
    for left, right in ((a[0], b[0]), (a[1], b[1])):
        assert [s["key"] for s in left["series"]] == [s["key"] for s in right["series"]]
        for ls, rs in zip(left["series"], right["series"]):
            assert ls["calls"] == rs["calls"] and ls["cost_usd"] == pytest.approx(rs["cost_usd"])
    assert [(e["category"], e["calls"]) for e in a[4]] == [(e["category"], e["calls"]) for e in b[4]] == [("rate_limit", 15), ("timeout", 15)]


def test_a_month_another_process_pruned_is_created_again_not_refused(pg_url):
    writer, pruner = tokentrail.open_store(pg_url), tokentrail.open_store(pg_url)
    writer.export([call(0)])  # September: the writer now knows that partition
    pruner.prune(datetime(2026, 10, 1, tzinfo=timezone.utc))  # …which the other process drops
    writer.export([call(1)])  # a late September record: written, not rejected
    assert [c.id for c in writer.calls()] == ["c0001"]


def test_the_cli_on_a_server_that_is_down_says_so_in_one_line(pg_server, pg_url):
    pg_server.stop()
    try:
        result = CliRunner().invoke(main, ["report", "--store", pg_url])
    finally:
        pg_server.start()
    assert result.exit_code == 1 and "cannot reach the store" in result.output
    assert "Traceback" not in result.output


def test_sessions_run_without_jit_and_with_room_to_sort_unless_the_url_says_otherwise(pg_url):
    # JIT compiling cost more than running the reports' statements, and their sorts spilled at 4 MB.
    store = tokentrail.open_store(pg_url)
    assert [store._read(f"SHOW {name}")[0][0] for name in ("jit", "work_mem", "TimeZone")] == ["off", "64MB", "UTC"]
    store.close()
    sep = "&" if "?" in pg_url else "?"
    tuned = tokentrail.open_store(f"{pg_url}{sep}options=-c%20work_mem%3D16MB%20-c%20timezone%3DEurope/Paris")
    # the URL's own options win over the tuning, not over the time zone the store reads times in
    assert [tuned._read(f"SHOW {name}")[0][0] for name in ("jit", "work_mem", "TimeZone")] == ["off", "16MB", "UTC"]
    tuned.close()


def test_the_costliest_calls_of_a_model_are_read_from_an_index(pg_url):
    """Schema 9: (model, cost) and cost indexes, spelled as the query layer writes its `model` and sort."""
    import psycopg

    from tokentrail.sinks.query import QueryBuilder

    store = tokentrail.open_store(pg_url)
    store.export([call(i, cost_usd=0.01 * i) for i in range(20)])
    query = QueryBuilder(store.codecs[LLMCall].columns, "started_at", style="format")
    plans = {}
    for name, where in (("model", {"model": "gpt-4o"}), ("all", None)):
        clause, params = query.where(where=where)
        sql = f"SELECT id FROM llm_calls{clause} {query.order('-cost_usd')} LIMIT 50"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SET enable_seqscan = off")  # a 20-row table: make the planner say which index it can use
            plans[name] = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {sql}", params))
    assert "Index" in plans["model"] and "coalesce_cost_usd" in plans["model"], plans["model"]
    assert "Index" in plans["all"] and "cost_usd" in plans["all"] and "Seq Scan" not in plans["all"], plans["all"]
    store.close()
