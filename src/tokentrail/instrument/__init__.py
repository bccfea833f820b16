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

__all__ = ["instrument", "uninstrument", "instrumented", "available", "ADAPTERS"]

# name -> adapter module
ADAPTERS = {
    "openai": "tokentrail.instrument.openai",
    "anthropic": "tokentrail.instrument.anthropic",
}

_lock = threading.RLock()
_wanted: set[str] = set()  # instrument() asked for these; patched as soon as their SDK is imported
_hooked: set[str] = set()  # post-import hook registered
_patched: dict[str, list[tuple[type, str, Any]]] = {}  # name -> (class, attribute, original)


def _adapter(name: str) -> Any:
    return importlib.import_module(ADAPTERS[name])


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


def available() -> dict[str, str]:
    """Installed SDKs tokentrail has an adapter for: name -> version, marked when the version is too old."""
    out = {}
    for name in ADAPTERS:
        module = _adapter(name)
        version = _version(module.DISTRIBUTION)
        if version is None:
            continue
        minimum = ".".join(map(str, module.MIN_VERSION))
        out[name] = version if _parse(version) >= module.MIN_VERSION else f"{version} (unsupported: needs >= {minimum})"
    return out


def instrumented() -> dict[str, str]:
    """SDKs patched now: name -> version."""
    with _lock:
        return {name: _adapter(name).version for name in _patched}


def instrument(*names: str) -> dict[str, str]:
    """Patch the named SDKs (all known when none are named); returns `instrumented()`.

    Not installed: skipped. Too old: skipped with one log line. Not imported
    yet: patched when the application imports it.
    """
    import wrapt

    for name in _check_names(names):
        module = _adapter(name)
        version = _version(module.DISTRIBUTION)
        if version is None:
            continue
        if _parse(version) < module.MIN_VERSION:
            log.warn_once(f"instrument.version.{name}", "tokentrail: %s %s is older than the supported %s; not instrumented",
                          name, version, ".".join(map(str, module.MIN_VERSION)))
            continue
        module.version = version
        with _lock:
            _wanted.add(name)
            first = name not in _hooked
            _hooked.add(name)
        if first:
            wrapt.register_post_import_hook(lambda _module, name=name: _patch(name), module.PATCHES[0][0].split(".")[0])
        elif module.PATCHES[0][0] in sys.modules:
            _patch(name)
    return instrumented()


def _patch(name: str) -> None:
    """Wrap the adapter's methods (idempotent); runs on import of the SDK, or at once if it is imported."""
    from ._wrap import count_retry, keep_raw, request_wrappers

    import wrapt

    with _lock:
        if name not in _wanted or name in _patched:
            return
        module = _adapter(name)
        sync_request, async_request = request_wrappers(module)
        by_kind = {"sync": sync_request, "async": async_request, "retry": count_retry, "raw": keep_raw}
        done: list[tuple[type, str, Any]] = []
        try:
            for module_name, class_name, attribute, kind in module.PATCHES:
                owner = getattr(importlib.import_module(module_name), class_name)
                original = owner.__dict__.get(attribute)
                if original is None:
                    continue  # an SDK release without this method: nothing to count there
                setattr(owner, attribute, wrapt.FunctionWrapper(original, by_kind[kind]))
                done.append((owner, attribute, original))
        except Exception as exc:  # noqa: BLE001 - an SDK we cannot patch must still work
            for owner, attribute, original in done:
                setattr(owner, attribute, original)
            log.error_once(f"instrument.{name}", f"tokentrail: could not instrument {name}; it is left as it was", exc)
            return
        _patched[name] = done


def uninstrument(*names: str) -> None:
    """Restore the original methods of the named SDKs (all when none are named)."""
    with _lock:
        for name in _check_names(names):
            _wanted.discard(name)
            for owner, attribute, original in _patched.pop(name, ()):
                setattr(owner, attribute, original)


class _CallableModule(types.ModuleType):
    """This package, callable as the public `instrument()` function."""

    def __call__(self, *names: str) -> dict[str, str]:
        return instrument(*names)


sys.modules[__name__].__class__ = _CallableModule
