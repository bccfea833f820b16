"""Where records go: stores (SQLite; PostgreSQL later) and exporters (JSONL, console, any object).

A sink is any object with `export(records)`; it may also have `close()` and
`after_fork()`. The pipeline calls `export` from its worker thread only, with
a batch of `LLMCall`, `ToolCall` and `Outcome` records mixed.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

__all__ = ["open_store", "make_exporter"]


def open_store(url: str = "sqlite:///tokentrail.db") -> Any:
    """The store at `url`, to read (`.calls()`, `.summary()`) or write (`.export()`)."""
    from ..config import _parse_store

    normalized = _parse_store("store", url, "open_store()")
    if normalized is None:
        raise ConfigError("tokentrail: open_store() needs a store URL such as sqlite:///tokentrail.db")
    from .sqlite import SQLiteStore

    return SQLiteStore(normalized)


def make_exporter(spec: Any) -> Any:
    """A sink from an `exporters` entry: `console`, `jsonl:PATH`, or an object with `export`."""
    if not isinstance(spec, str):
        return spec
    if spec == "console":
        from .console import ConsoleSink

        return ConsoleSink()
    if spec.startswith("jsonl:"):
        from .jsonl import JSONLSink

        return JSONLSink(spec[len("jsonl:"):])
    raise ConfigError(f"tokentrail: unknown exporter {spec!r}")
