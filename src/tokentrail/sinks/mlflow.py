"""`mlflow`: each LLM call's tokens, cost and latency as metrics of the MLflow run it was made in.

    tokentrail.init(exporters=["mlflow"])           # pip install 'tokentrail[mlflow]'
    with mlflow.start_run():
        ...                                           # every LLM call here is logged to this run

Which run. The run active (`mlflow.active_run()`, which is per thread) on the
thread that made the call, as the call started: the core reads it there
(`read_labels`, installed by `init()`) into `metadata["mlflow_run_id"]`, so a
call is logged to its run even when the record reaches this sink after the run
ended. A record without that label goes to the run active in this process now,
if exactly one thread has one and the call started after the run did; otherwise
it is not logged. Calls made outside any run are not logged.

What. Per call, at step = the call's number in the run (1, 2, …) and the time
the call ended: `llm.tokens.prompt`, `llm.tokens.completion`, `llm.tokens.total`,
`llm.cost.prompt`, `llm.cost.completion`, `llm.cost.total` (US dollars; only
what is known: a call with no known price logs no cost, never a 0) and
`llm.latency` (milliseconds, like every tokentrail duration); and the running
totals of the run at every step: `llm.tokens.cumulative.prompt`,
`llm.tokens.cumulative.completion`, `llm.tokens.cumulative.total`,
`llm.cost.cumulative` (the known costs). A run that already holds these
metrics (resumed in another process) continues its step count and totals.
With `capture_content=True` the prompts and outputs of a batch are one JSON-lines
artifact of the run: `tokentrail/calls-<first record id>.jsonl`.

Never slower than the application: MLflow (seconds to import) is imported and
its client made on the sink's thread at the first export; each batch is one
`log_batch` per run (in chunks of MLflow's limit of 1000 metrics). A batch that
fails for a run is counted as rejected (the pipeline logs it once) and not
retried: the MLflow client already retries each request, bounded by
`MLFLOW_HTTP_REQUEST_MAX_RETRIES` and `MLFLOW_HTTP_REQUEST_TIMEOUT`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from typing import Any, Sequence

from .. import log
from ..errors import ConfigError, RecordsRejected
from ..record import LLMCall

__all__ = ["MLflowSink", "RUN_LABEL", "INSTALL", "METRICS"]

INSTALL = "pip install 'tokentrail[mlflow]'"
RUN_LABEL = "mlflow_run_id"  # the metadata key the run id is read into
BATCH_LIMIT = 1000  # metrics per log_batch (MLflow's limit)

# metric -> what it holds
METRICS = {
    "llm.tokens.prompt": "input tokens of the call",
    "llm.tokens.completion": "output tokens of the call",
    "llm.tokens.total": "input + output tokens of the call",
    "llm.cost.prompt": "cost of the input, USD",
    "llm.cost.completion": "cost of the output, USD",
    "llm.cost.total": "cost of the call, USD",
    "llm.latency": "duration of the call, ms",
    "llm.tokens.cumulative.prompt": "input tokens of the run so far",
    "llm.tokens.cumulative.completion": "output tokens of the run so far",
    "llm.tokens.cumulative.total": "tokens of the run so far",
    "llm.cost.cumulative": "known cost of the run so far, USD",
}


class _Totals:
    """A run's step count and running totals."""

    __slots__ = ("step", "prompt", "completion", "total", "cost")

    def __init__(self, step: int = 0, prompt: float = 0, completion: float = 0, total: float = 0, cost: float = 0.0) -> None:
        self.step, self.prompt, self.completion, self.total, self.cost = step, prompt, completion, total, cost

    def copy(self) -> _Totals:
        return _Totals(self.step, self.prompt, self.completion, self.total, self.cost)


def _end_ms(call: LLMCall) -> int:
    return int(_started_ms(call) + (call.duration_ms or 0.0))


class MLflowSink:
    """LLM calls as metrics of the MLflow run they were made in (see the module docstring)."""

    kind = "mlflow"

    def __init__(self, client: Any = None) -> None:
        """`client`: an `MlflowClient` to log with (default: one for the current tracking URI)."""
        if not _installed():
            raise ConfigError(f"tokentrail: the `mlflow` exporter needs MLflow: {INSTALL}")
        self.client = client
        self.runs: dict[str, _Totals] = {}
        self.failures: Counter[str] = Counter()  # artifacts that could not be written

    # -- the calling thread ----------------------------------------------------------------------------

    def read_labels(self) -> dict[str, str] | None:
        """{"mlflow_run_id": id} of the run active on this thread, or None: what the core reads as a
        call starts. Costs nothing for an application that never imported MLflow."""
        mlflow = sys.modules.get("mlflow")
        active = getattr(mlflow, "active_run", None)
        if active is None:
            return None
        run = active()
        return None if run is None else {RUN_LABEL: run.info.run_id}

    # -- the sink's thread ------------------------------------------------------------------------------

    def export(self, records: Sequence[Any]) -> None:
        by_run: dict[str, list[LLMCall]] = {}
        fallback: tuple[str, int] | None = None
        looked = False
        for record in records:
            if not isinstance(record, LLMCall):
                continue
            run_id = (record.metadata or {}).get(RUN_LABEL)
            if not isinstance(run_id, str):
                if not looked:
                    fallback, looked = _only_active_run(), True
                run_id = fallback[0] if fallback is not None and _started_ms(record) >= fallback[1] else None
            if run_id:
                by_run.setdefault(run_id, []).append(record)
        if not by_run:
            return
        client = self.client or self.make_client()
        rejected, first = 0, None
        for run_id, calls in by_run.items():
            try:
                self.log_run(client, run_id, calls)
            except Exception as exc:  # noqa: BLE001 - one run's failure must not cost the others
                rejected, first = rejected + len(calls), first or exc
        if rejected:
            raise RecordsRejected(rejected, first)

    def make_client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient()

    def log_run(self, client: Any, run_id: str, calls: list[LLMCall]) -> None:
        """Log one run's calls; its totals advance only once MLflow took the metrics."""
        from mlflow.entities import Metric

        totals = self.runs.get(run_id)
        if totals is None:
            totals = _seed(client, run_id)
        after = totals.copy()
        metrics: list[Any] = []
        content: list[dict[str, Any]] = []
        for call in calls:
            after.step += 1
            at = _end_ms(call)

            def add(key: str, value: Any) -> None:
                if value is not None:
                    metrics.append(Metric(key, float(value), at, after.step))

            add("llm.tokens.prompt", call.input_tokens)
            add("llm.tokens.completion", call.output_tokens)
            add("llm.tokens.total", call.total_tokens)
            add("llm.cost.prompt", call.input_cost_usd)
            add("llm.cost.completion", call.output_cost_usd)
            add("llm.cost.total", call.cost_usd)
            add("llm.latency", call.duration_ms)
            after.prompt += call.input_tokens or 0
            after.completion += call.output_tokens or 0
            after.total += call.total_tokens or 0
            after.cost += call.cost_usd or 0.0
            add("llm.tokens.cumulative.prompt", after.prompt)
            add("llm.tokens.cumulative.completion", after.completion)
            add("llm.tokens.cumulative.total", after.total)
            add("llm.cost.cumulative", after.cost)
            if call.input_messages is not None or call.output_text is not None:
                content.append({"id": call.id, "step": after.step, "provider": call.provider, "model": call.model,
                                "input_messages": call.input_messages, "output_text": call.output_text})
        for start in range(0, len(metrics), BATCH_LIMIT):
            client.log_batch(run_id, metrics=metrics[start:start + BATCH_LIMIT])
        self.runs[run_id] = after
        if content:
            self.log_content(client, run_id, content)

    def log_content(self, client: Any, run_id: str, content: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(item, default=str, ensure_ascii=False) + "\n" for item in content)
        try:
            client.log_text(run_id, text, f"tokentrail/calls-{content[0]['id']}.jsonl")
        except Exception as exc:  # noqa: BLE001 - the metrics are in; the content is counted as lost
            self.failures["artifacts"] += 1
            log.error_once("sink.mlflow.artifact", "tokentrail: could not write the calls' content to MLflow "
                           "as an artifact; failures are counted in MLflowSink.failures", exc)

    def __repr__(self) -> str:
        return "MLflowSink()"


def _installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def _seed(client: Any, run_id: str) -> _Totals:
    """The step count and totals a run already holds (a run resumed in another process), read once."""
    history = client.get_metric_history(run_id, "llm.tokens.cumulative.total")
    if not history:
        return _Totals()
    latest = client.get_run(run_id).data.metrics
    return _Totals(step=max(m.step for m in history), prompt=latest.get("llm.tokens.cumulative.prompt", 0),
                   completion=latest.get("llm.tokens.cumulative.completion", 0),
                   total=latest.get("llm.tokens.cumulative.total", 0), cost=latest.get("llm.cost.cumulative", 0.0))


def _started_ms(call: LLMCall) -> float:
    return call.started_at.timestamp() * 1000 if call.started_at is not None else 0.0


def _only_active_run() -> tuple[str, int] | None:
    """(id, start time in ms) of the run active on some thread of this process now, if exactly one is (for
    records whose run was not read as the call started). MLflow keeps its run stacks per thread; this
    reads all of them."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    stacks = getattr(getattr(fluent, "_active_run_stack", None), "get_all_thread_values", None)
    if stacks is None:
        return None
    try:
        found = {(stack[-1].info.run_id, stack[-1].info.start_time or 0) for stack in stacks().values() if stack}
    except Exception:  # noqa: BLE001 - MLflow's internals moved: no fallback
        return None
    return found.pop() if len(found) == 1 else None
