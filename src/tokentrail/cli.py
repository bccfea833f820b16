"""The `tokentrail` command: what did we spend, on what, for whom, and what failed.

Every command takes `--store URL` (default: the `store` of the configuration
in effect) and `--help`. Errors are one line: exit code 2 for bad arguments,
1 for a store that cannot be read.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from . import report
from .errors import ConfigError, StoreError
from .record import FIELDS, LLMCall, to_dict

# Piped or captured output has no terminal width: use one wide enough for the tables.
console = Console(width=None if sys.stdout.isatty() else 160)


# -- formatting -------------------------------------------------------------------------------


def money(value: Any) -> str:
    if value is None:
        return "?"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _csv_out(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    click.echo(out.getvalue(), nl=False)


# -- shared options and errors --------------------------------------------------------------------


def _default_store() -> str:
    from .config import load_settings

    return load_settings().store or "sqlite:///tokentrail.db"


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line instead of a traceback: usage errors exit 2, store errors exit 1."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, ConfigError) as exc:
            raise click.UsageError(str(exc).removeprefix("tokentrail: ")) from None
        except StoreError as exc:
            click.echo(f"error: {str(exc).removeprefix('tokentrail: ')}", err=True)
            sys.exit(1)

    return run


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--store", "store_url", default=None, metavar="URL",
                        help="Store to read (default: the configured store, sqlite:///tokentrail.db).")(func)


def filters(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
                        help="Only calls with this value (repeatable; a,b for either).")(func)
    func = click.option("--until", default=None, help="Until this time (ISO date/time, or a duration ago).")(func)
    func = click.option("--since", default=None, help="Since this time: 24h, 7d, 30m, 2026-11-01, …")(func)
    return store_option(func)


def _open(store_url: str | None) -> Any:
    return report.open_existing(store_url or _default_store())


def _check_times(since: Any, until: Any) -> None:
    from .sinks._query import parse_time

    for value in (since, until):
        if value is not None:
            parse_time(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokentrail")
def main() -> None:
    """tokentrail — what did we spend, on what, for whom, and what failed.

    \b
    tokentrail demo                         record a realistic mix of calls, then report
    tokentrail report --by model --since 7d
    tokentrail calls --where customer=acme  the latest calls
    tokentrail tail                         follow new calls as they are stored
    tokentrail run -- python app.py         run any program with zero-code capture
    """


# -- report -------------------------------------------------------------------------------------------


def _summary_table(title: str, keys: list[str], rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for key in keys:
        table.add_column(key)
    for name in ("calls", "in", "out", "cached", "cost", "errors", "p50", "p95", "ttft p50"):
        table.add_column(name, justify="right")
    for row in rows:
        cost = money(row["cost_usd"]) + (f" (+{row['unpriced_calls']} unpriced)" if row["unpriced_calls"] and row["cost_usd"] is not None else "")
        table.add_row(*(str(row.get(k) if row.get(k) is not None else "-") for k in keys), count(row["calls"]),
                      count(row["input_tokens"]), count(row["output_tokens"]), count(row["cache_read_tokens"]), cost,
                      f"{row['errors']} ({row['error_rate']:.0%})", ms(row["p50_ms"]), ms(row["p95_ms"]), ms(row["ttft_p50_ms"]))
    return table


def print_report(store: Any, by: tuple[str, ...] = ("model",), since: Any = None, until: Any = None, where: Any = None) -> None:
    total = report.totals(store, since, until, where)
    if total is None:
        console.print("No calls recorded in this range.")
        return
    cost = money(total["cost_usd"])
    if total["unpriced_calls"]:
        cost += f" ({total['unpriced_calls']} calls without a known price)"
    console.print(f"[bold]{total['calls']:,} calls[/bold]  cost {cost}  tokens in {count(total['input_tokens'])} "
                  f"(cached {count(total['cache_read_tokens'])}) out {count(total['output_tokens'])}  "
                  f"errors {total['errors']} ({total['error_rate']:.1%})  p50 {ms(total['p50_ms'])}  p95 {ms(total['p95_ms'])}")
    console.print(_summary_table(f"by {', '.join(by)}", list(by), report.breakdown(store, by, since, until, where)))
    outcomes = report.outcomes_report(store, since, until)
    if outcomes:
        table = Table(title="outcomes (cost per successful outcome)", title_justify="left")
        for name in ("workflow", "outcome", "count", "successes", "runs", "cost", "cost/outcome"):
            table.add_column(name, justify="right" if name not in ("workflow", "outcome") else "left")
        for row in outcomes:
            table.add_row(str(row["workflow"] or "-"), row["outcome"], str(row["count"]), str(row["successes"]),
                          str(row["runs"]), money(row["cost_usd"]), money(row["cost_per_outcome_usd"]))
        console.print(table)


@main.command("report")
@click.option("--by", "by", multiple=True, type=click.Choice(list(report.BREAKDOWNS)),
              help="Break down by (repeatable, combined): model, provider, user, customer, feature, workflow, day, hour, …")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of the breakdown.")
@filters
@handled
def report_command(by: tuple[str, ...], as_json: bool, as_csv: bool, since: Any, until: Any, where: tuple[str, ...], store_url: str | None) -> None:
    """Totals, a breakdown, and cost per outcome.

    \b
    tokentrail report
    tokentrail report --by customer --by model --since 7d
    tokentrail report --by day --where feature=search --json
    """
    _check_times(since, until)
    by = by or ("model",)
    filt = report.parse_where(where) or None
    store = _open(store_url)
    if as_json:
        _json_out({"totals": report.totals(store, since, until, filt),
                   "breakdown": report.breakdown(store, by, since, until, filt),
                   "outcomes": report.outcomes_report(store, since, until)})
    elif as_csv:
        _csv_out(report.breakdown(store, by, since, until, filt))
    else:
        print_report(store, by, since, until, filt)


# -- calls, show, tail -----------------------------------------------------------------------------


def _calls_table(calls: list[LLMCall]) -> Table:
    table = Table()
    for name in ("time (UTC)", "provider", "model", "op", "in", "out", "cost", "duration", "customer/user", "error", "id"):
        table.add_column(name, justify="right" if name in ("in", "out", "cost", "duration") else "left")
    for c in calls:
        table.add_row(c.started_at.strftime("%m-%d %H:%M:%S") if c.started_at else "-", c.provider, c.model or "-",
                      c.operation, count(c.input_tokens), count(c.output_tokens), money(c.cost_usd), ms(c.duration_ms),
                      f"{c.customer_id or '-'}/{c.user_id or '-'}", c.error_category or "", c.id)
    return table


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
    _check_times(since, until)
    calls = _open(store_url).calls(since=since, until=until, where=report.parse_where(where) or None, limit=limit)
    if as_json:
        _json_out([to_dict(c) for c in calls])
    elif not calls:
        console.print("No calls recorded in this range.")
    else:
        console.print(_calls_table(calls))


@main.command("show")
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@store_option
@handled
def show_command(call_id: str, as_json: bool, store_url: str | None) -> None:
    """One call in full: tokentrail show 01a2…"""
    found = _open(store_url).calls(where={"id": call_id}, limit=1)
    if not found:
        raise StoreError(f"no call with id {call_id!r}")
    data = to_dict(found[0])
    if as_json:
        _json_out(data)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name in FIELDS[LLMCall]:
        if data[name] is not None:
            table.add_row(name, json.dumps(data[name]) if isinstance(data[name], (list, dict)) else str(data[name]))
    console.print(table)


@main.command("tail")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.05), help="Seconds between looks.")
@click.option("--count", "stop_after", default=None, type=click.IntRange(1), help="Stop after this many calls.")
@click.option("--timeout", default=None, type=click.FloatRange(0), help="Stop after this many seconds.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE", help="Only calls with this value.")
@store_option
@handled
def tail_command(interval: float, stop_after: int | None, timeout: float | None, where: tuple[str, ...], store_url: str | None) -> None:
    """Follow new calls as they are stored (like tail -f); Ctrl-C to stop.

    \b
    tokentrail tail --where provider=anthropic
    """
    store = _open(store_url)
    filt = report.parse_where(where) or None
    _, cursor = store.calls_after(-1)
    click.echo(f"following new calls in {store.url} (Ctrl-C to stop)", err=True)
    seen, deadline = 0, (time.monotonic() + timeout) if timeout is not None else None
    try:
        while True:
            calls, cursor = store.calls_after(cursor, where=filt)
            for call in calls:
                from .sinks.console import describe

                click.echo(f"{call.started_at:%H:%M:%S} {describe(call)} {call.customer_id or '-'}/{call.user_id or '-'} {call.id}")
                seen += 1
                if stop_after is not None and seen >= stop_after:
                    return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# -- export -------------------------------------------------------------------------------------------


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), required=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), required=True, help="File to write.")
@filters
@handled
def export_command(fmt: str, out: str, since: Any, until: Any, where: tuple[str, ...], store_url: str | None) -> None:
    """Write the calls to a file.

    \b
    tokentrail export --format csv --out calls.csv --since 30d
    tokentrail export --format parquet --out calls.parquet   (needs: pip install 'tokentrail[parquet]')
    """
    _check_times(since, until)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise click.UsageError("parquet needs pyarrow: pip install 'tokentrail[parquet]'") from None
    calls = _open(store_url).calls(since=since, until=until, where=report.parse_where(where) or None, limit=None, order="oldest")
    rows = []
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("exporting", total=len(calls))
        for call in calls:
            rows.append(to_dict(call))
            progress.advance(task)
    path = Path(out)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    elif fmt == "csv":
        columns = ["type", *FIELDS[LLMCall]]
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()} for r in rows]
        pq.write_table(pa.Table.from_pylist(flat), path)
    click.echo(f"wrote {len(rows):,} calls to {path}", err=True)


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
    if unpriced:
        rows = report.unpriced_models(_open(store_url))
        if as_json:
            _json_out([{"provider": r["provider"], "model": r["model"], "calls": r["calls"]} for r in rows])
        elif not rows:
            console.print("Every model in the store has a price.")
        else:
            for row in rows:
                click.echo(f"{row['provider']} {row['model']}: {row['calls']} calls without a price")
        return
    if not models:
        raise click.UsageError("name one or more models, or use --unpriced")
    from .config import load_settings
    from .pricing import PriceBook, _Tiered
    from .semconv import normalize_provider

    settings = load_settings()
    book = PriceBook(settings.prices, settings.model_aliases)
    out = []
    for model in models:
        rates = book.rates(normalize_provider(provider, model), model)
        if rates is None:
            out.append({"model": model, "price": None})
            continue

        def per_m(rate: Any) -> Any:
            if rate is None:
                return None
            if isinstance(rate, _Tiered):
                return {"base": rate.base * 1e6, "tiers": [{"above_input_tokens": s, "price": p * 1e6} for s, p in sorted(rate.tiers)]}
            return rate * 1e6

        out.append({"model": model, "priced_as": rates.model, "provider": rates.provider, "source": rates.source,
                    "input": per_m(rates.input), "output": per_m(rates.output), "cache_read": per_m(rates.cache_read),
                    "cache_write": per_m(rates.cache_write)})
    if as_json:
        _json_out(out)
        return
    table = Table(title="USD per million tokens", title_justify="left")
    for name in ("model", "priced as", "input", "output", "cache read", "cache write", "source"):
        table.add_column(name)
    for row in out:
        if row.get("price", 1) is None:
            table.add_row(row["model"], "no known price", "", "", "", "", "add it under `prices`")
            continue

        def show(value: Any) -> str:
            if value is None:
                return "-"
            if isinstance(value, dict):
                return f"${value['base']:g} (tiers)"
            return f"${value:g}"

        table.add_row(row["model"], f"{row['provider']}/{row['priced_as']}", show(row["input"]), show(row["output"]),
                      show(row["cache_read"]), show(row["cache_write"]), row["source"])
    console.print(table)


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
@store_option
@handled
def doctor_command(store_url: str | None) -> None:
    """Installed SDKs, the configuration in effect and where each value came from, the store."""
    from .config import load_settings
    from .instrument import ADAPTERS, available

    settings = load_settings()
    found = available()
    wanted = set(ADAPTERS) if settings.instrument is True else set(settings.instrument or ())
    table = Table(title="SDKs", title_justify="left")
    for name in ("sdk", "installed", "supported", "patched by init()"):
        table.add_column(name)
    for name in ADAPTERS:
        version = found.get(name)
        supported = version is not None and "unsupported" not in version
        table.add_row(name, version.split(" ")[0] if version else "not installed", "yes" if supported else "no",
                      "yes" if supported and name in wanted else "no")
    console.print(table)
    config = Table(title="configuration", title_justify="left")
    for name in ("option", "value", "from"):
        config.add_column(name)
    for name, source in settings.sources.items():
        value = getattr(settings, name)
        if name == "prices":
            value = ", ".join(value) or "-"
        config.add_row(name, str(value), source)
    console.print(config)
    url = store_url or settings.store
    if url is None:
        console.print("store: none (exporters only)")
        return
    try:
        store = report.open_existing(url)
        total = report.totals(store)
        console.print(f"store: {url} reachable, schema version {store.schema_version()}, {total['calls'] if total else 0:,} calls")
    except StoreError as exc:
        console.print(f"store: {url} — {str(exc).removeprefix('tokentrail: ')}")
        sys.exit(1)


@main.command("demo")
@store_option
@handled
def demo_command(store_url: str | None) -> None:
    """Record a realistic mix of calls (real openai and anthropic SDKs, a local fake provider), then report.

    No network and no keys: the provider is tokentrail.testing's fake, on 127.0.0.1.
    """
    from . import demo

    missing = [sdk for sdk in ("openai", "anthropic") if importlib.util.find_spec(sdk) is None]
    if missing:
        raise click.UsageError(f"the demo drives the real SDKs: pip install {' '.join(missing)}")
    url = store_url or _default_store()
    with console.status("running the demo app against a local fake provider…"):
        made = demo.run(url)
    console.print(f"recorded {made} calls into {url}\n")
    print_report(report.open_existing(url), ("model",))
    console.print("\nNext: [bold]tokentrail report --by customer[/bold], [bold]tokentrail calls[/bold], "
                  "[bold]tokentrail report --by workflow[/bold]")


if __name__ == "__main__":
    main()
