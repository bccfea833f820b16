"""Settings: one table of options, read from arguments, environment, file and defaults.

Precedence: arguments to `init()` > `TOKENTRAIL_*` environment variables >
`tokentrail.toml` in the working directory (or the file `config=` /
`TOKENTRAIL_CONFIG` names) or `[tool.tokentrail]` in `pyproject.toml` >
defaults. Every option has all three spellings: `queue_size=` /
`TOKENTRAIL_QUEUE_SIZE` / `queue_size = ...`.

A bad value raises `ConfigError` at `init()`, naming the option, where the
value came from and what is accepted; an unknown key in the file is an error
too (a typo should not silently fall back to a default).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .budget import parse_budgets
from .errors import ConfigError
from .pricing import parse_model_aliases, parse_prices
from .sinks import DEFAULT_STORE, exporter_names, normalize_exporter, normalize_store_url

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Settings", "load_settings", "OPTIONS", "DEFAULT_STORE", "UNSET"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    store: str | None = DEFAULT_STORE
    exporters: tuple[Any, ...] = ()
    capture_content: bool = False
    content_max_chars: int = 500
    queue_size: int = 100_000
    batch_size: int = 2_000
    flush_interval: float = 0.5
    shutdown_timeout: float = 5.0
    enabled: bool = True
    prices: Mapping[str, Any] = field(default_factory=dict)
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    budgets: tuple[Any, ...] = ()
    instrument: bool | tuple[str, ...] = True
    retention: tuple[float, bool] | None = None  # (seconds to keep, roll up instead of only deleting)
    # option name -> where its value came from ("default", "argument", "environment variable X", a file)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def _bad(name: str, source: str, value: Any, accepted: str) -> ConfigError:
    return ConfigError(f"tokentrail: bad value for `{name}` from {source}: {value!r}; accepted: {accepted}")


def _parse_bool(name: str, value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(name, source, value, "true or false (1/0, yes/no, on/off)")


def _number(kind: type, minimum: float, unit: str = "") -> Callable[[str, Any, str], Any]:
    accepted = f"{'a whole number' if kind is int else 'a number'} >= {minimum}{unit}"

    def parse(name: str, value: Any, source: str) -> Any:
        try:
            if isinstance(value, bool):
                raise ValueError
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise _bad(name, source, value, accepted) from None
        if number < minimum or not math.isfinite(number):
            raise _bad(name, source, value, accepted)
        return number

    return parse


def _parse_store(name: str, value: Any, source: str) -> str | None:
    try:
        return normalize_store_url(value)
    except ValueError as exc:
        raise _bad(name, source, value, str(exc)) from None


def _parse_exporters(name: str, value: Any, source: str) -> tuple[Any, ...]:
    accepted = f"a list of {', '.join(repr(n) for n in exporter_names())}, or objects with an export(records) method"
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    try:
        items = list(value)
    except TypeError:
        raise _bad(name, source, value, accepted) from None
    out: list[Any] = []
    for item in items:
        try:
            out.append(normalize_exporter(item))
        except ValueError:
            raise _bad(name, source, item, accepted) from None
    return tuple(out)


def _parse_instrument(name: str, value: Any, source: str) -> bool | tuple[str, ...]:
    # Which names exist is the adapter registry's business: `init()` checks them there.
    accepted = "true, false, or a list of SDK names"
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) for v in value):
        raise _bad(name, source, value, accepted)
    return tuple(value)


def _parse_retention(name: str, value: Any, source: str) -> tuple[float, bool] | None:
    """`90d` (delete calls older than 90 days), `90d rollup` (keep them as daily aggregates), or off."""
    accepted = "a duration such as 90d, 12w or 720h, optionally followed by `rollup`; or off"
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none", "false")):
        return None
    if not isinstance(value, str):
        raise _bad(name, source, value, accepted)
    words = value.split()
    rollup = len(words) == 2 and words[1].lower() == "rollup"
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h|d|w)", words[0].lower()) if words and (len(words) == 1 or rollup) else None
    if match is None or float(match.group(1)) <= 0:
        raise _bad(name, source, value, accepted)
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return seconds, rollup


# option -> parser(name, value, source) -> value
OPTIONS: dict[str, Callable[[str, Any, str], Any]] = {
    "store": _parse_store,
    "exporters": _parse_exporters,
    "capture_content": _parse_bool,
    "content_max_chars": _number(int, 0),
    "queue_size": _number(int, 1),
    "batch_size": _number(int, 1),
    "flush_interval": _number(float, 0.001, " seconds"),
    "shutdown_timeout": _number(float, 0, " seconds"),
    "enabled": _parse_bool,
    "prices": parse_prices,
    "model_aliases": parse_model_aliases,
    "budgets": parse_budgets,
    "instrument": _parse_instrument,
    "retention": _parse_retention,
}
# Tables (not scalars): taken from the file as TOML tables, from the environment as JSON.
_TABLE_OPTIONS = {"prices", "model_aliases", "budgets"}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"tokentrail: cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tokentrail: the config file {path} is not valid TOML: {exc}") from None


def _file_options(config: Any, env: Mapping[str, str], cwd: Path) -> tuple[dict[str, Any], str | None]:
    """(options, description of where they came from) from the config file in effect, if any."""
    from pathlib import Path
    if isinstance(config, Mapping):
        return dict(config), "the config= mapping"
    explicit = config if config is not None else env.get("TOKENTRAIL_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_absolute():
            path = cwd / path
        if not path.is_file():
            where = "config=" if config is not None else "TOKENTRAIL_CONFIG"
            raise ConfigError(f"tokentrail: the config file {path} named by {where} does not exist")
        data = _load_toml(path)
        if path.name == "pyproject.toml":
            return data.get("tool", {}).get("tokentrail", {}), f"{path} [tool.tokentrail]"
        return data, str(path)
    own = cwd / "tokentrail.toml"
    if own.is_file():
        return _load_toml(own), str(own)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        section = _load_toml(pyproject).get("tool", {}).get("tokentrail")
        if section is not None:
            return section, f"{pyproject} [tool.tokentrail]"
    return {}, None


def _json(name: str, text: str, source: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"tokentrail: bad value for `{name}` from {source}: not valid JSON ({exc})") from None


def load_settings(
    arguments: Mapping[str, Any] | None = None,
    *,
    config: Any = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Settings from arguments > environment > config file > defaults (see the module docstring)."""
    from pathlib import Path  # here, not at the top: `import tokentrail` stays light
    env = os.environ if env is None else env
    arguments = {k: v for k, v in (arguments or {}).items() if v is not UNSET}
    unknown = set(arguments) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"tokentrail: unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
    file_values, file_source = _file_options(config, env, Path(cwd) if cwd else Path.cwd())
    if not isinstance(file_values, Mapping):
        raise ConfigError(f"tokentrail: {file_source} must be a table of options, not {type(file_values).__name__}")
    unknown = set(file_values) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"tokentrail: unknown option(s) {sorted(unknown)} in {file_source}; known: {sorted(OPTIONS)}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, parse in OPTIONS.items():
        env_name = "TOKENTRAIL_" + name.upper()
        if name in arguments:
            raw, source = arguments[name], "argument"
        elif env.get(env_name, "").strip():  # set and not empty: `TOKENTRAIL_STORE=` means "not set"
            raw, source = env[env_name], f"environment variable {env_name}"
            if name in _TABLE_OPTIONS:
                raw = _json(name, raw, source)
        elif name in file_values:
            raw, source = file_values[name], file_source
        else:
            sources[name] = "default"
            continue
        values[name] = parse(name, raw, source)
        sources[name] = source
    return replace(Settings(), **values, sources=sources)


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


# Marks an init() argument the caller did not pass, so lower layers may supply it.
UNSET: Any = _Unset()
