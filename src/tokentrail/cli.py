"""The `tokentrail` command: what did we spend, on what, for whom, and what failed.

This module parses arguments and renders; every number comes from
`tokentrail.report`, the one read API (shared with the dashboard).

Every command takes `--store` (a URL such as `sqlite:///tokentrail.db`, or a
plain file path, absolute or relative; default: the `store` of the
configuration in effect) and `--help`. Errors are one line: exit code 2 for
bad arguments (including an export target that exists without `--force`), 1
for a store that cannot be read or a file that cannot be written.

Rendering decisions:

- Costs keep two significant digits below one cent (`$0.000042`, not
  `$0.0000`), four decimals below a dollar, cents above (`money`).
- Tables fit the terminal: when the full table is wider, it switches to a
  compact style and drops the least important columns first (empty ones,
  then provider, operation, customer/user, latency, tokens…). Ids, models
  and costs are never dropped nor cut: they do not wrap, and only fold onto
  a second line when even they alone are wider than the terminal.
- Output that is not a terminal is 160 columns wide unless `COLUMNS` says otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import click
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from . import report
from .errors import ConfigError, StoreError


def _console(stderr: bool = False) -> Console:
    """A console for this command's output: the terminal's width, or 160 columns (or `COLUMNS`) when piped."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(width=None if tty or os.environ.get("COLUMNS") else 160, stderr=stderr)


# -- formatting -------------------------------------------------------------------------------------------


def money(value: Any) -> str:
    """USD for people: `$1,234.50`, `$0.0123`, and two significant digits below a cent (`$0.000042`); `?` for unknown."""
    if value is None:
        return "?"
    amount = float(value)
    if amount == 0:
        return "$0.00"
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount >= 0.01:
        return f"{sign}${amount:.4f}"
    if amount < 1e-10:
        return f"{sign}<$0.0000000001"
    decimals = -math.floor(math.log10(amount)) + 1
    return f"{sign}${amount:.{decimals}f}"


def rate(value: Any) -> str:
    """A price per million tokens: `$2.5`, `$0.075`, `$1.25 (tiers)`; `-` for none."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"${value['base']:g} (tiers)"
    return f"${value:g}"


def count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _moment(row: dict[str, Any]) -> datetime | None:
    value = row.get("started_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- tables that fit ------------------------------------------------------------------------------------------


@dataclass
class Column:
    """One column of a table: how to show a row, how much it matters (0: a key column, never dropped),
    and shorter ways to show it when the table is narrow (`short`, then `shortest`)."""

    header: str
    get: Callable[[dict[str, Any]], str]
    priority: int = 0
    right: bool = False
    short: Callable[[dict[str, Any]], str] | None = None
    shortest: Callable[[dict[str, Any]], str] | None = None
    narrow_header: str | None = None

    @property
    def key(self) -> bool:
        return self.priority == 0


def _widest(header: str, cells: Sequence[str]) -> int:
    return max([cell_len(header), *(cell_len(line) for cell in cells for line in cell.splitlines() or [""])])


# Columns whose priority is at least this go before any column is shown in its shortest form.
_SECONDARY = 3


def fit_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], width: int, title: str | None = None) -> Table:
    """A table of `rows` that fits `width` columns.

    The full table when it fits. Else a compact style without borders and
    the `short` renderings, and until it fits: drop the columns that are
    empty, then the secondary ones (priority >= 3, highest first), then use
    the `shortest` renderings, then drop the rest by priority. Key columns
    (priority 0) stay, never wrap, and fold rather than being cut with an
    ellipsis if even they do not fit.
    """
    headers = [c.header for c in columns]

    def render(pick: Callable[[Column], Callable[[dict[str, Any]], str]]) -> tuple[list[list[str]], list[int]]:
        cells = [[pick(c)(r) for r in rows] for c in columns]
        return cells, [_widest(h, col) for h, col in zip(headers, cells)]

    cells, widths = render(lambda c: c.get)
    keep = list(range(len(columns)))
    fold = False
    if sum(widths) + 3 * len(columns) + 1 <= width:
        table = Table(title=title, title_justify="left")
    else:
        headers = [c.narrow_header or c.header for c in columns]
        cells, widths = render(lambda c: c.short or c.get)

        def fits() -> bool:
            return sum(widths[j] for j in keep) + 2 * (len(keep) - 1) <= width

        def drop(candidates: list[int]) -> None:
            for i in sorted(candidates, key=lambda i: (-columns[i].priority, -i)):
                if fits():
                    return
                keep.remove(i)

        drop([i for i in keep if not columns[i].key and all(cell.strip() in ("", "-") for cell in cells[i])])
        drop([i for i in keep if columns[i].priority >= _SECONDARY])
        if not fits():
            cells, widths = render(lambda c: c.shortest or c.short or c.get)
        drop([i for i in keep if not columns[i].key])
        fold = not fits()  # even the key columns are too wide: fold them onto more lines rather than crop them
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      collapse_padding=True)
    for i in keep:
        column = columns[i]
        table.add_column(headers[i], justify="right" if column.right else "left", no_wrap=column.key and not fold,
                         overflow="fold", min_width=None if fold or not column.key else widths[i])
    for r in range(len(rows)):
        table.add_row(*(cells[i][r] for i in keep))
    return table


# -- shared options and errors ---------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line instead of a traceback: usage errors exit 2, store and file errors exit 1."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FileExistsError as exc:
            raise click.UsageError(f"{exc.filename} exists; pass --force to overwrite it") from None
        except (ValueError, ConfigError) as exc:
            raise click.UsageError(str(exc).removeprefix("tokentrail: ")) from None
        except StoreError as exc:
            _fail(str(exc).removeprefix("tokentrail: "))
        except BrokenPipeError:  # `tokentrail calls | head`: the reader left; so do we, quietly
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            sys.exit(130)

    return run


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--store", "store_url", default=None, metavar="URL|PATH",
                        help="Store to read: sqlite:///rel.db, sqlite:////abs.db, or a file path "
                             "(default: the configured store, tokentrail.db).")(func)


def filters(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
                        help="Only calls with this value (repeatable; a,b for either).")(func)
    func = click.option("--until", default=None, help="Until this time (ISO date/time, or a duration ago).")(func)
    func = click.option("--since", default=None, help="Since this time: 24h, 7d, 30m, 2026-11-01, …")(func)
    return store_option(func)


def _open(store_url: str | None) -> Any:
    return report.open_existing(store_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokentrail")
def main() -> None:
    """tokentrail — what did we spend, on what, for whom, and what failed.

    \b
    tokentrail demo                         record a demo app's calls into tokentrail-demo.db, then report
    tokentrail report --by model --since 7d
    tokentrail calls --where customer=acme  the latest calls
    tokentrail tail                         follow new calls as they are stored
    tokentrail trace RUN_ID                 one run as a tree: where an agent spent its money
    tokentrail run -- python app.py         run any program with zero-code capture
    """


# -- report -------------------------------------------------------------------------------------------


def _cost_gaps(row: dict[str, Any], long: bool = False) -> str:
    """Why some calls have no cost: they reported no token usage, or their model has no known price."""
    parts = []
    if row.get("no_usage_calls"):
        parts.append(f"{row['no_usage_calls']} {'calls ' if long else ''}without token usage")
    if row.get("no_price_calls"):
        parts.append(f"{row['no_price_calls']} {'calls ' if long else ''}without a known price")
    return ", ".join(parts)


def _cost_cell(row: dict[str, Any]) -> str:
    text = money(row["cost_usd"])
    gaps = _cost_gaps(row)
    if gaps and row["cost_usd"] is not None:
        text += f" (+{gaps})"
    return text


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def summary_table(title: str, keys: Sequence[str], rows: list[dict[str, Any]], width: int) -> Table:
    """The breakdown table of `report`."""
    columns = [Column(k, lambda r, k=k: _dash(r.get(k))) for k in keys]
    columns += [
        Column("calls", lambda r: count(r["calls"]), right=True),
        Column("in", lambda r: count(r["input_tokens"]), 3, right=True),
        Column("out", lambda r: count(r["output_tokens"]), 3, right=True),
        Column("cached", lambda r: count(r["cache_read_tokens"]), 5, right=True),
        Column("cost", _cost_cell, right=True),
        Column("errors", lambda r: f"{r['errors']} ({r['error_rate']:.0%})", 2, right=True,
               short=lambda r: str(r["errors"]) if r["errors"] else "-"),
        Column("p50", lambda r: ms(r["p50_ms"]), 4, right=True),
        Column("p95", lambda r: ms(r["p95_ms"]), 5, right=True),
        Column("ttft p50", lambda r: ms(r["ttft_p50_ms"]), 6, right=True),
    ]
    return fit_table(columns, rows, width, title)


def outcomes_table(rows: list[dict[str, Any]], width: int) -> Table:
    columns = [
        Column("workflow", lambda r: _dash(r["workflow"])),
        Column("outcome", lambda r: r["outcome"]),
        Column("count", lambda r: str(r["count"]), 2, right=True),
        Column("successes", lambda r: str(r["successes"]), 1, right=True),
        Column("runs", lambda r: str(r["runs"]), 3, right=True),
        Column("cost", lambda r: money(r["cost_usd"]), 2, right=True),
        Column("cost/outcome", lambda r: money(r["cost_per_outcome_usd"]), right=True),
    ]
    return fit_table(columns, rows, width, "outcomes (cost per successful outcome)")


def print_report(console: Console, data: dict[str, Any], by: Sequence[str]) -> None:
    """Render `report.report(...)`: the totals line, the breakdown, cost per outcome."""
    total = data["totals"]
    if total is None:
        console.print("No calls recorded in this range.")
        return
    cost = money(total["cost_usd"])
    if total["unpriced_calls"]:
        cost += f" ({_cost_gaps(total, long=True)})"
    console.print(f"[bold]{total['calls']:,} calls[/bold]  cost {cost}  tokens in {count(total['input_tokens'])} "
                  f"(cached {count(total['cache_read_tokens'])}) out {count(total['output_tokens'])}  "
                  f"errors {total['errors']} ({total['error_rate']:.1%})  p50 {ms(total['p50_ms'])}  p95 {ms(total['p95_ms'])}")
    console.print(summary_table(f"by {', '.join(by)}", list(by), data["breakdown"], console.width))
    if data["outcomes"]:
        console.print(outcomes_table(data["outcomes"], console.width))


@main.command("report")
@click.option("--by", "by", multiple=True, type=click.Choice(list(report.BREAKDOWNS)),
              help="Break down by (repeatable, combined): model, provider, user, customer, feature, workflow, day, hour, …")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of the breakdown.")
@click.option("--reprice", "reprice_model", default=None, metavar="MODEL",
              help="What if: price the same tokens at MODEL's list price, and the saving per --by group.")
@click.option("--cache", "show_cache", is_flag=True, help="What prompt caching saved (and cache writes cost) per --by group.")
@filters
@handled
def report_command(by: tuple[str, ...], as_json: bool, as_csv: bool, reprice_model: str | None, show_cache: bool,
                   since: Any, until: Any, where: tuple[str, ...], store_url: str | None) -> None:
    """Totals, a breakdown, and cost per outcome.

    --where applies to every section: outcomes are filtered by the fields they
    carry (user, customer, feature, session, workflow) and their runs' cost
    counts only the matching calls.

    \b
    tokentrail report
    tokentrail report --by customer --by model --since 7d
    tokentrail report --by day --where feature=search --json
    tokentrail report --by feature --reprice gpt-4o-mini    what the same calls would cost on another model
    tokentrail report --by model --cache                     what prompt caching saved
    """
    since, until = report.time_range(since, until)
    by = by or ("model",)
    filt = report.parse_where(where) or None
    store = _open(store_url)
    if as_csv:
        report.write_rows(report.breakdown(store, by, since, until, filt), "csv", sys.stdout)
        return
    data = report.report(store, by, since, until, filt)
    if reprice_model:
        data["reprice"] = report.reprice(store, reprice_model, by, since, until, filt)
    if show_cache:
        data["cache"] = report.cache_savings(store, by, since, until, filt)
    if as_json:
        _json_out(data)
        return
    console = _console()
    print_report(console, data, by)
    if reprice_model:
        console.print(reprice_table(data["reprice"], by, console.width))
    if show_cache:
        console.print(cache_table(data["cache"], by, console.width) if data["cache"] else "No cache reads or writes in this range.")


def reprice_table(data: dict[str, Any], by: Sequence[str], width: int) -> Table:
    """`report --reprice`: recorded cost, the cost on the other model, the saving (negative: it costs more)."""
    columns = [Column(k, lambda r, k=k: _dash(r.get(k))) for k in by]
    columns += [
        Column("calls", lambda r: count(r["calls"]), 2, right=True),
        Column("cost", lambda r: money(r["cost_usd"]), right=True),
        Column(f"on {data['model']}", lambda r: money(r["what_if_usd"]), right=True),
        Column("saving", lambda r: money(r["saving_usd"]), right=True),
        Column("%", lambda r: "-" if r["saving_share"] is None else f"{r['saving_share']:.0%}", 1, right=True),
    ]
    t = data["totals"]
    share = "" if t["saving_share"] is None else f" ({t['saving_share']:.0%})"
    title = (f"what if every call had gone to {data['model']}: {money(t['what_if_usd'])} instead of "
             f"{money(t['cost_usd'])}, saving {money(t['saving_usd'])}{share}")
    return fit_table(columns, data["rows"], width, title)


def cache_table(rows: list[dict[str, Any]], by: Sequence[str], width: int) -> Table:
    """`report --cache`: cache reads and what they saved, cache writes and their premium."""
    columns = [Column(k, lambda r, k=k: _dash(r.get(k))) for k in by]
    columns += [
        Column("calls", lambda r: count(r["calls"]), 3, right=True),
        Column("cache read", lambda r: count(r["cache_read_tokens"]), 2, right=True),
        Column("saved", lambda r: money(r["saved_usd"]), right=True),
        Column("cache write", lambda r: count(r["cache_write_tokens"]), 2, right=True),
        Column("write premium", lambda r: money(r["write_premium_usd"]), 1, right=True),
        Column("net", lambda r: money(r["net_usd"]), right=True),
    ]
    return fit_table(columns, rows, width, "prompt caching: saved on reads, paid extra on writes")


# -- calls, show, tail -----------------------------------------------------------------------------


def _when(row: dict[str, Any]) -> str:
    moment = _moment(row)
    return moment.strftime("%m-%d %H:%M:%S") if moment else "-"


def _when_short(row: dict[str, Any]) -> str:
    moment = _moment(row)
    return moment.strftime("%H:%M:%S") if moment else "-"


def calls_table(rows: list[dict[str, Any]], width: int) -> Table:
    """The table of `calls`: at any width it keeps the full id, model and cost of each call."""
    one_day = len({_when(r)[:5] for r in rows}) <= 1
    columns = [
        Column("time (UTC)", _when, 2, short=_when_short if one_day else lambda r: _when(r)[:11],
               shortest=(lambda r: _when_short(r)[:5]) if one_day else None, narrow_header="UTC"),
        Column("provider", lambda r: r["provider"], 6),
        Column("model", lambda r: r["model"] or "-"),
        Column("op", lambda r: r["operation"], 7),
        Column("in", lambda r: count(r["input_tokens"]), 3, right=True),
        Column("out", lambda r: count(r["output_tokens"]), 3, right=True),
        Column("cost", lambda r: money(r["cost_usd"]), right=True),
        Column("duration", lambda r: ms(r["duration_ms"]), 4, right=True),
        Column("customer/user", lambda r: f"{r['customer_id'] or '-'}/{r['user_id'] or '-'}", 5),
        Column("error", lambda r: r["error_category"] or "", 1, shortest=lambda r: "!" if r["error_category"] else "",
               narrow_header="err"),
        Column("id", lambda r: r["id"]),
    ]
    return fit_table(columns, rows, width)


@main.command("calls")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@filters
@handled
def calls_command(limit: int, as_json: bool, since: Any, until: Any, where: tuple[str, ...], store_url: str | None) -> None:
    """The latest calls.

    \b
    tokentrail calls --limit 50
    tokentrail calls --where error_category=rate_limit --since 1h
    """
    since, until = report.time_range(since, until)
    rows = report.calls(_open(store_url), since, until, report.parse_where(where), limit)
    if as_json:
        _json_out([{k: v for k, v in row.items() if k != "model"} for row in rows])
        return
    console = _console()
    if not rows:
        console.print("No calls recorded in this range.")
    else:
        console.print(calls_table(rows, console.width))


@main.command("show")
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@store_option
@handled
def show_command(call_id: str, as_json: bool, store_url: str | None) -> None:
    """One call in full, by its id or a unique start of it: tokentrail show 019a4c2e81f3d2

    Ids begin with the time (12 hex digits of milliseconds), so a prefix needs
    a few more characters than that to be unique; when several calls match,
    the error says how many. A trace id or a workflow run id shows that run's
    tree, as `tokentrail trace` does.
    """
    store = _open(store_url)
    try:
        data = report.find_call(store, call_id)
    except StoreError:
        try:
            run = report.trace(store, call_id)
        except StoreError:
            run = None
        if run is None:
            raise
        _print_trace(run, as_json)
        return
    data.pop("model", None)
    if as_json:
        _json_out(data)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in data.items():
        if value is not None and name != "type":
            table.add_row(name, json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    _console().print(table)


# -- trace ----------------------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _tokens_text(input_tokens: Any, output_tokens: Any) -> str:
    if not input_tokens and not output_tokens:
        return ""
    return f"{count(input_tokens or 0)}→{count(output_tokens or 0)} tok"


def _subtree_text(subtree: dict[str, Any]) -> str:
    """What a span cost with everything under it: `Σ $0.0021 · 3 calls · 1,234 tok (+1 unpriced)`."""
    if not subtree["llm_calls"]:
        return ""
    parts = [f"Σ {money(subtree['cost_usd'])}", _plural(subtree["llm_calls"], "call")]
    if subtree["total_tokens"]:
        parts.append(f"{count(subtree['total_tokens'])} tok")
    text = " · ".join(parts)
    if subtree["unpriced_calls"]:
        text += f" (+{subtree['unpriced_calls']} unpriced)"
    return text


def _trace_label(node: dict[str, Any]) -> str:
    """One line of the tree (rich markup; names escaped)."""
    from rich.markup import escape

    kind, detail, error = node["kind"], node.get("detail") or {}, node["error"]
    if kind == "span":
        parts = [f"[bold]{escape(node['name'])}[/]", f"[dim]{escape(str(detail.get('kind')))}[/]", ms(node["duration_ms"]),
                 _subtree_text(node["subtree"])]
    elif kind == "llm_call":
        timing = ms(node["duration_ms"]) + (f" (ttft {ms(detail['ttft_ms'])})" if detail.get("ttft_ms") is not None else "")
        parts = [f"[cyan]llm[/] {escape(str(detail.get('provider')))} [bold]{escape(str(node['name'] or '?'))}[/]",
                 _tokens_text(node["input_tokens"], node["output_tokens"]), money(node["cost_usd"]), timing]
    elif kind == "tool_call":
        parts = [f"[magenta]tool[/] [bold]{escape(node['name'])}[/]", ms(node["duration_ms"]), _subtree_text(node["subtree"])]
    else:
        value = "" if detail.get("value") is None else f" = {detail['value']:g}"
        mark = "[green]✓[/]" if detail.get("success") else "[red]✗[/]"
        parts = [f"[green]outcome[/] [bold]{escape(node['name'])}[/]{value}", mark]
    if error is not None:
        parts.append(f"[red]ERROR {escape(str(error['category'] or error['type']))}[/]")
    return "  ".join(p for p in parts if p and p != "-")


def trace_tree(data: dict[str, Any]) -> Any:
    """A rich Tree of `report.trace`: every node with its tokens, cost and latency; spans with their subtree cost."""
    from rich.tree import Tree

    totals = data["totals"]
    title = f"[bold]trace {data['trace_id'] or '?'}[/]"
    if data["workflow"]:
        title += f"  workflow [bold]{data['workflow']}[/] run {data['workflow_run_id']}"
    summary = [_plural(totals["llm_calls"], "LLM call"), _plural(totals["tool_calls"], "tool call"),
               f"{count(totals['total_tokens'])} tokens", money(totals["cost_usd"]) + (
                   f" (+{totals['unpriced_calls']} unpriced)" if totals["unpriced_calls"] else ""), ms(data["duration_ms"])]
    if totals["errors"]:
        summary.append(f"[red]{totals['errors']} errors[/]")
    tree = Tree(title + "\n" + " · ".join(summary))
    stack = [(tree, root) for root in reversed(data["roots"])]
    while stack:  # iterative, like the report: deep agent loops
        parent, node = stack.pop()
        branch = parent.add(_trace_label(node))
        stack.extend((branch, child) for child in reversed(node["children"]))
    return tree


def _print_trace(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _json_out(data)
    else:
        _console().print(trace_tree(data))


@main.command("trace")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts (the nested tree).")
@store_option
@handled
def trace_command(ref: str, as_json: bool, store_url: str | None) -> None:
    """The tree of one run — chains, agents, LLM and tool calls, outcomes — with tokens, cost and latency
    per step, so you see where an agent spent its money.

    \b
    tokentrail trace 4bf92f3577b34da6a3ce929d0e0e4736   a trace id
    tokentrail trace <workflow run id>                  one workflow run (workflow_run_id)
    tokentrail trace 019a4c2e81f3d2                     the trace a call belongs to (a unique id prefix)
    """
    _print_trace(report.trace(_open(store_url), ref), as_json)


def _tail_line(row: dict[str, Any]) -> str:
    moment = _moment(row)
    tokens = "tokens ?" if row["input_tokens"] is None and row["output_tokens"] is None else \
        f"{row['input_tokens'] or 0}->{row['output_tokens'] or 0} tok"
    parts = [moment.strftime("%H:%M:%S") if moment else "-", row["provider"], row["model"] or "?", row["operation"],
             tokens, money(row["cost_usd"])]
    if row["duration_ms"] is not None:
        parts.append(ms(row["duration_ms"]))
    if row["error_category"]:
        parts.append(f"ERROR {row['error_category']}")
    parts += [f"{row['customer_id'] or '-'}/{row['user_id'] or '-'}", row["id"]]
    return " ".join(parts)


@main.command("prune")
@click.option("--before", required=True, help="Delete what started before this: 90d (ago), 2026-01-01, …")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE", help="Only calls with this value (repeatable).")
@click.option("--rollup", is_flag=True, help="Keep the pruned calls as daily aggregates that reports still count.")
@store_option
@handled
def prune_command(before: str, where: tuple[str, ...], rollup: bool, store_url: str | None) -> None:
    """Retention: delete (or roll up into daily totals) calls older than --before."""
    counts = report.prune(store_url, before, where=report.parse_where(where), rollup=rollup)
    verb = "rolled up and deleted" if rollup else "deleted"
    click.echo(", ".join(f"{table}: {n} {verb}" for table, n in counts.items()))


@main.command("tail")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.05), help="Seconds between looks.")
@click.option("--count", "stop_after", default=None, type=click.IntRange(1), help="Stop after this many calls.")
@click.option("--timeout", default=None, type=click.FloatRange(0), help="Stop after this many seconds.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE", help="Only calls with this value.")
@store_option
@handled
def tail_command(interval: float, stop_after: int | None, timeout: float | None, where: tuple[str, ...], store_url: str | None) -> None:
    """Follow new calls as they are stored (like tail -f); Ctrl-C to stop.

    If the store does not exist yet, waits for it to appear (saying so on
    stderr) and then shows every call in it. Each look reads until it has
    caught up, however many calls arrived since the last one.

    \b
    tokentrail tail --where provider=anthropic
    """
    url = report.store_url(store_url)
    filt = report.parse_where(where) or None
    deadline = (time.monotonic() + timeout) if timeout is not None else None

    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    try:  # Ctrl-C is how one stops following: a normal end, exit 0
        from_start = False
        if not report.store_exists(url):
            click.echo(f"waiting for the store {report.store_path(url)} to appear (Ctrl-C to stop)", err=True)
            while not report.store_exists(url):
                if remaining() <= 0:
                    return
                time.sleep(max(0.0, min(interval, 0.25, remaining())))
            from_start = True  # a store that appeared while we waited is all new
        store = _open(url)
        cursor = report.start_cursor(store, from_start=from_start)
        click.echo(f"following new calls in {url} (Ctrl-C to stop)", err=True)
        seen = 0
        while True:
            for rows, cursor in report.new_calls(store, cursor, filt):
                for row in rows:
                    click.echo(_tail_line(row))
                    seen += 1
                    if stop_after is not None and seen >= stop_after:
                        return
            if remaining() <= 0:
                return
            time.sleep(max(0.0, min(interval, remaining())))
    except KeyboardInterrupt:
        return


# -- export -------------------------------------------------------------------------------------------


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(list(report.EXPORT_FORMATS)), default=None,
              help="csv, jsonl or parquet (default: from the --out file's extension).")
@click.option("--out", "out", required=True, metavar="PATH", help="File to write, or - for standard output.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists (otherwise refused).")
@filters
@handled
def export_command(fmt: str | None, out: str, force: bool, since: Any, until: Any, where: tuple[str, ...], store_url: str | None) -> None:
    """Write the calls (oldest first, every field) to a file or to standard output.

    An existing file is never overwritten without --force.

    \b
    tokentrail export --out calls.csv --since 30d
    tokentrail export --format jsonl --out - | jq .cost_usd
    tokentrail export --out calls.parquet   (needs: pip install 'tokentrail[parquet]')
    """
    fmt = report.export_format(out, fmt)
    since, until = report.time_range(since, until)
    filt = report.parse_where(where) or None
    if fmt == "parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise click.UsageError("parquet needs pyarrow: pip install 'tokentrail[parquet]'")
        if out == "-" and sys.stdout.isatty():
            raise click.UsageError("parquet is binary: write it to a file or a pipe, not to the terminal")
    if out != "-":
        path = Path(out)
        source = report.store_path(report.store_url(store_url))
        if source and source != ":memory:" and path.resolve() == Path(source).resolve():
            raise click.UsageError(f"--out {out} is the store being exported; write somewhere else")
        if path.is_dir():
            _fail(f"cannot write {out}: it is a folder")
        if path.exists() and not force:
            raise click.UsageError(f"{out} exists; pass --force to overwrite it")
        if not path.parent.is_dir():
            _fail(f"cannot write {out}: no folder {path.parent}")
    store = _open(store_url)
    with _console(stderr=True).status("reading calls…"):
        rows = report.export_rows(store, since, until, filt)
    try:
        written = report.write_rows(rows, fmt, sys.stdout if out == "-" else out, report.EXPORT_COLUMNS, overwrite=force)
    except FileExistsError:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it") from None
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    click.echo(f"wrote {written:,} calls to {'standard output' if out == '-' else out}", err=True)


# -- prices -------------------------------------------------------------------------------------------


@main.command("prices")
@click.argument("models", nargs=-1)
@click.option("--provider", default=None, help="Provider of the models (default: inferred from the name).")
@click.option("--unpriced", is_flag=True, help="List the models in the store that have no known price.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@store_option
@handled
def prices_command(models: tuple[str, ...], provider: str | None, unpriced: bool, as_json: bool, store_url: str | None) -> None:
    """The price per million tokens tokentrail uses, and where it comes from.

    \b
    tokentrail prices gpt-4o claude-sonnet-4-6
    tokentrail prices --provider bedrock anthropic.claude-3-haiku-20240307-v1:0
    tokentrail prices --unpriced
    """
    console = _console()
    if unpriced:
        store = _open(store_url)
        rows = report.unpriced_models(store)
        no_usage = (report.totals(store) or {}).get("no_usage_calls") or 0
        if as_json:
            _json_out({"models_without_price": [{"provider": r["provider"], "model": r["model"], "calls": r["calls"]} for r in rows],
                       "calls_without_usage": no_usage})
            return
        if not rows:
            console.print("Every model in the store has a price.")
        for row in rows:
            click.echo(f"{row['provider']} {row['model']}: {row['calls']} calls without a price")
        if no_usage:
            click.echo(f"{no_usage} calls reported no token usage (streams without usage, say): their cost is unknown "
                       "whatever the price; see `tokentrail calls --where input_tokens= --where output_tokens=`")
        return
    if not models:
        raise click.UsageError("name one or more models, or use --unpriced")
    out = report.price_table(models, provider)
    if as_json:
        _json_out(out)
        return
    known = [r for r in out if r.get("price", True) is not None]
    columns = [
        Column("model", lambda r: r["model"]),
        Column("priced as", lambda r: f"{r['provider']}/{r['priced_as']}" if r in known else "no known price", 2),
        Column("input", lambda r: rate(r["input"]) if r in known else "", right=True),
        Column("output", lambda r: rate(r["output"]) if r in known else "", right=True),
        Column("cache read", lambda r: rate(r["cache_read"]) if r in known else "", 3, right=True),
        Column("cache write", lambda r: rate(r["cache_write"]) if r in known else "", 3, right=True),
        Column("source", lambda r: r["source"] if r in known else "add it under `prices`", 4),
    ]
    console.print(fit_table(columns, out, console.width, "USD per million tokens"))


# -- run, doctor, demo ----------------------------------------------------------------------------

_SITECUSTOMIZE = '''\
# Written by `tokentrail run`: start zero-code capture, then run the program's own sitecustomize, if any.
import importlib.machinery, importlib.util, os, sys
import tokentrail.auto
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
'''


@main.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@store_option
@handled
def run_command(command: tuple[str, ...], store_url: str | None) -> None:
    """Run a program with zero-code capture: tokentrail run -- python app.py --its-args

    The program's arguments, exit code and signals pass through unchanged.
    """
    with tempfile.TemporaryDirectory(prefix="tokentrail-run-") as hook_dir:
        Path(hook_dir, "sitecustomize.py").write_text(_SITECUSTOMIZE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (hook_dir, env.get("PYTHONPATH")) if p)
        if store_url:
            env["TOKENTRAIL_STORE"] = store_url
        try:
            child = subprocess.Popen(list(command), env=env)
        except FileNotFoundError:
            raise click.UsageError(f"no such program: {command[0]}") from None
        forwarded = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            forwarded[sig] = signal.signal(sig, lambda number, frame: child.send_signal(number))
        try:
            code = child.wait()
        finally:
            for sig, handler in forwarded.items():
                signal.signal(sig, handler)
    sys.exit(128 - code if code < 0 else code)


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@store_option
@handled
def doctor_command(as_json: bool, store_url: str | None) -> None:
    """Installed SDKs, the configuration in effect and where each value came from, the store.

    Exits 1 when the store cannot be read.
    """
    from .instrument import status

    data = report.doctor(store_url, sdks=status())
    if as_json:
        _json_out(data)
    else:
        console = _console()
        sdks = Table(title="SDKs", title_justify="left")
        for name in ("sdk", "package", "minimum", "installed", "supported", "patched by init()"):
            sdks.add_column(name)
        for row in data["sdks"]:
            sdks.add_row(row["sdk"], row["package"], f">= {row['minimum']}", row["installed"] or "not installed",
                         "yes" if row["supported"] else "no", "yes" if row["patched_by_init"] else "no")
        console.print(sdks)
        config = Table(title="configuration", title_justify="left")
        config.add_column("option", no_wrap=True)
        config.add_column("value", overflow="fold")
        config.add_column("from")
        for row in data["configuration"]:
            value = row["value"]
            if isinstance(value, (list, tuple)):
                value = ", ".join(map(str, value)) or "-"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
            config.add_row(row["option"], str(value), row["source"])
        console.print(config)
        store = data["store"]
        if store["url"] is None:
            console.print("store: none (exporters only)")
        elif store["ok"]:
            mode = " (read-only)" if store["read_only"] else ""
            console.print(f"store: {store['url']} reachable{mode}, schema version {store['schema_version']}, "
                          f"{store['calls']:,} calls")
        else:
            console.print(f"store: {store['url']} — {store['error']}")
        losses = data.get("losses")
        if losses:
            lost = Table(title="records lost on the way to a sink (noted by the processes that lost them)", title_justify="left")
            for name in ("sink", "dropped (buffer full)", "failed (gave up)", "rejected (bad values)", "processes", "last"):
                lost.add_column(name, justify="right" if name not in ("sink", "last") else "left")
            for row in losses:
                lost.add_row(row["sink"], f"{row['dropped'] or 0:,}", f"{row['failed'] or 0:,}", f"{row['rejected'] or 0:,}",
                             f"{row['processes']:,}", row["last"] or "")
            console.print(lost)
        elif losses is not None:
            console.print("no records lost on the way to a sink")
    if not data["store"]["ok"]:
        sys.exit(1)


@main.command("demo")
@click.option("--store", "store_url", default=None, metavar="URL|PATH",
              help=f"Where to record the demo's calls (default: {report.DEMO_STORE}, a store of its own, recreated each run).")
@handled
def demo_command(store_url: str | None) -> None:
    """Record a realistic mix of calls (real openai and anthropic SDKs, a local fake provider), then report.

    No network and no keys: the provider is tokentrail.testing's fake, on
    127.0.0.1. The calls go to a store of their own, tokentrail-demo.db in
    the working directory (recreated on each run), never to your configured
    store, where fake calls would count in your reports and budgets. Each
    demo call carries the tag `demo`. With --store the demo adds its calls
    to that store instead.
    """
    from . import demo

    missing = [sdk for sdk in ("openai", "anthropic") if importlib.util.find_spec(sdk) is None]
    if missing:
        raise click.UsageError(f"the demo drives the real SDKs: pip install {' '.join(missing)}")
    url = report.store_url(store_url or report.DEMO_STORE)
    if store_url is None:
        demo.reset(url)
    console = _console()
    with console.status("running the demo app against a local fake provider…"):
        made = demo.run(url)
    console.print(f"recorded {made} calls into {url}\n")
    print_report(console, report.report(report.open_existing(url), ("model",)), ("model",))
    store_arg = f" --store {store_url or report.store_path(url)}"
    console.print("\nNext:", highlight=False)
    for example in (f"report{store_arg} --by customer", f"calls{store_arg}", f"report{store_arg} --by workflow"):
        console.print(f"  [bold]tokentrail {example}[/bold]", highlight=False)
    if store_url is None:
        console.print("(The demo has a store of its own, recreated on each run; your configured store was not touched.)")


# -- ui -------------------------------------------------------------------------------------------------


@main.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires a token (--token, or one is generated).")
@click.option("--port", default=8437, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--token", default=None, metavar="TOKEN", help="Require this token on every request (?token=… or a Bearer header).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@store_option
@handled
def ui_command(host: str, port: int, token: str | None, no_browser: bool, store_url: str | None) -> None:
    """Open the dashboard on a store: totals, cost over time, breakdowns, errors, the calls (needs tokentrail[ui]).

    \b
    tokentrail ui                                   the configured store, on http://127.0.0.1:8437/
    tokentrail demo && tokentrail ui --store tokentrail-demo.db
    tokentrail ui --host 0.0.0.0 --token SECRET     reachable from other machines, with a token
    """
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(f"the dashboard needs {' and '.join(missing)}: pip install 'tokentrail[ui]'")
    from .web import server

    server.serve(store_url, host=host, port=port, token=token, open_browser=not no_browser, echo=click.echo)


if __name__ == "__main__":
    main()
