"""Who a call was for, and where it sits: attribution, workflow and span contextvars.

Everything here lives in `contextvars`, so each `asyncio` task keeps its own
attribution, and a thread sees the attribution of the block it was started in
only when it runs in a copy of that context (`contextvars.copy_context().run`,
or `asyncio.to_thread`, which copies for you). A plain `threading.Thread`
starts with an empty context — that is Python's rule, not ours.

The calling thread only *reads* these variables (a few hundred nanoseconds);
the pipeline's worker turns the snapshot into record fields.
"""

from __future__ import annotations

import copy
import functools
import inspect
import random
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterable

__all__ = ["attributes", "current_attributes", "ATTRIBUTION_FIELDS", "new_trace_id", "new_span_id", "readers",
           "install_readers", "clear_readers"]

ATTRIBUTION_FIELDS = ("user_id", "customer_id", "feature", "session_id")

# The merged attribution of the enclosing `attributes()` blocks: a dict that is
# never mutated once set, so a snapshot is just a reference.
attributes_var: ContextVar[dict[str, Any] | None] = ContextVar("tokentrail.attributes", default=None)
# The innermost open span (an LLM span, tool span or workflow run): parent of the next one.
current_span: ContextVar[Any] = ContextVar("tokentrail.span", default=None)
# The innermost workflow run.
current_workflow: ContextVar[Any] = ContextVar("tokentrail.workflow", default=None)

_rand = random.getrandbits


def new_trace_id(wall_ns: int | None = None) -> int:
    """A trace id that begins with its millisecond (48 bits, as record ids do) and ends in 80 random bits.

    Time first, so the stores' index on `trace_id` grows at its end: a random id puts each record on a
    random page of that index, and a batch's commit then writes a page per record (31 → 18 pages per
    20 calls measured). The W3C Trace Context "random" flag needs the rightmost 7 bytes random, and
    OpenTelemetry's ratio sampler reads the low 64 bits: both hold (AWS X-Ray ids lead with time too).
    """
    return ((time.time_ns() if wall_ns is None else wall_ns) // 1_000_000) << 80 | _rand(80)


def new_span_id() -> int:
    return _rand(64) or 1


class Readers:
    """Context that lives in another library, read on the calling thread as each record opens.

    The readers are functions the sinks provide (a sink cannot import this module) and `init()`
    installs (`install_readers(sinks)`); while none is installed nothing is read.

    - `parent() -> (trace_id, span_id) | None`: the application's active span (the `otel` sink's
      `read_parent`), the parent of a record opened with no tokentrail span around it.
    - `labels`: functions `() -> dict | None` (the `mlflow` sink's `read_labels`: the active run's
      id), merged into the record's metadata by `read_labels()`.

    A reader that raises is ignored: nothing reaches the application.
    """

    __slots__ = ("parent", "labels")

    def __init__(self) -> None:
        self.parent: Callable[[], tuple[int, int] | None] | None = None
        self.labels: tuple[Callable[[], dict[str, Any] | None], ...] = ()

    def install(self, sinks: Iterable[Any]) -> None:
        sinks = list(sinks)
        parents = [s.read_parent for s in sinks if callable(getattr(s, "read_parent", None))]
        self.parent = _guarded(parents[0]) if parents else None
        self.labels = tuple(s.read_labels for s in sinks if callable(getattr(s, "read_labels", None)))

    def read_labels(self) -> dict[str, Any] | None:
        merged: dict[str, Any] | None = None
        for reader in self.labels:
            try:
                found = reader()
            except Exception:  # noqa: BLE001 - another library's state: never raise into the app
                continue
            if found:
                merged = {**merged, **found} if merged else dict(found)
        return merged


def _guarded(reader: Callable[[], Any]) -> Callable[[], Any]:
    def read() -> Any:
        try:
            return reader()
        except Exception:  # noqa: BLE001 - another library's state: never raise into the app
            return None

    return read


readers = Readers()


def install_readers(sinks: Iterable[Any]) -> None:
    """Install the readers `sinks` provide (`read_parent`, `read_labels`), replacing those installed before."""
    readers.install(sinks)


def clear_readers() -> None:
    readers.install(())


def as_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    if isinstance(tags, dict):
        return tuple(f"{k}:{v}" for k, v in tags.items())
    try:
        return tuple(str(t) for t in tags)
    except TypeError:  # one value that is not a list of them (tags=True, tags=3): one tag
        return (str(tags),)


def merge_attributes(base: dict[str, Any] | None, fields: dict[str, Any], tags: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """`base` with `fields` laid over it: inner values win, tags are added, metadata merged."""
    merged = dict(base) if base else {}
    for name, value in fields.items():
        if value is not None:
            merged[name] = value if isinstance(value, str) else str(value)
    new_tags = as_tags(tags)
    if new_tags:
        old = merged.get("tags", ())
        merged["tags"] = old + tuple(t for t in new_tags if t not in old)
    if metadata:
        merged["metadata"] = {**merged.get("metadata", {}), **metadata}
    return merged


def reset_quietly(var: ContextVar[Any], token: Any) -> None:
    """`var.reset(token)`, except when the block is left in another context than it was entered
    in (a generator resumed elsewhere): Python refuses that reset, and it must not reach the app."""
    try:
        var.reset(token)
    except ValueError:
        pass


def current_attributes() -> dict[str, Any]:
    """The attribution in effect here (a copy): `user_id`, `customer_id`, `feature`, `session_id`, `tags`, `metadata`."""
    found = attributes_var.get()
    return dict(found) if found else {}


class ContextBlock:
    """Base of context managers that also decorate sync, async and generator functions.

    Subclasses implement `_enter()` -> (state, value for `as`) and
    `_exit(state, exc)`. Each entry keeps its own state, so one object can be
    entered again while open; a decorated function gets a fresh copy per call,
    so one decorator is safe across threads and tasks.
    """

    def _copy(self) -> ContextBlock:
        fresh = copy.copy(self)
        fresh.__dict__.pop("_states", None)
        return fresh

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return decorate(func, self._copy)

    def __enter__(self) -> Any:
        state, value = self._enter()
        self.__dict__.setdefault("_states", []).append(state)
        return value

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(self._states.pop(), exc)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _enter(self) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise TypeError("subclasses define _enter")

    def _exit(self, state: Any, exc: BaseException | None) -> None:  # pragma: no cover - abstract
        raise TypeError("subclasses define _exit")


def decorate(func: Callable[..., Any], make_block: Callable[[], Any]) -> Callable[..., Any]:
    """Run each call of `func` (sync, async, generator or async generator) inside `make_block()`."""
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_block():
                async for item in func(*args, **kwargs):
                    yield item

        return agen_wrapper
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_block():
                return await func(*args, **kwargs)

        return async_wrapper
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_block():
                return (yield from func(*args, **kwargs))

        return gen_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with make_block():
            return func(*args, **kwargs)

    return wrapper


class attributes(ContextBlock):
    """Label every call inside the block (or the decorated function) with who and what it was for.

    Nested blocks merge, the inner value winning; `tags` accumulate; extra
    keyword arguments become `metadata`. Non-string ids (an int user id) are
    stored as strings.

        with tokentrail.attributes(user_id="u-42", customer_id="acme", feature="search"):
            client.chat.completions.create(...)
    """

    def __init__(
        self,
        user_id: Any = None,
        customer_id: Any = None,
        feature: Any = None,
        session_id: Any = None,
        tags: Iterable[str] | str | None = None,
        **metadata: Any,
    ) -> None:
        self._fields = {"user_id": user_id, "customer_id": customer_id, "feature": feature, "session_id": session_id}
        self._tags = tags
        self._metadata = metadata

    def _enter(self) -> tuple[Any, Any]:
        merged = merge_attributes(attributes_var.get(), self._fields, self._tags, self._metadata)
        return attributes_var.set(merged), dict(merged)

    def _exit(self, token: Any, exc: BaseException | None) -> None:
        reset_quietly(attributes_var, token)
