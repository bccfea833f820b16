"""The `tokentrail` command, through click's runner and as real subprocesses."""

import csv
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from click.testing import CliRunner

import tokentrail
from tokentrail.cli import main

BIN = [sys.executable, "-m", "tokentrail.cli"]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """One `tokentrail demo` run (a real subprocess), shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("demo")
    result = subprocess.run([*BIN, "demo"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "recorded 39 calls" in result.stdout and "support-ticket" in result.stdout
    return f"sqlite:///{folder / 'tokentrail.db'}"


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_demo_records_a_realistic_mix(demo_store):
    store = tokentrail.open_store(demo_store)
    calls = store.calls(limit=None)
    assert {c.provider for c in calls} == {"openai", "anthropic", "mistral_ai"}
    assert {c.customer_id for c in calls} == {"acme", "globex", "initech"}
    assert {c.feature for c in calls} >= {"search", "chat", "support"}
    assert any(c.stream and c.ttft_ms for c in calls) and any(c.tool_call_count for c in calls)
    assert sorted(c.error_category for c in calls if c.error_category) == ["rate_limit", "server", "server"]
    assert store.outcomes(limit=None) and store.tool_calls(limit=None)
    assert all(c.cost_usd is not None for c in calls)


def test_report_table_and_several_breakdowns(demo_store):
    result = cli("report", "--store", demo_store, "--by", "customer", "--by", "feature", "--since", "1d")
    assert result.exit_code == 0
    assert "39 calls" in result.output and "by customer, feature" in result.output and "acme" in result.output
    assert "cost per successful outcome" in result.output


def test_report_json_and_csv(demo_store):
    data = json.loads(cli("report", "--store", demo_store, "--by", "provider", "--json").output)
    assert data["totals"]["calls"] == 39 and data["totals"]["errors"] == 3
    by = {row["provider"]: row for row in data["breakdown"]}
    assert set(by) == {"openai", "anthropic", "mistral_ai"} and sum(r["calls"] for r in by.values()) == 39
    assert sum(r["cost_usd"] for r in by.values()) == pytest.approx(data["totals"]["cost_usd"])
    outcome = data["outcomes"][0]
    assert outcome["workflow"] == "support-ticket" and outcome["cost_per_outcome_usd"] > 0
    rows = list(csv.DictReader(cli("report", "--store", demo_store, "--by", "day", "--csv").output.splitlines()))
    assert len(rows) == 1 and int(rows[0]["calls"]) == 39


def test_report_filters(demo_store):
    data = json.loads(cli("report", "--store", demo_store, "--where", "customer=acme", "--where", "feature=search,chat", "--json").output)
    assert data["totals"]["calls"] == 10


@pytest.mark.parametrize("args, message", [
    (["report", "--since", "yesterdayish"], "not a time"),
    (["report", "--where", "colour=red"], "unknown field"),
    (["report", "--where", "nonsense"], "field=value"),
    (["report", "--by", "planet"], "planet"),
])
def test_bad_arguments_exit_2_with_one_line(demo_store, args, message):
    result = CliRunner().invoke(main, [*args, "--store", demo_store])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_missing_wrong_and_empty_stores(tmp_path):
    missing = CliRunner().invoke(main, ["report", "--store", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1 and "no store at" in missing.output
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 50)
    wrong = CliRunner().invoke(main, ["calls", "--store", f"sqlite:///{junk}"])
    assert wrong.exit_code == 1 and "not a usable SQLite database" in wrong.output
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE llm_calls (x)").connection.commit()
    assert CliRunner().invoke(main, ["calls", "--store", f"sqlite:///{other}"]).exit_code == 1
    tokentrail.open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    empty = cli("report", "--store", f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.exit_code == 0 and "No calls recorded" in empty.output


def test_calls_and_show(demo_store):
    latest = json.loads(cli("calls", "--store", demo_store, "--limit", "5", "--json").output)
    assert len(latest) == 5
    table = cli("calls", "--store", demo_store, "--where", "error_category=rate_limit").output
    assert "rate_limit" in table and "globex/u-cho" in table
    shown = cli("show", latest[0]["id"], "--store", demo_store)
    assert shown.exit_code == 0 and latest[0]["id"] in shown.output and "started_at" in shown.output
    assert json.loads(cli("show", latest[0]["id"], "--store", demo_store, "--json").output)["id"] == latest[0]["id"]
    unknown = CliRunner().invoke(main, ["show", "nope", "--store", demo_store])
    assert unknown.exit_code == 1 and "no call with id" in unknown.output


def test_export_csv_and_jsonl_and_parquet_message(demo_store, tmp_path):
    assert cli("export", "--store", demo_store, "--format", "csv", "--out", str(tmp_path / "c.csv")).exit_code == 0
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert len(rows) == 39 and "cost_usd" in rows[0]
    cli("export", "--store", demo_store, "--format", "jsonl", "--out", str(tmp_path / "c.jsonl"), "--where", "provider=anthropic")
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert lines and all(r["provider"] == "anthropic" for r in lines)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        result = CliRunner().invoke(main, ["export", "--store", demo_store, "--format", "parquet", "--out", str(tmp_path / "c.parquet")])
        assert result.exit_code == 2 and "pip install 'tokentrail[parquet]'" in result.output


def test_prices(demo_store, tmp_path):
    result = cli("prices", "gpt-4o", "claude-sonnet-4-6", "no-such-model", "--json")
    rows = {r["model"]: r for r in json.loads(result.output)}
    assert rows["gpt-4o"]["input"] == pytest.approx(2.5) and rows["gpt-4o"]["source"].startswith("genai-prices")
    assert rows["no-such-model"]["price"] is None
    assert "Every model in the store has a price" in cli("prices", "--unpriced", "--store", demo_store).output
    url = f"sqlite:///{tmp_path / 'u.db'}"
    tokentrail.init(url, instrument=False)
    tokentrail.log_llm_call(provider="in-house", model="secret-7b", usage={"input_tokens": 5, "output_tokens": 5})
    tokentrail.flush(10)
    assert "in_house secret-7b: 1 calls without a price" in cli("prices", "--unpriced", "--store", url).output


def test_tail_follows_new_calls(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    tokentrail.init(url, instrument=False, flush_interval=0.05)
    tokentrail.log_llm_call(provider="openai", model="before", usage={"prompt_tokens": 1})
    tokentrail.flush(10)
    tail = subprocess.Popen([*BIN, "tail", "--store", url, "--count", "2", "--interval", "0.1", "--timeout", "30",
                             "--where", "provider=openai"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "following new calls" in tail.stderr.readline()  # ready: calls from now on are shown
    for model in ("first", "second"):
        tokentrail.log_llm_call(provider="anthropic", model="ignored", usage={"input_tokens": 1})
        tokentrail.log_llm_call(provider="openai", model=model, usage={"prompt_tokens": 1})
        tokentrail.flush(10)
    out, _ = tail.communicate(timeout=30)
    assert tail.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 2 and "first" in lines[0] and "second" in lines[1] and "before" not in out


def test_run_zero_code_passes_arguments_and_exit_code(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(
        """
        import sys
        import openai
        fake_url = sys.argv[1]
        client = openai.OpenAI(base_url=fake_url + "/v1", api_key="sk-x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        print("args", sys.argv[2:])
        sys.exit(3)
        """
    ))
    from tokentrail.testing import FakeProvider

    with FakeProvider().serve() as url:
        result = subprocess.run([*BIN, "run", "--store", f"sqlite:///{tmp_path / 'run.db'}", "--", sys.executable, str(app),
                                 url, "--flag", "x"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "args ['--flag', 'x']" in result.stdout
    calls = tokentrail.open_store(f"sqlite:///{tmp_path / 'run.db'}").calls()
    assert [(c.source, c.request_model, c.output_tokens) for c in calls] == [("openai", "gpt-4o-mini", 5)]


def test_run_passes_signals(tmp_path):
    app = tmp_path / "sleepy.py"
    app.write_text("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\nprint('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([*BIN, "run", "--store", "none", "--", sys.executable, str(app)], cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.terminate()
    assert proc.wait(20) == 42


def test_run_unknown_program():
    result = CliRunner().invoke(main, ["run", "--", "definitely-not-a-program-xyz"])
    assert result.exit_code == 2 and "no such program" in result.output


def test_doctor(demo_store, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_CAPTURE_CONTENT", "true")
    result = cli("doctor", "--store", demo_store)
    assert result.exit_code == 0
    assert "openai" in result.output and "anthropic" in result.output
    assert "environment variable TOKENTRAIL_CAPTURE_CONTENT" in result.output
    assert "reachable" in result.output and "39 calls" in result.output
    assert CliRunner().invoke(main, ["doctor", "--store", f"sqlite:///{tmp_path / 'none.db'}"]).exit_code == 1


def test_help_has_examples():
    for command in ("report", "calls", "tail", "export", "prices", "run", "demo", "doctor"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "--store" in result.output
    assert "tokentrail report --by customer" in cli("report", "--help").output
