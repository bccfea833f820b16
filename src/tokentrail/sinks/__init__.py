"""Where records go: stores (by URL scheme) and exporters (by name), through one registry.

A *sink* is any object with `export(records)` (it may also have `close()` and
`after_fork()`); the pipeline calls `export` from a thread of the sink's own
(each sink has its own bounded buffer, so a slow one delays no other), with a
batch of `LLMCall`, `ToolCall`, `Outcome` and `Span` records mixed. Whatever
`export` raises is caught and the batch retried (a few times, then counted
as failed for that sink); a sink that wrote all but some records it can never
take raises `tokentrail.errors.RecordsRejected(count)` so only those are
counted lost. A sink with `write_stats(rows)` (the stores) is handed the
process's losses per sink to keep, and `losses()` reads them back for
`tokentrail doctor`. A *store* is a sink that can also be read (`Store`
below). Config, `init()`, `open_store()` and the reports all find them here:

    register_store("sqlite", "tokentrail.sinks.sqlite:SQLiteStore")     # sqlite:///path.db
    register_exporter("jsonl", "tokentrail.sinks.jsonl:JSONLSink", argument=True)   # jsonl:PATH

Factories are named by "module:attribute" and imported only when used, so an
optional dependency (psycopg, opentelemetry) costs nothing until asked for.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from ..errors import ConfigError

__all__ = ["Sink", "Store", "register_store", "register_exporter", "store_schemes", "exporter_names",
           "normalize_store_url", "normalize_exporter", "open_store", "make_exporter", "DEFAULT_STORE"]

DEFAULT_STORE = "sqlite:///tokentrail.db"


@runtime_checkable
class Sink(Protocol):
    def export(self, records: Sequence[Any]) -> None: ...


@runtime_checkable
class Store(Sink, Protocol):
    """A sink that can be read back: what `open_store()` returns and the reports use."""

    url: str

    def calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]: ...

    def tool_calls(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]: ...

    def outcomes(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]: ...

    def summary(self, group_by: Sequence[str] | str = ("model",), since: Any = None, until: Any = None, where: Any = None) -> list[dict[str, Any]]: ...

    def spans(self, since: Any = None, until: Any = None, where: Any = None, limit: int | None = 100, order: str = "newest") -> list[Any]: ...

    def calls_after(self, cursor: int = 0, where: Any = None, limit: int = 1000) -> tuple[list[Any], int]: ...

    def close(self) -> None: ...


# scheme -> (factory(url), example URLs) ; name -> (factory(argument) or factory(), argument's name or "")
_stores: dict[str, tuple[Any, str]] = {
    "sqlite": ("tokentrail.sinks.sqlite:SQLiteStore", "sqlite:///relative/path.db, sqlite:////absolute/path.db"),
    "postgresql": ("tokentrail.sinks.postgres:PostgresStore", "postgresql://user:password@host:5432/database"),
}
_exporters: dict[str, tuple[Any, str]] = {
    "console": ("tokentrail.sinks.console:ConsoleSink", ""),
    "jsonl": ("tokentrail.sinks.jsonl:JSONLSink", "PATH"),
    "otel": ("tokentrail.sinks.otlp:OTelSink", ""),
    "mlflow": ("tokentrail.sinks.mlflow:MLflowSink", ""),
}
_SCHEME_ALIASES = {"postgres": "postgresql"}


def register_store(scheme: str, factory: str | Callable[[str], Any], example: str = "") -> None:
    """Make `scheme://...` URLs open with `factory(url)` ("module:attribute" or a callable);
    `example` is shown to users who mistype a URL."""
    _stores[scheme.lower()] = (factory, example or f"{scheme.lower()}://...")


def register_exporter(name: str, factory: str | Callable[..., Any], *, argument: str = "") -> None:
    """Make `name` in `exporters` build `factory()`; with `argument="PATH"`, `name:PATH` builds `factory(PATH)`."""
    _exporters[name.lower()] = (factory, argument)


def store_schemes() -> tuple[str, ...]:
    return tuple(_stores)


def exporter_names() -> tuple[str, ...]:
    """How each exporter is written in `exporters`: `console`, `jsonl:PATH`, …"""
    return tuple(f"{name}:{argument}" if argument else name for name, (_, argument) in _exporters.items())


def _load(factory: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(factory):
        return factory
    module, _, attribute = factory.partition(":")
    return getattr(importlib.import_module(module), attribute)


def normalize_store_url(value: Any) -> str | None:
    """A store URL from what users write: a URL of a registered scheme, a file path
    (a SQLite file), or none/off/empty (no store). ValueError says what is accepted."""
    accepted = f"{', '.join(example for _, example in _stores.values())}, a file path, or none"
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off", "false")):
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(accepted)
    text = os.fspath(value).strip()
    if "://" not in text:
        return "sqlite:///" + text
    scheme, rest = text.split("://", 1)
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())
    if scheme not in _stores:
        raise ValueError(accepted)
    return f"{scheme}://{rest}"


def normalize_exporter(spec: Any) -> Any:
    """An `exporters` entry checked against the registry (a name, `name:ARG`, or an object with `export`)."""
    if not isinstance(spec, str):
        if callable(getattr(spec, "export", None)):
            return spec
        raise ValueError(f"not an exporter: {spec!r}")
    name, sep, argument = spec.strip().partition(":")
    entry = _exporters.get(name.lower())
    if entry is None or bool(entry[1]) != bool(argument.strip()):
        raise ValueError(f"unknown exporter {spec!r}")
    return f"{name.lower()}:{argument.strip()}" if entry[1] else name.lower()


def open_store(url: str = DEFAULT_STORE) -> Any:
    """The store at `url`, to read (`.calls()`, `.summary()`) or write (`.export()`)."""
    try:
        normalized = normalize_store_url(url)
    except ValueError as exc:
        raise ConfigError(f"tokentrail: open_store() cannot open {url!r}: expected {exc}") from None
    if normalized is None:
        raise ConfigError(f"tokentrail: open_store() needs a store URL such as {DEFAULT_STORE}")
    scheme = normalized.split("://", 1)[0]
    return _load(_stores[scheme][0])(normalized)


def make_exporter(spec: Any) -> Any:
    """A sink from an `exporters` entry: a registered name (`console`, `jsonl:PATH`, …) or an object with `export`."""
    if not isinstance(spec, str):
        return spec
    name, _, argument = spec.partition(":")
    entry = _exporters.get(name.lower())
    if entry is None:
        raise ConfigError(f"tokentrail: unknown exporter {spec!r}; known: {', '.join(exporter_names())}")
    factory, takes_argument = entry
    build = _load(factory)
    return build(argument) if takes_argument else build()
