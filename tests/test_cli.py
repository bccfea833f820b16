"""The `tokentrail` command, through click's runner and as real subprocesses."""

import csv
import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import tokentrail
from tokentrail import report
from tokentrail.cli import calls_table, main, money, summary_table
from tokentrail.record import LLMCall, Outcome

BIN = [sys.executable, "-m", "tokentrail.cli"]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """One `tokentrail demo` run (a real subprocess), shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("demo")
    result = subprocess.run([*BIN, "demo"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "recorded 39 calls" in result.stdout and "support-ticket" in result.stdout
    assert "tokentrail report --store tokentrail-demo.db --by customer" in result.stdout
    return folder


@pytest.fixture(scope="module")
def demo_store(demo_folder):
    return f"sqlite:///{demo_folder / 'tokentrail-demo.db'}"


def cli(*args, **kwargs):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, **kwargs)


_spans = itertools.count(1)


def make_calls(n, start=None, **fields):
    """`n` priced calls, one millisecond apart, with ids as the pipeline makes them (the time, then a span id)."""
    start = start or datetime.now(timezone.utc) - timedelta(minutes=5)
    out = []
    for i in range(n):
        moment = start + timedelta(milliseconds=i)
        values = dict(provider="openai", request_model="gpt-4o-mini", input_tokens=10, output_tokens=2,
                      cost_usd=0.0000042, duration_ms=120.0, customer_id="acme", user_id="u1")
        values.update(fields)
        out.append(LLMCall(id=f"{int(moment.timestamp() * 1000):012x}{next(_spans):016x}", started_at=moment, **values))
    return out


def write_store(path, records):
    store = tokentrail.open_store(f"sqlite:///{path}")
    store.export(records)
    store.close()
    return path


def one_line_error(result, code):
    """Exit `code`, no traceback, and one line that says what went wrong (after click's usage lines for code 2)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len([line for line in lines if line.lower().startswith("error")]) == 1, result.output
    assert len(lines) <= (3 if code == 2 else 1), result.output


# -- the demo -------------------------------------------------------------------------------------


def test_demo_records_a_realistic_mix(demo_store, demo_folder):
    store = tokentrail.open_store(demo_store)
    calls = store.calls(limit=None)
    assert {c.provider for c in calls} == {"openai", "anthropic", "mistral_ai"}
    assert {c.customer_id for c in calls} == {"acme", "globex", "initech"}
    assert {c.feature for c in calls} >= {"search", "chat", "support"}
    assert any(c.stream and c.ttft_ms for c in calls) and any(c.tool_call_count for c in calls)
    assert sorted(c.error_category for c in calls if c.error_category) == ["rate_limit", "server", "server"]
    assert store.outcomes(limit=None) and store.tool_calls(limit=None)
    assert all(c.cost_usd is not None for c in calls)


def test_demo_keeps_out_of_the_real_store_and_marks_its_calls(demo_store, demo_folder):
    assert not (demo_folder / "tokentrail.db").exists()  # the configured (default) store was not touched
    store = tokentrail.open_store(demo_store)
    assert all("demo" in (c.tags or []) for c in store.calls(limit=None))
    assert all("demo" in (o.tags or []) for o in store.outcomes(limit=None))


def test_demo_store_is_recreated_but_a_foreign_one_is_left_alone(tmp_path):
    from tokentrail import demo

    url = f"sqlite:///{tmp_path / 'tokentrail-demo.db'}"
    write_store(tmp_path / "tokentrail-demo.db", make_calls(3, tags=["demo"]))
    demo.reset(url)
    assert not (tmp_path / "tokentrail-demo.db").exists()
    write_store(tmp_path / "tokentrail-demo.db", make_calls(2, tags=["demo"]) + make_calls(1, request_model="real"))
    with pytest.raises(tokentrail.StoreError, match="not from the demo"):
        demo.reset(url)
    assert len(tokentrail.open_store(url).calls()) == 3


# -- report ----------------------------------------------------------------------------------------


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


def test_report_where_applies_to_outcomes(tmp_path):
    """Outcomes are filtered like the calls, and a run's cost counts only the matching calls."""
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    records = []
    for customer, run, cost in (("acme", "run-a", 0.02), ("globex", "run-g", 0.5)):
        records += make_calls(1, start=now, customer_id=customer, workflow="ticket", workflow_run_id=run, cost_usd=cost)
        records.append(Outcome(id=f"o-{run}", recorded_at=now, name="resolved", workflow="ticket",
                               workflow_run_id=run, customer_id=customer))
    records += make_calls(1, start=now + timedelta(seconds=1), customer_id="acme", workflow="ticket",
                          workflow_run_id="run-a", request_model="claude-haiku-4-5", provider="anthropic", cost_usd=0.01)
    url = f"sqlite:///{write_store(tmp_path / 'o.db', records)}"
    everything = json.loads(cli("report", "--store", url, "--json").output)["outcomes"]
    assert everything[0]["count"] == 2 and everything[0]["cost_usd"] == pytest.approx(0.53)
    acme = json.loads(cli("report", "--store", url, "--where", "customer=acme", "--json").output)["outcomes"]
    assert [(o["count"], o["runs"]) for o in acme] == [(1, 1)]
    assert acme[0]["cost_usd"] == pytest.approx(0.03) and acme[0]["cost_per_outcome_usd"] == pytest.approx(0.03)
    # a field outcomes do not have: the cost of the matching calls, the outcomes of runs that made one
    haiku = json.loads(cli("report", "--store", url, "--where", "model=claude-haiku-4-5", "--json").output)["outcomes"]
    assert [(o["count"], round(o["cost_usd"], 6)) for o in haiku] == [(1, 0.01)]
    table = cli("report", "--store", url, "--where", "customer=globex").output
    assert "$0.5000" in table and "$0.53" not in table


@pytest.mark.parametrize("args, message", [
    (["report", "--since", "yesterdayish"], "not a time"),
    (["report", "--since", "10000000d"], "out of range"),
    (["calls", "--until", "99999999999w"], "out of range"),
    (["report", "--since", "1h", "--until", "2d"], "must be before"),
    (["report", "--where", "colour=red"], "unknown field"),
    (["report", "--where", "nonsense"], "field=value"),
    (["report", "--by", "planet"], "planet"),
    (["export", "--out", "calls.txt"], "--format"),
])
def test_bad_arguments_exit_2_with_one_line(demo_store, args, message):
    result = CliRunner().invoke(main, [*args, "--store", demo_store])
    one_line_error(result, 2)
    assert message in result.output


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


def test_store_may_be_an_absolute_or_relative_path_or_url(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    write_store(folder / "calls.db", make_calls(2))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # an absolute path must not be read relative to the working directory
    for store in (str(folder / "calls.db"), f"sqlite:///{folder / 'calls.db'}"):  # /abs/calls.db, sqlite:////abs/calls.db
        for command in (["report", "--json"], ["calls", "--json"], ["prices", "--unpriced"], ["export", "--out", "-", "--format", "jsonl"]):
            result = cli(*command, "--store", store)
            assert result.exit_code == 0, (store, command, result.output)
        assert json.loads(cli("report", "--json", "--store", store).output)["totals"]["calls"] == 2
    monkeypatch.chdir(tmp_path)
    for store in ("data/calls.db", "sqlite:///data/calls.db"):
        assert json.loads(cli("report", "--json", "--store", store).output)["totals"]["calls"] == 2, store
    assert "reachable" in cli("doctor", "--store", str(folder / "calls.db")).output


# -- reading a store this user may not write -------------------------------------------------------------


def _without_root_override():
    """In the child, before exec: drop root's right to ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def read_only_store(tmp_path):
    """A store in a folder, neither of which may be written; and how to run the command on it.

    Root may write anything, so as root the command runs without the capabilities that let it.
    """
    folder = tmp_path / "ro"
    folder.mkdir()
    db = write_store(folder / "ro.db", make_calls(3) + make_calls(1, request_model="claude-haiku-4-5", provider="anthropic"))
    (folder / "old.csv").write_text("precious\n")
    for file in (db, folder / "old.csv"):
        file.chmod(0o444)
    folder.chmod(0o555)
    preexec = _without_root_override if os.geteuid() == 0 else None
    if preexec is not None:
        probe = subprocess.run([sys.executable, "-c", f"import os; print(os.access({str(db)!r}, os.W_OK))"],
                               preexec_fn=preexec, capture_output=True, text=True)
        if probe.stdout.strip() != "False":
            folder.chmod(0o755)
            pytest.skip(f"cannot take away root's write access here: {probe.stderr.strip()[-200:]}")

    def run(*args):
        return subprocess.run([*BIN, *args], cwd=folder, capture_output=True, text=True, timeout=60, preexec_fn=preexec)

    yield db, run
    folder.chmod(0o755)


def test_a_read_only_store_can_be_read(read_only_store):
    db, run = read_only_store
    before = db.read_bytes()
    result = run("report", "--store", str(db), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["calls"] == 4
    calls = run("calls", "--store", f"sqlite:///{db}", "--json")
    assert calls.returncode == 0, calls.stderr
    ids = [c["id"] for c in json.loads(calls.stdout)]
    assert len(ids) == 4
    shown = run("show", ids[0], "--store", str(db), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == ids[0]
    exported = run("export", "--store", str(db), "--format", "csv", "--out", "-")
    assert exported.returncode == 0, exported.stderr
    assert len(list(csv.DictReader(exported.stdout.splitlines()))) == 4
    doctor = run("doctor", "--store", str(db))
    assert doctor.returncode == 0 and "read-only" in doctor.stdout and "4 calls" in doctor.stdout
    tail = run("tail", "--store", str(db), "--timeout", "0")
    assert tail.returncode == 0, tail.stderr
    assert db.read_bytes() == before


def test_export_to_a_read_only_target_is_one_line(read_only_store):
    db, run = read_only_store
    result = run("export", "--store", str(db), "--format", "csv", "--out", str(db.parent / "new.csv"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run("export", "--store", str(db), "--out", str(db.parent / "old.csv"), "--force")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "cannot write" in result.stderr
    assert (db.parent / "old.csv").read_text() == "precious\n"


# -- calls and show -------------------------------------------------------------------------------------


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


def test_show_takes_a_unique_prefix(tmp_path):
    calls = make_calls(12)
    for k, call in enumerate(calls, 1):  # twelve calls in one millisecond: the ids differ from the 13th digit on
        call.id = "019a4c2e81f3" + f"{k:x}" + "0" * 15
    url = f"sqlite:///{write_store(tmp_path / 's.db', calls)}"
    target = calls[4].id
    shown = cli("show", target[:13], "--store", url, "--json")
    assert shown.exit_code == 0 and json.loads(shown.output)["id"] == target
    ambiguous = CliRunner().invoke(main, ["show", target[:12], "--store", url])
    one_line_error(ambiguous, 1)
    assert "12 calls have an id starting with" in ambiguous.output
    none = CliRunner().invoke(main, ["show", "ffff", "--store", url])
    one_line_error(none, 1)
    assert "no call with id 'ffff'" in none.output


# -- tables that fit 80 columns, costs that say something ----------------------------------------------------


def rendered(table, width=80):
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


LONG = {"model": "text-embedding-3-small", "other": "claude-sonnet-4-5-20250929"}


def test_calls_table_at_80_columns_keeps_ids_models_and_costs_whole(tmp_path):
    write_store(tmp_path / "w.db", make_calls(2, request_model=LONG["model"], cost_usd=0.0000005) +
                make_calls(1, request_model=LONG["other"], cost_usd=12.5, error_category="rate_limit"))
    rows = report.calls(report.open_existing(str(tmp_path / "w.db")), limit=None)
    text = rendered(calls_table(rows, 80))
    assert max(len(line) for line in text.splitlines()) <= 80
    for row in rows:
        assert row["id"] in text and row["model"] in text
    assert "$0.00000050" in text and "$12.50" in text
    assert " err " in text and " ! " in text  # a failure still shows; the provider, tokens and latency made room
    narrow = rendered(calls_table(rows, 40), 40)  # not even the key columns fit: folded onto more lines, never cut
    assert max(len(line) for line in narrow.splitlines()) <= 40 and "…" not in narrow
    assert all(row["id"][:12] in narrow for row in rows)
    wide = rendered(calls_table(rows, 200), 200)
    assert "provider" in wide and "customer/user" in wide  # nothing is dropped when there is room


def test_report_table_at_80_columns_keeps_keys_and_costs_whole():
    rows = [{"model": LONG["other"], "customer": "a-very-long-customer-name", "calls": 1200, "input_tokens": 123456789,
             "output_tokens": 98765432, "cache_read_tokens": 1234567, "cost_usd": 1234.5678, "unpriced_calls": 0,
             "errors": 12, "error_rate": 0.01, "p50_ms": 1234.0, "p95_ms": 5678.0, "ttft_p50_ms": 321.0},
            {"model": LONG["model"], "customer": "acme", "calls": 3, "input_tokens": 30, "output_tokens": None,
             "cache_read_tokens": None, "cost_usd": 0.0000006, "unpriced_calls": 0, "errors": 0, "error_rate": 0.0,
             "p50_ms": 50.0, "p95_ms": 60.0, "ttft_p50_ms": None}]
    text = rendered(summary_table("by model, customer", ["model", "customer"], rows, 80))
    assert max(len(line) for line in text.splitlines()) <= 80
    for value in (LONG["other"], LONG["model"], "a-very-long-customer-name", "$1,234.57", "$0.00000060", "1,200"):
        assert value in text


def test_commands_fit_an_80_column_terminal(demo_store):
    result = cli("calls", "--store", demo_store, "--limit", "39", env={"COLUMNS": "80"})
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for call in json.loads(cli("calls", "--store", demo_store, "--limit", "39", "--json").output):
        assert call["id"] in result.output and (call["request_model"] or call["response_model"]) in result.output
    assert len([line for line in result.output.splitlines() if " ! " in line]) == 3  # the three failed calls
    report_text = cli("report", "--store", demo_store, "--by", "model", env={"COLUMNS": "80"}).output
    assert max(len(line) for line in report_text.splitlines()) <= 80
    assert "text-embedding-3-small" in report_text and "mistral-small-latest" in report_text


@pytest.mark.parametrize("value, text", [
    (None, "?"), (0, "$0.00"), (0.000042, "$0.000042"), (0.0000421, "$0.000042"), (0.0042, "$0.0042"),
    (0.00999, "$0.0100"), (0.0123, "$0.0123"), (0.5, "$0.5000"), (1.5, "$1.50"), (1234.567, "$1,234.57"),
    (0.0000000004, "$0.00000000040"), (1e-12, "<$0.0000000001"),
])
def test_small_costs_keep_two_significant_digits(value, text):
    assert money(value) == text


# -- export ---------------------------------------------------------------------------------------------------


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


def test_export_never_overwrites_without_force_and_dash_is_stdout(demo_store, tmp_path):
    target = tmp_path / "calls.csv"
    target.write_text("precious\n")
    refused = CliRunner().invoke(main, ["export", "--store", demo_store, "--out", str(target)])
    one_line_error(refused, 2)
    assert "--force" in refused.output and target.read_text() == "precious\n"
    assert cli("export", "--store", demo_store, "--out", str(target), "--force").exit_code == 0
    assert len(list(csv.DictReader(target.open()))) == 39  # the format came from the extension
    out = CliRunner().invoke(main, ["export", "--store", demo_store, "--format", "jsonl", "--out", "-", "--where", "customer=acme"])
    assert out.exit_code == 0
    assert [json.loads(line)["customer_id"] for line in out.stdout.splitlines()] == ["acme"] * 14
    assert not Path("-").exists()


def test_export_to_a_missing_folder_or_a_folder_is_one_line(demo_store, tmp_path):
    missing = CliRunner().invoke(main, ["export", "--store", demo_store, "--format", "csv", "--out", str(tmp_path / "no" / "x.csv")])
    one_line_error(missing, 1)
    assert "cannot write" in missing.output and not (tmp_path / "no").exists()
    folder = CliRunner().invoke(main, ["export", "--store", demo_store, "--format", "csv", "--out", str(tmp_path)])
    one_line_error(folder, 1)


def test_export_never_writes_over_its_own_store(tmp_path):
    store = write_store(tmp_path / "calls.csv", make_calls(2))  # a store with an unlucky name
    result = CliRunner().invoke(main, ["export", "--store", str(store), "--out", str(store), "--force"])
    one_line_error(result, 2)
    assert "is the store" in result.output
    assert len(tokentrail.open_store(f"sqlite:///{store}").calls()) == 2


# -- prices ---------------------------------------------------------------------------------------------------


def test_prices(demo_store, tmp_path):
    result = cli("prices", "gpt-4o", "claude-sonnet-4-6", "no-such-model", "--json")
    rows = {r["model"]: r for r in json.loads(result.output)}
    assert rows["gpt-4o"]["input"] == pytest.approx(2.5) and rows["gpt-4o"]["source"].startswith("genai-prices")
    assert rows["no-such-model"]["price"] is None
    table = cli("prices", "gpt-4o", "no-such-model").output
    assert "$2.5" in table and "no known price" in table
    assert "Every model in the store has a price" in cli("prices", "--unpriced", "--store", demo_store).output
    url = f"sqlite:///{tmp_path / 'u.db'}"
    tokentrail.init(url, instrument=False)
    tokentrail.log_llm_call(provider="in-house", model="secret-7b", usage={"input_tokens": 5, "output_tokens": 5})
    tokentrail.flush(10)
    assert "in_house secret-7b: 1 calls without a price" in cli("prices", "--unpriced", "--store", url).output


# -- tail -------------------------------------------------------------------------------------------------------


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


def test_tail_stops_on_ctrl_c_with_exit_0(tmp_path):
    import signal

    url = f"sqlite:///{write_store(tmp_path / 'c.db', make_calls(1))}"
    tail = subprocess.Popen([*BIN, "tail", "--store", url, "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert "following new calls" in tail.stderr.readline()
    tail.send_signal(signal.SIGINT)
    _, err = tail.communicate(timeout=30)
    assert tail.returncode == 0 and "Traceback" not in err


def test_tail_waits_for_the_store_then_reads_every_page(tmp_path):
    """Started before the store exists, tail says it waits; when 2,500 calls arrive at once it shows them all in one look."""
    target = tmp_path / "later.db"
    (tmp_path / "build").mkdir()
    built = write_store(tmp_path / "build" / "later.db", make_calls(2500))
    tail = subprocess.Popen([*BIN, "tail", "--store", str(target), "--count", "2500", "--interval", "600", "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "waiting for the store" in tail.stderr.readline()
    os.replace(built, target)
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2500 and "$0.0000042" in lines[0]


# -- run, doctor, help ---------------------------------------------------------------------------------------


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
    data = json.loads(cli("doctor", "--store", demo_store, "--json").output)
    assert {r["sdk"] for r in data["sdks"]} >= {"openai", "anthropic"} and data["store"]["calls"] == 39
    assert {"option": "capture_content", "value": True, "source": "environment variable TOKENTRAIL_CAPTURE_CONTENT"} in data["configuration"]
    assert CliRunner().invoke(main, ["doctor", "--store", f"sqlite:///{tmp_path / 'none.db'}"]).exit_code == 1


def test_help_has_examples():
    for command in ("report", "calls", "tail", "export", "prices", "run", "demo", "doctor", "show"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "--store" in result.output
    assert "tokentrail report --by customer" in cli("report", "--help").output
    assert "tokentrail-demo.db" in cli("demo", "--help").output
    assert "--force" in cli("export", "--help").output


def test_report_and_prices_say_why_a_call_has_no_cost(tmp_path):
    """A stream without usage is not 'without a known price': every view tells the two apart."""
    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    now = datetime.now(timezone.utc)
    tokentrail.open_store(url).export([
        LLMCall(id="a", started_at=now, provider="openai", request_model="gpt-4o", input_tokens=10, output_tokens=2, cost_usd=0.01),
        LLMCall(id="b", started_at=now, provider="openai", request_model="gpt-4o", stream=True),
    ])
    out = CliRunner().invoke(main, ["report", "--store", url]).output
    assert "1 calls without token usage" in out and "known price" not in out
    out = CliRunner().invoke(main, ["prices", "--unpriced", "--store", url]).output
    assert "Every model in the store has a price." in out and "1 calls reported no token usage" in out


# -- trace ----------------------------------------------------------------------------------------------------


def agent_run(tmp_path):
    """A workflow run > agent > tool > call, a second call that failed, an outcome."""
    from tokentrail.record import Span, ToolCall

    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    trace, run = "ab" * 16, dict(workflow="support", workflow_run_id="run-7", trace_id="ab" * 16)
    records = [
        Span(id="s1", span_id="01", name="support", started_at=now, duration_ms=2000.0, **run),
        Span(id="s2", span_id="02", parent_span_id="01", name="researcher", operation="invoke_agent", source="langchain",
             metadata={"kind": "agent"}, started_at=now + timedelta(milliseconds=5), duration_ms=1900.0, **run),
        ToolCall(id="t1", span_id="03", parent_span_id="02", name="web_search", started_at=now + timedelta(milliseconds=10),
                 duration_ms=700.0, **run),
        *make_calls(1, start=now + timedelta(milliseconds=20), span_id="04", parent_span_id="03", request_model="gpt-4o",
                    input_tokens=1200, output_tokens=300, cost_usd=0.006, ttft_ms=150.0, **run),
        *make_calls(1, start=now + timedelta(milliseconds=900), span_id="05", parent_span_id="02", input_tokens=None,
                    output_tokens=None, cost_usd=None, error_type="RateLimitError", error_category="rate_limit", **run),
        Outcome(id="o1", recorded_at=now + timedelta(milliseconds=1990), name="resolved", value=1, parent_span_id="01", **run),
    ]
    return f"sqlite:///{write_store(tmp_path / 'run.db', records)}", trace


def test_trace_shows_where_an_agent_spent_its_money(tmp_path):
    url, trace = agent_run(tmp_path)
    out = cli("trace", "run-7", "--store", url).output
    assert f"trace {trace}" in out and "workflow support run run-7" in out
    assert "2 LLM calls · 1 tool call · 1,500 tokens" in out and "1 errors" in out
    lines = out.splitlines()
    agent = next(line for line in lines if "researcher" in line)
    assert "agent" in agent and "1,900 ms" in agent and "Σ $0.0060 · 2 calls · 1,500 tok (+1 unpriced)" in agent
    tool = next(line for line in lines if "web_search" in line)
    assert "tool" in tool and "Σ $0.0060 · 1 call" in tool
    llm = next(line for line in lines if "gpt-4o " in line or line.rstrip().endswith("gpt-4o"))
    assert "1,200→300 tok" in llm and "$0.0060" in llm and "(ttft 150 ms)" in llm
    assert any("ERROR rate_limit" in line for line in lines)
    assert any("outcome resolved = 1" in line for line in lines)
    # the tree's shape: the call is drawn under the tool, which is under the agent
    assert lines.index(agent) < lines.index(tool) < lines.index(llm)
    assert llm.index("llm") > tool.index("tool") > agent.index("researcher")


def test_trace_json_show_fallback_and_errors(tmp_path):
    url, trace = agent_run(tmp_path)
    data = json.loads(cli("trace", trace, "--store", url, "--json").output)
    assert data["roots"][0]["name"] == "support" and data["totals"]["llm_calls"] == 2
    shown = cli("show", "run-7", "--store", url)  # show on a workflow run or trace id: the tree
    assert shown.exit_code == 0 and "researcher" in shown.output and "Σ" in shown.output
    unknown = CliRunner().invoke(main, ["trace", "nope", "--store", url])
    one_line_error(unknown, 1)
    assert "no trace, workflow run or call with id 'nope'" in unknown.output
    assert "tokentrail trace" in cli("trace", "--help").output and "tokentrail trace RUN_ID" in cli("--help").output


def test_trace_of_a_recorded_demo_run(demo_store):
    run_id = next(c.workflow_run_id for c in tokentrail.open_store(demo_store).calls(limit=None) if c.workflow_run_id)
    result = cli("trace", run_id, "--store", demo_store)
    assert result.exit_code == 0 and f"run {run_id}" in result.output and "llm" in result.output


# -- ui ---------------------------------------------------------------------------------------------------


def test_ui_serves_the_demo_store(demo_folder):
    """`tokentrail demo && tokentrail ui --store tokentrail-demo.db`, the README's way to see the dashboard."""
    pytest.importorskip("uvicorn", reason="the dashboard needs the ui extra")
    import socket
    import time
    import urllib.request

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([*BIN, "ui", "--store", "tokentrail-demo.db", "--port", str(port), "--no-browser"],
                            cwd=demo_folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=2) as answer:
                    body = json.loads(answer.read())
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "tokentrail ui did not answer"
                time.sleep(0.1)
        assert body["totals"]["calls"] == 39
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            assert "<title>tokentrail</title>" in answer.read().decode()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/\n" in out and "?token=" not in out  # loopback: no token needed


def test_ui_options_and_help(monkeypatch, demo_store):
    from tokentrail.web import server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda store, **kw: seen.update(store=store, **kw))
    result = CliRunner().invoke(main, ["ui", "--store", demo_store, "--host", "0.0.0.0", "--port", "9000", "--token", "t0k",
                                       "--no-browser"])
    assert result.exit_code == 0, result.output
    assert seen["store"] == demo_store and seen["host"] == "0.0.0.0" and seen["port"] == 9000
    assert seen["token"] == "t0k" and seen["open_browser"] is False
    result = CliRunner().invoke(main, ["ui", "--store", demo_store])
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8437 and seen["token"] is None and seen["open_browser"] is True
    help_text = CliRunner().invoke(main, ["ui", "--help"]).output
    for option in ("--host", "--port", "--store", "--no-browser", "--token"):
        assert option in help_text
    assert CliRunner().invoke(main, ["ui", "--port", "99999"]).exit_code == 2


def test_ui_says_what_to_install_without_the_ui_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("starlette", "uvicorn") else real(name, *a))
    result = CliRunner().invoke(main, ["ui"])
    assert result.exit_code == 1
    assert "pip install 'tokentrail[ui]'" in result.output


def test_ui_refuses_a_missing_store_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["ui", "--store", str(tmp_path / "none.db"), "--no-browser"])
    assert result.exit_code == 1 and "no store at" in result.output and "Traceback" not in result.output


def test_report_reprice_and_cache(demo_store):
    result = CliRunner().invoke(main, ["report", "--store", demo_store, "--by", "feature", "--reprice", "gpt-4o-mini", "--cache"])
    assert result.exit_code == 0, result.output
    assert "what if every call had gone to gpt-4o-mini" in " ".join(result.output.split())
    assert "prompt caching" in result.output
    data = json.loads(CliRunner().invoke(main, ["report", "--store", demo_store, "--by", "model", "--reprice", "gpt-4o",
                                                "--cache", "--json"]).output)
    assert data["reprice"]["totals"]["calls"] == 39 and data["reprice"]["model"] == "gpt-4o"
    assert [r["model"] for r in data["cache"]] == ["claude-haiku-4-5"] and data["cache"][0]["saved_usd"] > 0
    bad = CliRunner().invoke(main, ["report", "--store", demo_store, "--reprice", "no-such-model-9"])
    assert bad.exit_code == 2 and "no price known" in bad.output
