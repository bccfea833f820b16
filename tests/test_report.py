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
