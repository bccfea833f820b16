"""report.py: the read API behind the CLI and the dashboard — plain data from real SQLite files."""

import csv
import io
import itertools
import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tokentrail
from tokentrail import report
from tokentrail.errors import StoreError
from tokentrail.record import LLMCall, Outcome

_spans = itertools.count(1)
NOW = datetime.now(timezone.utc) - timedelta(minutes=10)


def call(offset_ms=0, **fields):
    moment = NOW + timedelta(milliseconds=offset_ms)
    values = dict(provider="openai", request_model="gpt-4o-mini", input_tokens=100, output_tokens=20,
                  cost_usd=0.00003, duration_ms=250.0, customer_id="acme", user_id="u1", feature="chat")
    values.update(fields)
    return LLMCall(id=f"{int(moment.timestamp() * 1000):012x}{next(_spans):016x}", started_at=moment, **values)


def store_with(path, records):
    store = tokentrail.open_store(f"sqlite:///{path}")
    store.export(records)
    store.close()
    return f"sqlite:///{path}"


@pytest.fixture
def mixed(tmp_path):
    """A store with two customers, two models, a workflow with outcomes, an error and an unpriced call."""
    records = [
        call(0, workflow="ticket", workflow_run_id="r1"),
        call(1, workflow="ticket", workflow_run_id="r1", request_model="claude-haiku-4-5", provider="anthropic", cost_usd=0.001),
        call(2, customer_id="globex", user_id="u9", workflow="ticket", workflow_run_id="r2", cost_usd=0.01),
        call(3, customer_id="globex", error_category="rate_limit", error_type="RateLimitError", cost_usd=0.0,
             input_tokens=None, output_tokens=None),
        call(4, request_model="in-house-7b", provider="in_house", cost_usd=None),
        Outcome(id="o1", recorded_at=NOW, name="resolved", workflow="ticket", workflow_run_id="r1", customer_id="acme", value=1),
        Outcome(id="o2", recorded_at=NOW, name="resolved", workflow="ticket", workflow_run_id="r2", customer_id="globex",
                success=False),
    ]
    return store_with(tmp_path / "mixed.db", records)


# -- store URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, path", [
    ("/abs/calls.db", "/abs/calls.db"),
    ("sqlite:////abs/calls.db", "/abs/calls.db"),
    ("calls.db", "calls.db"),
    ("data/calls.db", "data/calls.db"),
    ("sqlite:///data/calls.db", "data/calls.db"),
    ("sqlite:///:memory:", ":memory:"),
])
def test_store_urls_keep_paths_as_written(typed, path):
    assert report.store_path(typed) == path


def test_store_url_home_default_and_errors(monkeypatch, tmp_path):
    assert report.store_path("~/calls.db") == str(Path.home() / "calls.db")
    assert report.store_url(None) == "sqlite:///tokentrail.db"
    monkeypatch.setenv("TOKENTRAIL_STORE", str(tmp_path / "env.db"))
    assert report.store_path(None) == str(tmp_path / "env.db")
    for bad in ("", "  ", "mysql://x/y"):
        with pytest.raises(ValueError):
            report.store_url(bad)
    monkeypatch.setenv("TOKENTRAIL_STORE", "none")
    with pytest.raises(tokentrail.ConfigError, match="none"):
        report.store_url(None)


def test_open_existing_never_creates(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        report.open_existing(str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="folder"):
        report.open_existing(str(tmp_path))
    assert report.store_exists(str(tmp_path / "missing.db")) is False


# -- times ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10000000d", "99999999999999w", 1e20])
def test_times_out_of_range_are_value_errors(value):
    with pytest.raises(ValueError, match="out of range"):
        report.parse_time(value)


def test_time_range():
    since, until = report.time_range("2d", "1h")
    assert since < until and since.tzinfo is not None
    assert report.time_range(None, None) == (None, None)
    with pytest.raises(ValueError, match="before"):
        report.time_range("1h", "2d")
    with pytest.raises(ValueError, match="not a time"):
        report.time_range("soonish")


# -- the read-only reader --------------------------------------------------------------------------------------


def test_the_reader_answers_like_the_store(mixed):
    store = tokentrail.open_store(mixed)
    reader = report.SQLiteReader(mixed)
    assert reader.read_only and reader.schema_version() == store.schema_version()
    assert [c.id for c in reader.calls(limit=None)] == [c.id for c in store.calls(limit=None)]
    assert reader.calls(where={"customer": "globex"}, limit=None) == store.calls(where={"customer": "globex"}, limit=None)
    for group_by in ((), ("model",), ("customer", "day")):
        assert reader.summary(group_by=group_by) == store.summary(group_by=group_by)
    assert reader.outcomes(limit=None) == store.outcomes(limit=None)
    assert reader.tool_calls(limit=None) == store.tool_calls(limit=None)
    assert reader.calls_after(0, limit=2) == store.calls_after(0, limit=2)
    assert reader.calls_after(-1) == store.calls_after(-1)
    with pytest.raises(StoreError, match="read-only"):
        reader.export([call()])
    with pytest.raises(ValueError, match="unknown field"):
        reader.calls(where={"colour": "red"})
    reader.close()


def test_the_reader_reads_a_newer_store_that_the_writer_refuses(mixed):
    path = report.store_path(mixed)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE llm_calls ADD COLUMN from_the_future TEXT")
    db.execute("INSERT INTO schema_version VALUES (99, '2099-01-01')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        tokentrail.open_store(mixed)
    opened = report.open_existing(mixed)
    assert isinstance(opened, report.SQLiteReader)
    assert report.totals(opened)["calls"] == 5


def test_the_reader_reads_a_store_missing_a_column_as_null(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER, applied_at TEXT)")
    db.execute("INSERT INTO schema_version VALUES (1, '2025-01-01')")
    db.execute("CREATE TABLE llm_calls (id TEXT PRIMARY KEY, started_at TEXT, provider TEXT, request_model TEXT, "
               "input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, cost_usd REAL, duration_ms REAL, "
               "error_type TEXT, error_category TEXT, ttft_ms REAL, cache_read_tokens INTEGER, cache_write_tokens INTEGER, "
               "reasoning_tokens INTEGER, operation TEXT, stream INTEGER, tags TEXT)")
    db.execute("INSERT INTO llm_calls VALUES ('a1', ?, 'openai', 'gpt-4o', 5, 1, 6, 0.5, 10, NULL, NULL, NULL, NULL, NULL, "
               "NULL, 'chat', 0, '[\"x\"]')", (NOW.isoformat(),))
    db.commit()
    db.close()
    reader = report.SQLiteReader(f"sqlite:///{path}")
    [only] = reader.calls()
    assert only.id == "a1" and only.customer_id is None and only.tags == ["x"] and only.stream is False
    assert reader.outcomes() == [] and reader.summary(group_by=())[0]["cost_usd"] == 0.5


def test_the_reader_refuses_what_is_not_a_store(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        report.SQLiteReader(f"sqlite:///{junk}")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE llm_calls (x)").connection.commit()
    with pytest.raises(StoreError, match="not a tokentrail store"):
        report.SQLiteReader(f"sqlite:///{other}")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    reader = report.SQLiteReader(f"sqlite:///{empty}")
    assert reader.calls() == [] and reader.summary() == [] and reader.calls_after(-1) == ([], 0)
    assert report.totals(reader) is None


# -- reports --------------------------------------------------------------------------------------------------


def test_totals_breakdown_and_report(mixed):
    store = report.open_existing(mixed)
    total = report.totals(store)
    assert total["calls"] == 5 and total["errors"] == 1 and total["unpriced_calls"] == 1
    by = {(r["customer"], r["model"]): r["calls"] for r in report.breakdown(store, ["customer", "model"])}
    assert by[("acme", "gpt-4o-mini")] == 1 and by[("globex", "gpt-4o-mini")] == 2
    with pytest.raises(ValueError, match="planet"):
        report.breakdown(store, ["planet"])
    data = report.report(store, ["provider"], where={"customer": "acme"})
    assert data["totals"]["calls"] == 3 and {r["provider"] for r in data["breakdown"]} == {"openai", "anthropic", "in_house"}
    json.dumps(data)  # plain data
    assert [(r["provider"], r["model"]) for r in report.unpriced_models(store)] == [("in_house", "in-house-7b")]


def test_outcomes_follow_where(mixed):
    store = report.open_existing(mixed)
    [everything] = report.outcomes_report(store)
    assert (everything["count"], everything["successes"], everything["runs"]) == (2, 1, 2)
    assert everything["cost_usd"] == pytest.approx(0.01103) and everything["cost_per_outcome_usd"] == pytest.approx(0.01103)
    [acme] = report.outcomes_report(store, where={"customer": "acme"})
    assert (acme["count"], acme["cost_usd"]) == (1, pytest.approx(0.00103))
    [by_id] = report.outcomes_report(store, where={"customer_id": ["acme"]})
    assert by_id == acme
    [haiku] = report.outcomes_report(store, where={"model": "claude-haiku-4-5"})  # a field only calls have
    assert (haiku["count"], haiku["runs"], haiku["cost_usd"]) == (1, 1, pytest.approx(0.001))
    assert report.outcomes_report(store, where={"customer": "initech"}) == []
    assert report.outcomes_report(store, where={"provider": "mistral_ai"}) == []


# -- calls ----------------------------------------------------------------------------------------------------


def test_calls_are_plain_rows(mixed):
    rows = report.calls(report.open_existing(mixed), where={"customer": "globex"})
    assert [r["customer_id"] for r in rows] == ["globex", "globex"]
    assert rows[0]["model"] == rows[0]["request_model"] and isinstance(rows[0]["started_at"], str)
    json.dumps(rows)


@pytest.mark.parametrize("reader", [False, True])
def test_find_call_by_id_or_unique_prefix(tmp_path, reader):
    calls = [call(0) for _ in range(3)]  # one millisecond: ids differ after the 12 digits of the time
    for k, c in enumerate(calls, 1):
        c.id = c.id[:12] + f"{k:x}" * 16
    url = store_with(tmp_path / "f.db", calls)
    store = report.SQLiteReader(url) if reader else tokentrail.open_store(url)  # with and without ids_with_prefix
    assert report.find_call(store, calls[1].id)["id"] == calls[1].id
    assert report.find_call(store, calls[1].id[:13])["id"] == calls[1].id
    assert sorted(report.matching_ids(store, calls[0].id[:12])) == sorted(c.id for c in calls)
    with pytest.raises(StoreError, match="3 calls have an id starting with"):
        report.find_call(store, calls[0].id[:12])
    with pytest.raises(StoreError, match="no call with id"):
        report.find_call(store, "zz")
    with pytest.raises(ValueError):
        report.find_call(store, " ")


def test_new_calls_reads_every_page_until_caught_up(tmp_path):
    url = store_with(tmp_path / "t.db", [call(i) for i in range(2500)])
    store = tokentrail.open_store(url)
    pages = list(report.new_calls(store, 0, page=1000))
    assert [len(rows) for rows, _ in pages] == [1000, 1000, 500]
    cursor = pages[-1][1]
    assert report.start_cursor(store) == cursor and report.start_cursor(store, from_start=True) == 0
    assert list(report.new_calls(store, cursor)) == []
    store.export([call(3000, customer_id="late"), call(3001)])
    [(rows, _)] = list(report.new_calls(store, cursor, where={"customer": "late"}))
    assert [r["customer_id"] for r in rows] == ["late"]


def test_only_demo_calls(tmp_path):
    demo = store_with(tmp_path / "d.db", [call(i, tags=["demo"]) for i in range(3)])
    assert report.only_demo_calls(report.open_existing(demo))
    mixed = store_with(tmp_path / "m.db", [call(0, tags=["demo"]), call(1)])
    assert not report.only_demo_calls(report.open_existing(mixed))


# -- export -----------------------------------------------------------------------------------------------------


def test_export_rows_and_formats(mixed):
    rows = report.export_rows(report.open_existing(mixed), where={"customer": "acme"})
    assert len(rows) == 3 and list(rows[0]) == list(report.EXPORT_COLUMNS)
    assert rows == sorted(rows, key=lambda r: r["started_at"])  # oldest first
    assert report.export_format("x.CSV") == "csv" and report.export_format("x.ndjson") == "jsonl"
    assert report.export_format("-", "parquet") == "parquet"
    for bad in (("-", None), ("x.txt", None), ("x.csv", "xml")):
        with pytest.raises(ValueError):
            report.export_format(*bad)


def test_write_rows_to_paths_and_streams(tmp_path):
    rows = [{"a": 1, "b": ["x", "y"], "c": None}, {"a": 2, "b": {"k": 1}, "c": "z"}]
    target = tmp_path / "out.csv"
    assert report.write_rows(rows, "csv", target) == 2
    assert list(csv.DictReader(target.open())) == [{"a": "1", "b": '["x", "y"]', "c": ""}, {"a": "2", "b": '{"k": 1}', "c": "z"}]
    with pytest.raises(FileExistsError):
        report.write_rows(rows, "csv", target)
    assert report.write_rows(rows[:1], "jsonl", target, overwrite=True) == 1
    assert json.loads(target.read_text()) == rows[0]
    stream = io.StringIO()
    report.write_rows(rows, "jsonl", stream, columns=["a"])
    assert stream.getvalue() == '{"a": 1}\n{"a": 2}\n'
    with pytest.raises(FileNotFoundError):
        report.write_rows(rows, "csv", tmp_path / "missing" / "x.csv")
    with pytest.raises(IsADirectoryError):
        report.write_rows(rows, "csv", tmp_path)


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    class Boom:
        def __iter__(self):
            yield {"a": 1}
            raise RuntimeError("disk on fire")

        def __len__(self):
            return 2

    with pytest.raises(RuntimeError):
        report.write_rows(Boom(), "jsonl", tmp_path / "x.jsonl", columns=["a"])
    assert not (tmp_path / "x.jsonl").exists()


def test_write_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"a": 1, "b": ["x"]}, {"a": 2, "b": None}]
    report.write_rows(rows, "parquet", tmp_path / "x.parquet")
    assert pq.read_table(tmp_path / "x.parquet").to_pylist() == [{"a": 1, "b": '["x"]'}, {"a": 2, "b": None}]
    buffer = io.BytesIO()
    report.write_rows(rows, "parquet", buffer)
    assert buffer.getvalue()[:4] == b"PAR1"


# -- prices and doctor -----------------------------------------------------------------------------------------


def test_price_table(monkeypatch):
    rows = {r["model"]: r for r in report.price_table(["gpt-4o", "gemini-1.5-pro", "nope-9000"])}
    assert rows["gpt-4o"]["input"] == pytest.approx(2.5) and rows["gpt-4o"]["provider"] == "openai"
    tiered = rows["gemini-1.5-pro"]["input"]
    assert tiered["base"] == pytest.approx(1.25) and tiered["tiers"][0]["above_input_tokens"] > 0
    assert rows["nope-9000"] == {"model": "nope-9000", "price": None}
    monkeypatch.setenv("TOKENTRAIL_PRICES", json.dumps({"our-model": {"input": 1, "output": 2}}))
    [custom] = report.price_table(["our-model"])
    assert (custom["source"], custom["input"], custom["output"]) == ("custom", pytest.approx(1), pytest.approx(2))
    json.dumps(rows)


def test_doctor_data(mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_INSTRUMENT", "openai")
    status = [  # the shape of tokentrail.instrument.status()
        {"name": "openai", "package": "openai", "minimum": "1.0", "installed": "1.99.0", "supported": True, "patched": False},
        {"name": "anthropic", "package": "anthropic", "minimum": "0.40", "installed": "0.1.0", "supported": False, "patched": False},
        {"name": "cohere", "package": "cohere", "minimum": "5.4", "installed": None, "supported": False, "patched": False},
    ]
    data = report.doctor(mixed, sdks=status)
    sdks = {r["sdk"]: r for r in data["sdks"]}
    assert sdks["openai"] == {"sdk": "openai", "package": "openai", "minimum": "1.0", "installed": "1.99.0",
                              "supported": True, "patched_by_init": True}
    assert sdks["anthropic"]["installed"] == "0.1.0" and not sdks["anthropic"]["supported"]
    assert sdks["cohere"]["installed"] is None and sdks["cohere"]["minimum"] == "5.4"
    options = {r["option"]: r for r in data["configuration"]}
    assert options["instrument"]["source"] == "environment variable TOKENTRAIL_INSTRUMENT"
    assert options["store"]["source"] == "default"
    from tokentrail.sinks.schema import SCHEMA_VERSION

    assert data["store"] == {"url": mixed, "ok": True, "read_only": False, "schema_version": SCHEMA_VERSION, "calls": 5, "error": None}
    json.dumps(data)
    broken = report.doctor(str(tmp_path / "none.db"))
    assert not broken["store"]["ok"] and "no store at" in broken["store"]["error"]
    monkeypatch.setenv("TOKENTRAIL_STORE", "none")
    assert report.doctor()["store"]["url"] is None and report.doctor()["store"]["ok"]


# -- trace: one run as a tree --------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def run_records():
    """A support run: workflow > agent > (tool > call, call, failed call), an outcome; plus a chain outside the run
    in the same trace, and a call of another trace."""
    from tokentrail.record import Span, ToolCall

    def at(ms):
        return NOW + timedelta(milliseconds=ms)

    def named(ms, id, **fields):
        record = call(ms, **fields)
        record.id = id
        return record

    run = dict(workflow="support", workflow_run_id="run-1", trace_id=TRACE)
    return [
        Span(id="s-outer", span_id="a0", name="RunnableSequence", started_at=at(0), duration_ms=900.0, source="langchain",
             metadata={"kind": "chain"}, trace_id=TRACE),
        Span(id="s-run", span_id="a1", parent_span_id="a0", name="support", started_at=at(10), duration_ms=800.0, **run),
        Span(id="s-agent", span_id="a2", parent_span_id="a1", name="researcher", operation="invoke_agent", started_at=at(20),
             duration_ms=700.0, source="langchain", metadata={"kind": "agent"}, **run),
        ToolCall(id="t-1", span_id="a3", parent_span_id="a2", name="lookup", started_at=at(30), duration_ms=300.0, **run),
        named(40, "c-1", span_id="a4", parent_span_id="a3", cost_usd=0.002, input_tokens=100, output_tokens=10, **run),
        named(400, "c-2", span_id="a5", parent_span_id="a2", cost_usd=0.001, input_tokens=50, output_tokens=5, ttft_ms=80.0, **run),
        named(500, "c-3", span_id="a6", parent_span_id="a2", cost_usd=None, request_model="in-house", provider="in_house",
             input_tokens=7, output_tokens=1, error_type="RateLimitError", error_category="rate_limit", **run),
        Outcome(id="o-1", recorded_at=at(850), name="resolved", value=1, parent_span_id="a1", **run),
        named(950, "c-outside", span_id="a7", parent_span_id="a0", trace_id=TRACE, cost_usd=0.0005),
        named(960, "c-orphan", span_id="a8", parent_span_id="gone", trace_id=TRACE, cost_usd=0.0001),
        named(0, "c-other", span_id="b1", trace_id="f" * 32),
    ]


@pytest.fixture
def traced(tmp_path):
    return store_with(tmp_path / "trace.db", run_records())


def shape(node):
    return (node["kind"], node["name"], [shape(c) for c in node["children"]])


def test_trace_by_trace_id_is_the_whole_tree_with_costs_rolled_up(traced):
    data = report.trace(tokentrail.open_store(traced), TRACE)
    outer, orphan = data["roots"]  # a record whose parent is not in the trace is a root
    assert orphan["id"] == "c-orphan"
    assert shape(outer) == ("span", "RunnableSequence", [
        ("span", "support", [
            ("span", "researcher", [
                ("tool_call", "lookup", [("llm_call", "gpt-4o-mini", [])]),
                ("llm_call", "gpt-4o-mini", []),
                ("llm_call", "in-house", []),
            ]),
            ("outcome", "resolved", []),
        ]),
        ("llm_call", "gpt-4o-mini", []),
    ])
    agent = outer["children"][0]["children"][0]
    assert agent["cost_usd"] is None and agent["detail"]["kind"] == "agent"
    assert agent["subtree"] == {"cost_usd": pytest.approx(0.003), "input_tokens": 157, "output_tokens": 16,
                                "total_tokens": 173, "llm_calls": 3, "tool_calls": 1, "unpriced_calls": 1, "errors": 1}
    tool = agent["children"][0]
    assert tool["subtree"]["cost_usd"] == pytest.approx(0.002) and tool["duration_ms"] == 300.0
    failed = agent["children"][2]
    assert failed["error"] == {"type": "RateLimitError", "category": "rate_limit", "message": None}
    assert agent["children"][1]["detail"]["ttft_ms"] == 80.0
    assert data["totals"]["cost_usd"] == pytest.approx(0.0036) and data["totals"]["llm_calls"] == 5
    assert data["workflow"] == "support" and data["workflow_run_id"] == "run-1"
    assert data["duration_ms"] == pytest.approx(1210.0)  # from the first start to the last end
    json.dumps(data)


def test_trace_by_workflow_run_id_is_that_runs_subtree(traced):
    data = report.trace(report.SQLiteReader(traced), "run-1")  # the read-only reader has spans too
    (root,) = data["roots"]
    assert (root["name"], root["detail"]["kind"], data["trace_id"]) == ("support", "workflow", TRACE)
    assert root["subtree"]["llm_calls"] == 3 and data["totals"]["cost_usd"] == pytest.approx(0.003)


def test_trace_by_call_id_or_prefix_finds_its_trace(traced):
    store = tokentrail.open_store(traced)
    assert report.trace(store, "c-2")["trace_id"] == TRACE
    assert report.trace(store, "c-oth")["trace_id"] == "f" * 32
    with pytest.raises(StoreError, match="no trace, workflow run or call"):
        report.trace(store, "nothing-like-it")
    with pytest.raises(ValueError):
        report.trace(store, "  ")


def test_a_run_recorded_without_spans_is_found_by_its_run_id(tmp_path):
    url = store_with(tmp_path / "old.db", [call(0, workflow="w", workflow_run_id="r9", trace_id="1" * 32, span_id="c1"),
                                           call(5, workflow="w", workflow_run_id="r9", trace_id="1" * 32, span_id="c2")])
    data = report.trace(tokentrail.open_store(url), "r9")
    assert [n["kind"] for n in data["roots"]] == ["llm_call", "llm_call"] and data["workflow"] == "w"


def test_a_deep_trace_does_not_hit_the_recursion_limit(tmp_path):
    from tokentrail.record import Span

    depth = 3000
    spans = [Span(id=f"s{i}", span_id=f"{i:016x}", parent_span_id=f"{i - 1:016x}" if i else None, name=f"step{i}",
                  trace_id=TRACE, started_at=NOW + timedelta(microseconds=i)) for i in range(depth)]
    url = store_with(tmp_path / "deep.db", [*spans, call(5, span_id="leaf", parent_span_id=f"{depth - 1:016x}", trace_id=TRACE)])
    data = report.trace(tokentrail.open_store(url), TRACE)
    assert data["roots"][0]["subtree"]["llm_calls"] == 1


def test_the_reader_reads_spans_like_the_store(traced):
    assert report.SQLiteReader(traced).spans(limit=None) == tokentrail.open_store(traced).spans(limit=None)


# -- the dashboard's queries ------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [tokentrail.open_store, report.SQLiteReader], ids=["store", "reader"])
def test_dashboard_queries_page_sort_count_and_group_in_sql(mixed, opener):
    store = opener(mixed)
    page = report.calls_page(store, sort="-cost_usd", limit=2)
    assert page["total"] == report.count_calls(store) == 5
    assert [c["cost_usd"] for c in page["calls"]] == [0.01, 0.001]
    rest = report.calls_page(store, sort="-cost_usd", limit=10, offset=2)["calls"]
    assert [c["cost_usd"] for c in rest] == [0.00003, 0.0, None]  # calls without a cost come last
    assert report.calls_page(store, sort="model", limit=1)["calls"][0]["model"] == "claude-haiku-4-5"
    assert report.count_calls(store, where={"customer": "globex"}) == 2
    assert report.has_calls(store)
    assert report.errors_report(store) == [{"category": "rate_limit", "calls": 1, "share": 1.0, "cost_usd": 0.0}]
    assert report.count_calls(store, where=report.failed_filter()) == 1
    series = report.timeseries(store, bucket="hour", stack="provider")
    assert sum(sum(s["calls"]) for s in series["series"]) == 5
    assert {s["key"] for s in series["series"]} == {"openai", "anthropic", "in_house"}
    lean = report.totals_lean(store)
    assert lean["calls"] == 5 and lean["p95_ms"] is None and report.totals(store)["p95_ms"] == 250.0
    with pytest.raises(ValueError, match="order"):
        report.calls_page(store, sort="password")
    with pytest.raises(ValueError, match="offset"):
        report.calls_page(store, offset=-5)


def test_percentiles_over_many_calls_come_from_an_even_sample(tmp_path, monkeypatch):
    import sys

    from tokentrail.sinks import query

    records = [call(i, duration_ms=float(i)) for i in range(1000)]
    url = store_with(tmp_path / "many.db", records)
    exact = report.totals(tokentrail.open_store(url))["p95_ms"]
    assert exact == pytest.approx(949.05)
    monkeypatch.setattr(query, "PERCENTILE_SAMPLE", 100)  # 1,000 calls: every 10th
    for opener in (tokentrail.open_store, report.SQLiteReader):
        store = opener(url)
        module = sys.modules[type(store).summary.__module__]
        if hasattr(module, "PERCENTILE_SAMPLE"):  # a store that imported the constant by name
            monkeypatch.setattr(module, "PERCENTILE_SAMPLE", 100)
        sampled = report.totals(store)["p95_ms"]
        assert sampled != exact  # the sample's, not every call's
        assert sampled == pytest.approx(exact, rel=0.02)


def test_check_schema_refuses_a_newer_store(mixed):
    from tokentrail.sinks.schema import SCHEMA_VERSION

    report.check_schema(report.SQLiteReader(mixed))
    with sqlite3.connect(report.store_path(mixed)) as db:
        db.execute("INSERT INTO schema_version VALUES (?, '2030-01-01')", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer tokentrail"):
        report.check_schema(report.SQLiteReader(mixed))


def test_reprice_prices_the_same_tokens_at_another_model(mixed):
    store = tokentrail.open_store(mixed)
    rates = report.price_table(["gpt-4o"])[0]
    data = report.reprice(store, "gpt-4o", by=("customer",))
    assert data["model"] == "gpt-4o" and data["provider"] == "openai"
    rows = {r["customer"]: r for r in data["rows"]}
    # acme: three calls of 100 in / 20 out (one unpriced); globex: one such call and a failed one without tokens
    assert rows["acme"]["what_if_usd"] == pytest.approx(3 * (100 * rates["input"] + 20 * rates["output"]) / 1e6)
    assert rows["globex"]["what_if_usd"] == pytest.approx((100 * rates["input"] + 20 * rates["output"]) / 1e6)
    assert rows["globex"]["cost_usd"] == pytest.approx(0.01)
    assert rows["globex"]["saving_usd"] == pytest.approx(0.01 - rows["globex"]["what_if_usd"])
    assert data["totals"]["saving_usd"] == pytest.approx(sum(r["saving_usd"] for r in data["rows"]))
    assert data["rows"][0]["saving_usd"] >= data["rows"][-1]["saving_usd"]
    with pytest.raises(ValueError, match="no price known"):
        report.reprice(store, "no-such-model-9")
    with pytest.raises(ValueError, match="break down"):
        report.reprice(store, "gpt-4o", by=("planet",))


def test_cache_savings_per_model_and_feature(tmp_path):
    records = [call(0, provider="anthropic", request_model="claude-haiku-4-5", input_tokens=1000, cache_read_tokens=800,
                    feature="chat"),
               call(1, provider="anthropic", request_model="claude-haiku-4-5", input_tokens=1000, cache_write_tokens=500,
                    feature="search"),
               call(2)]  # no cache traffic: left out
    store = tokentrail.open_store(store_with(tmp_path / "cache.db", records))
    rates = report.price_table(["claude-haiku-4-5"], provider="anthropic")[0]
    by_model = report.cache_savings(store, by=("model",))
    assert len(by_model) == 1 and by_model[0]["model"] == "claude-haiku-4-5"
    row = by_model[0]
    assert row["cache_read_tokens"] == 800 and row["cache_write_tokens"] == 500
    assert row["saved_usd"] == pytest.approx(800 * (rates["input"] - rates["cache_read"]) / 1e6)
    assert row["write_premium_usd"] == pytest.approx(500 * (rates["cache_write"] - rates["input"]) / 1e6)
    assert row["net_usd"] == pytest.approx(row["saved_usd"] - row["write_premium_usd"])
    by_feature = {r["feature"]: r for r in report.cache_savings(store, by=("feature",))}
    assert set(by_feature) == {"chat", "search"} and by_feature["chat"]["write_premium_usd"] == 0


def test_page_totals_count_the_stored_calls_not_rolled_up_days(tmp_path):
    old = [LLMCall(id=f"old{i}", started_at=NOW - timedelta(days=40), provider="openai", request_model="gpt-4o-mini",
                   input_tokens=10, output_tokens=1, cost_usd=0.001) for i in range(3)]
    url = store_with(tmp_path / "pruned.db", [*old, call(0), call(1)])
    store = tokentrail.open_store(url)
    store.prune("30d", rollup=True)
    assert report.totals(store)["calls"] == 5  # the rolled-up days still count in totals
    assert report.count_calls(store) == 2 == report.calls_page(store)["total"]  # but a page lists stored calls
    assert len(report.calls_page(store)["calls"]) == 2
