"""The registry of SDK adapters: patch and restore them by name.

    tokentrail.available()      # {"openai": "3.54.0", "anthropic": "2.12.0"} — installed, and whether supported
    tokentrail.instrument()     # patch every installed, supported SDK (now, or when it is imported)
    tokentrail.instrumented()   # {"openai": "3.54.0", ...} — patched now
    tokentrail.uninstrument()   # restore the original methods

`tokentrail.instrument` is both this package and the public function: the
package's module object is callable (`tokentrail.instrument("openai")` calls
`instrument()`), so `import tokentrail.instrument.openai` works as well.

Patching is idempotent and reversible. An SDK imported after `instrument()`
is patched on import (a post-import hook), which is what `import
tokentrail.auto` relies on. An installed SDK older than its adapter supports
is left alone, with one log line.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

from .. import log

__all__ = ["instrument", "uninstrument", "instrumented", "available", "status", "register", "ADAPTERS"]

# name -> adapter module. One module per library: its spec (NAME, DISTRIBUTION, MIN_VERSION, PATCHES)
# and its pure request/response/chunk functions (see request_point, method_point, callback_point).
ADAPTERS = {
    "openai": "tokentrail.instrument.openai",
    "anthropic": "tokentrail.instrument.anthropic",
    "groq": "tokentrail.instrument.groq",
    "ollama": "tokentrail.instrument.ollama",
    "mistralai": "tokentrail.instrument.mistralai",
    "cohere": "tokentrail.instrument.cohere",
    "google_genai": "tokentrail.instrument.google_genai",
    "bedrock": "tokentrail.instrument.bedrock",
    "langchain": "tokentrail.instrument.langchain",
    "llama_index": "tokentrail.instrument.llama_index",
    "litellm": "tokentrail.instrument.litellm",
    "dspy": "tokentrail.instrument.dspy",
}

_lock = threading.RLock()
_wanted: set[str] = set()  # instrument() asked for these; patched as soon as their library is imported
_hooked: set[str] = set()  # post-import hooks registered
_patched: dict[str, list[Any]] = {}  # name -> how to undo each patch applied


def register(name: str, module: Any) -> None:
    """Add an adapter under `name`: a module (or its import path) with NAME, DISTRIBUTION, MIN_VERSION,
    PATCHES, `call_of` and `provider_of`. `DISTRIBUTION = None` for your own code (no version gate)."""
    ADAPTERS[name] = module


def _adapter(name: str) -> Any:
    target = ADAPTERS[name]
    return target if isinstance(target, types.ModuleType) else importlib.import_module(target)


def _installed(module: Any) -> tuple[str | None, bool]:
    """(installed version or None, whether it is supported) of an adapter's library."""
    if module.DISTRIBUTION is None:  # the application's own code: always there, always supported
        return "local", True
    version = _version(module.DISTRIBUTION)
    return version, version is not None and _parse(version) >= module.MIN_VERSION


def _version(distribution: str) -> str | None:
    from importlib import metadata  # ~15 ms to import: only when asked

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _check_names(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in ADAPTERS]
    if unknown:
        raise ValueError(f"tokentrail: no adapter for {unknown}; known: {', '.join(ADAPTERS)}")
    return names or tuple(ADAPTERS)


def _minimum(module: Any) -> str:
    return ".".join(map(str, module.MIN_VERSION))


def available() -> dict[str, str]:
    """Installed libraries tokentrail has an adapter for: name -> version, marked when the version is too old."""
    out = {}
    for name in ADAPTERS:
        module = _adapter(name)
        version, supported = _installed(module)
        if version is None:
            continue
        out[name] = version if supported else f"{version} (unsupported: needs >= {_minimum(module)})"
    return out


def status() -> list[dict[str, Any]]:
    """Every library tokentrail has an adapter for: its package, the minimum version, the installed
    version (None when not installed), whether that version is supported, and whether it is patched now."""
    rows = []
    for name in ADAPTERS:
        module = _adapter(name)
        version, supported = _installed(module)
        rows.append({"name": name, "package": module.DISTRIBUTION, "minimum": _minimum(module), "installed": version,
                     "supported": supported, "patched": name in _patched})
    return rows


def instrumented() -> dict[str, str]:
    """Libraries patched now: name -> version."""
    with _lock:
        return {name: _adapter(name).version for name in _patched}


def instrument(*names: str) -> dict[str, str]:
    """Patch the named libraries (all known when none are named); returns `instrumented()`.

    Not installed: skipped. Too old: skipped with one log line. Not imported
    yet: patched when the application imports it.
    """
    import wrapt

    for name in _check_names(names):
        module = _adapter(name)
        version, supported = _installed(module)
        if version is None:
            continue
        if not supported:
            log.warn_once(f"instrument.version.{name}", "tokentrail: %s %s is older than the supported %s; not instrumented",
                          name, version, _minimum(module))
            continue
        module.version = version
        with _lock:
            _wanted.add(name)
            first = name not in _hooked
            _hooked.add(name)
        # The module of the first patch: hooking a shared namespace package (google) would fire on any of it.
        target = module.PATCHES[0].module
        if first:
            wrapt.register_post_import_hook(lambda _module, name=name: _patch(name), target)
        elif target in sys.modules:
            _patch(name)
    return instrumented()


def _patch(name: str) -> None:
    """Apply the adapter's patches (idempotent); runs on import of the library, or at once if it is imported."""
    with _lock:
        if name not in _wanted or name in _patched:
            return
        module = _adapter(name)
        undo: list[Any] = []
        try:
            for patch in module.PATCHES:
                done = patch.apply(module)
                if done is not None:
                    undo.append(done)
        except Exception as exc:  # noqa: BLE001 - a library we cannot patch must still work
            for step in reversed(undo):
                step()
            log.error_once(f"instrument.{name}", f"tokentrail: could not instrument {name} (its internals moved?); "
                                                 "it is left as it was", exc)
            return
        _patched[name] = undo


def uninstrument(*names: str) -> None:
    """Restore the original methods (and remove the hooks) of the named libraries (all when none are named)."""
    with _lock:
        for name in _check_names(names):
            _wanted.discard(name)
            for step in reversed(_patched.pop(name, ())):
                step()


class _CallableModule(types.ModuleType):
    """This package, callable as the public `instrument()` function."""

    def __call__(self, *names: str) -> dict[str, str]:
        return instrument(*names)


sys.modules[__name__].__class__ = _CallableModule
