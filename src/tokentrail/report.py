"""The questions the CLI (and the dashboard) ask a store: what did we spend, on what, for whom, what failed.

Everything here reads a store through its public read API (`calls`, `summary`,
`outcomes`, `calls_after`) and returns plain data (dicts, lists); presenting
it is the caller's business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import StoreError

__all__ = ["BREAKDOWNS", "open_existing", "parse_where", "totals", "breakdown", "outcomes_report", "unpriced_models"]

# --by names -> the store's group names
BREAKDOWNS = {
    "model": "model",
    "provider": "provider",
    "user": "user",
    "customer": "customer",
    "feature": "feature",
    "workflow": "workflow",
    "session": "session",
    "operation": "operation",
    "day": "day",
    "hour": "hour",
}


def open_existing(url: str) -> Any:
    """The store at `url` for reading; a missing SQLite file is an error (reading must not create one)."""
    from .sinks import open_store
    from .sinks.sqlite import path_of

    path = path_of(url)
    if path != ":memory:" and not Path(path).exists():
        raise StoreError(f"no store at {path} — record some calls first (or run `tokentrail demo`), or pass --store")
    if path != ":memory:" and not os.access(path, os.R_OK):
        raise StoreError(f"the store {path} is not readable")
    return open_store(url)


def parse_where(items: Iterable[str]) -> dict[str, Any]:
    """`field=value` pairs (a value `a,b` means either; `field=` means empty) to a store filter."""
    where: dict[str, Any] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"--where needs field=value, not {item!r}")
        field = BREAKDOWNS.get(field.strip(), field.strip())
        where[field] = None if value == "" else (value.split(",") if "," in value else value)
    return where


def totals(store: Any, since: Any = None, until: Any = None, where: Any = None) -> dict[str, Any] | None:
    """One row over everything in range (None when nothing is)."""
    rows = store.summary(group_by=(), since=since, until=until, where=where)
    return rows[0] if rows else None


def breakdown(store: Any, by: Sequence[str], since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]:
    unknown = [b for b in by if b not in BREAKDOWNS]
    if unknown:
        raise ValueError(f"cannot break down by {unknown}; accepted: {', '.join(BREAKDOWNS)}")
    return store.summary(group_by=[BREAKDOWNS[b] for b in by], since=since, until=until, where=where)


def outcomes_report(store: Any, since: Any = None, until: Any = None) -> list[dict[str, Any]]:
    """Per workflow and outcome: how many, their value, and the LLM cost of the runs that produced them."""
    outcomes = store.outcomes(since=since, until=until, limit=None)
    if not outcomes:
        return []
    run_cost = {row["workflow_run"]: row["cost_usd"] or 0.0
                for row in store.summary(group_by=("workflow_run",), since=since, until=until)
                if row["workflow_run"] is not None}
    groups: dict[tuple[Any, str], dict[str, Any]] = {}
    for outcome in outcomes:
        group = groups.setdefault((outcome.workflow, outcome.name), {
            "workflow": outcome.workflow, "outcome": outcome.name, "count": 0, "successes": 0,
            "value": 0.0, "runs": set()})
        group["count"] += 1
        group["successes"] += bool(outcome.success)
        group["value"] += outcome.value or 0.0
        if outcome.workflow_run_id:
            group["runs"].add(outcome.workflow_run_id)
    rows = []
    for group in groups.values():
        runs = group.pop("runs")
        cost = sum(run_cost.get(run, 0.0) for run in runs)
        group["runs"] = len(runs)
        group["cost_usd"] = cost
        group["cost_per_outcome_usd"] = cost / group["successes"] if group["successes"] else None
        rows.append(group)
    rows.sort(key=lambda r: (str(r["workflow"]), r["outcome"]))
    return rows


def unpriced_models(store: Any, since: Any = None) -> list[dict[str, Any]]:
    """Models seen with tokens but no price."""
    rows = store.summary(group_by=("provider", "model"), since=since, where={"cost_usd": None})
    return [r for r in rows if r["total_tokens"]]
