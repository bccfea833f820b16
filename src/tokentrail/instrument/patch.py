"""The two ways an adapter hooks into a library, each undoable: wrap a method, or install a hook.

An adapter's `PATCHES` is a tuple of these. The registry applies them when
the library is imported (or at once, if it already is) and keeps what each
returned to undo it on `uninstrument()`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["MethodPatch", "Hook", "Undo"]

Undo = Callable[[], None]


class MethodPatch:
    """Replace `module.owner.attribute` with a wrapt wrapper that `make(adapter)` builds.

    A library release without that attribute is skipped (nothing to wrap
    there); a missing module or class raises, and the registry then leaves the
    whole library as it was, with one log line.
    """

    __slots__ = ("module", "owner", "attribute", "make")

    def __init__(self, module: str, owner: str, attribute: str, make: Callable[[Any], Callable[..., Any]]) -> None:
        self.module, self.owner, self.attribute, self.make = module, owner, attribute, make

    def apply(self, adapter: Any) -> Undo | None:
        import wrapt

        owner = getattr(importlib.import_module(self.module), self.owner)
        original = owner.__dict__.get(self.attribute)
        if original is None:
            return None
        setattr(owner, self.attribute, wrapt.FunctionWrapper(original, self.make(adapter)))
        return lambda: setattr(owner, self.attribute, original)

    def __repr__(self) -> str:
        return f"MethodPatch({self.module}.{self.owner}.{self.attribute})"


class Hook:
    """Run `install(adapter)` once `module` is imported; it returns how to undo it (a callback
    registered in a framework's own callback list, say)."""

    __slots__ = ("module", "install")

    def __init__(self, module: str, install: Callable[[Any], Undo | None]) -> None:
        self.module, self.install = module, install

    def apply(self, adapter: Any) -> Undo | None:
        importlib.import_module(self.module)
        return self.install(adapter)

    def __repr__(self) -> str:
        return f"Hook({self.module})"
