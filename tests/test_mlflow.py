"""The `mlflow` sink against a real local MLflow tracking store (a file store in the test's directory, no server)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

mlflow = pytest.importorskip("mlflow")

import tokentrail  # noqa: E402
from tokentrail import context  # noqa: E402
from tokentrail.errors import ConfigError, RecordsRejected  # noqa: E402
from tokentrail.record import LLMCall  # noqa: E402
from tokentrail.sinks import mlflow as mlflow_sink  # noqa: E402
from tokentrail.sinks.mlflow import RUN_LABEL, MLflowSink  # noqa: E402

PER_CALL = ("llm.tokens.prompt", "llm.tokens.completion", "llm.tokens.total", "llm.cost.prompt", "llm.cost.completion",
            "llm.cost.total", "llm.latency")
CUMULATIVE = ("llm.tokens.cumulative.prompt", "llm.tokens.cumulative.completion", "llm.tokens.cumulative.total",
              "llm.cost.cumulative")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A file tracking store of the test's own (MLflow 3 wants an opt-in for file stores)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    previous = mlflow.get_tracking_uri()
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient(uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def call(n, run_id=None, cost=True, **fields):
    started = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n)
    values = dict(id=f"call-{n}", started_at=started, duration_ms=100.0 + n, provider="openai", request_model="gpt-4o",
                  input_tokens=100 * n, output_tokens=10 * n, metadata={RUN_LABEL: run_id} if run_id else None)
    if cost:
        values.update(input_cost_usd=0.001 * n, output_cost_usd=0.0001 * n, cost_usd=0.0011 * n)
    values.update(fields)
    return LLMCall(**values)


def test_calls_in_a_run_are_its_metrics_step_by_step(store):
    tokentrail.init(store=None, exporters=["mlflow"], instrument=False, capture_content=True)
    with tokentrail.tracking() as log, mlflow.start_run() as run:
        for n in range(1, 4):
            with tokentrail.track_llm_call("openai", "gpt-4o-mini") as span:
                span.set_tokens(input=100 * n, output=10 * n)
                span.set_content(input=f"question {n}", output=f"answer {n}")
        assert tokentrail.flush(30)
    run_id = run.info.run_id
    calls = log.calls
    assert history(store, run_id, "llm.tokens.prompt") == [(1, 100), (2, 200), (3, 300)]
    assert history(store, run_id, "llm.tokens.completion") == [(1, 10), (2, 20), (3, 30)]
    assert history(store, run_id, "llm.tokens.total") == [(1, 110), (2, 220), (3, 330)]
    assert history(store, run_id, "llm.tokens.cumulative.prompt") == [(1, 100), (2, 300), (3, 600)]
    assert history(store, run_id, "llm.tokens.cumulative.total") == [(1, 110), (2, 330), (3, 660)]
    assert [v for _, v in history(store, run_id, "llm.cost.total")] == pytest.approx([c.cost_usd for c in calls])
    assert [v for _, v in history(store, run_id, "llm.cost.prompt")] == pytest.approx([c.input_cost_usd for c in calls])
    assert [v for _, v in history(store, run_id, "llm.cost.completion")] == pytest.approx([c.output_cost_usd for c in calls])
    assert history(store, run_id, "llm.cost.cumulative")[-1][1] == pytest.approx(sum(c.cost_usd for c in calls))
    assert [v for _, v in history(store, run_id, "llm.latency")] == pytest.approx([c.duration_ms for c in calls])
    latency = sorted(store.get_metric_history(run_id, "llm.latency"), key=lambda m: m.step)
    assert [m.timestamp for m in latency] == [int(c.started_at.timestamp() * 1000 + c.duration_ms) for c in calls]
    artifacts = [f.path for f in store.list_artifacts(run_id, "tokentrail")]
    lines = sorted((json.loads(line) for path in artifacts
                    for line in open(store.download_artifacts(run_id, path), encoding="utf-8").read().splitlines()),
                   key=lambda item: item["step"])
    assert [(item["step"], item["output_text"]) for item in lines] == [(1, "answer 1"), (2, "answer 2"), (3, "answer 3")]
    assert lines[0]["id"] == calls[0].id and lines[0]["input_messages"] == [{"role": "user", "content": "question 1"}]


def test_no_content_artifact_without_capture_and_no_metrics_outside_a_run(store):
    tokentrail.init(store=None, exporters=["mlflow"], instrument=False)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:  # no run: not logged anywhere
        span.set_tokens(input=1, output=1)
    with mlflow.start_run() as run:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=5, output=5)
            span.set_content(input="secret", output="secret")
        assert tokentrail.flush(30)
    assert history(store, run.info.run_id, "llm.tokens.total") == [(1, 10)]
    assert store.list_artifacts(run.info.run_id, "tokentrail") == []
    assert len(store.search_runs([run.info.experiment_id])) == 1


def test_the_run_read_as_the_call_started_wins_even_after_the_run_ended(store):
    """What the core's reader puts in metadata: the record goes to that run whenever it arrives."""
    with mlflow.start_run() as first:
        pass
    with mlflow.start_run() as second:  # active now; the records were made in `first`
        MLflowSink().export([call(1, first.info.run_id), call(2, first.info.run_id)])
    assert history(store, first.info.run_id, "llm.tokens.prompt") == [(1, 100), (2, 200)]
    assert store.get_metric_history(second.info.run_id, "llm.tokens.prompt") == []


def test_unknown_costs_are_not_logged_as_zero(store):
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    MLflowSink().export([call(1, run_id), call(2, run_id, cost=False), call(3, run_id)])
    assert [step for step, _ in history(store, run_id, "llm.cost.total")] == [1, 3]
    assert history(store, run_id, "llm.cost.cumulative") == [(1, pytest.approx(0.0011)), (2, pytest.approx(0.0011)),
                                                             (3, pytest.approx(0.0044))]
    for key in CUMULATIVE:
        assert [step for step, _ in history(store, run_id, key)] == [1, 2, 3]


def test_a_resumed_run_continues_its_steps_and_totals(store):
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    MLflowSink().export([call(1, run_id), call(2, run_id)])
    MLflowSink().export([call(3, run_id)])  # another process, say
    assert history(store, run_id, "llm.tokens.cumulative.prompt") == [(1, 100), (2, 300), (3, 600)]
    assert [step for step, _ in history(store, run_id, "llm.tokens.prompt")] == [1, 2, 3]


def test_a_call_that_started_before_the_run_is_not_the_runs(store):
    """Without the run read as the call started, a record that arrives while a run is active is the run's
    only if the call started after the run did."""
    before = call(1, started_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    with mlflow.start_run() as run:
        during = call(2, started_at=datetime.now(timezone.utc) + timedelta(seconds=1))
        MLflowSink().export([before, during])
    assert history(store, run.info.run_id, "llm.tokens.prompt") == [(1, 200)]


def test_the_reader_names_the_run_of_the_calling_thread(store):
    sink = MLflowSink()
    assert sink.read_labels() is None
    with mlflow.start_run() as run:
        assert sink.read_labels() == {RUN_LABEL: run.info.run_id}
    assert sink.read_labels() is None


@pytest.mark.skipif(not hasattr(context, "install_readers"), reason="needs the core's context-reader hook")
def test_a_call_is_logged_to_its_run_when_it_arrives_after_the_run_ended(store):
    tokentrail.init(store=None, exporters=["mlflow"], instrument=False, flush_interval=5)
    with mlflow.start_run() as run:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=7, output=3)
    assert tokentrail.flush(30)  # the run has ended by now
    assert history(store, run.info.run_id, "llm.tokens.total") == [(1, 10)]


class FlakyClient:
    """An MlflowClient double: fails for the runs named in `failing`; records batch sizes."""

    def __init__(self, failing=()):
        self.failing, self.batches = set(failing), []

    def get_metric_history(self, run_id, key):
        return []

    def log_batch(self, run_id, metrics=()):
        if run_id in self.failing:
            raise ConnectionError("tracking server down")
        self.batches.append((run_id, len(metrics)))

    def log_text(self, run_id, text, path):
        raise OSError("artifact store down")


def test_a_run_that_fails_is_rejected_without_costing_the_others_or_advancing():
    client = FlakyClient(failing={"down"})
    sink = MLflowSink(client)
    with pytest.raises(RecordsRejected) as caught:
        sink.export([call(1, "down"), call(2, "up"), call(3, "down")])
    assert caught.value.count == 2 and isinstance(caught.value.cause, ConnectionError)
    assert [run for run, _ in client.batches] == ["up"]
    assert "down" not in sink.runs and sink.runs["up"].step == 1
    client.failing.clear()
    sink.export([call(4, "down")])
    assert sink.runs["down"].step == 1  # the failed batch did not use up steps


def test_metrics_go_in_batches_of_mlflows_limit_and_a_lost_artifact_is_counted(caplog):
    client = FlakyClient()
    sink = MLflowSink(client)
    sink.export([call(n, "r", output_text="x") for n in range(1, 201)])  # 200 calls x 11 metrics
    assert [size for _, size in client.batches] == [1000, 1000, 200]
    assert sink.failures["artifacts"] == 1
    sink.export([call(201, "r", output_text="x")])
    assert sink.failures["artifacts"] == 2
    assert len([r for r in caplog.records if "artifact" in r.getMessage()]) == 1


def test_without_mlflow_init_fails_with_the_install_command(monkeypatch):
    monkeypatch.setattr(mlflow_sink, "_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'tokentrail\[mlflow\]'"):
        tokentrail.init(store=None, exporters=["mlflow"], instrument=False)


def test_init_does_not_import_mlflow(tmp_path):
    """MLflow takes seconds to import: the sink imports it on its own thread, at the first export."""
    code = textwrap.dedent("""
        import sys, tokentrail
        tokentrail.init(store=None, exporters=["mlflow"], instrument=False)
        print("mlflow" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
