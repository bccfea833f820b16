"""The method point: SDKs with another single choke point (mistralai, google-genai, botocore, cohere, ollama).

An adapter declares a table of the methods every call of the SDK passes
through, and one `call_of(instance, args, kwargs) -> Call | None` that reads
a call's arguments (which endpoint, the body, the model, whether it streams):

    PATCHES = (
        method("ollama._client", "Client", "_request", "sync"),
        method("ollama._client", "AsyncClient", "_request", "async"),
    )

The core does the rest (sdkcall.call_wrappers). A streamed result gets a
proxy (wrapt's `ObjectProxy`: `isinstance` still sees the SDK's type) that
keeps each item (`Endpoint.chunk(item)` says what to keep, default the item),
times the first, and finishes the record when the stream is exhausted, fails,
is closed, leaves its `with` block, or is garbage-collected unfinished. A lazy
stream (the request starts on the first iteration) is timed from the call.
An SDK whose stream is some other object passes its own `on_stream`.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Callable

from .patch import MethodPatch
from .sdkcall import SDKCall, call_wrappers, finish_stream

__all__ = ["method", "proxy_stream"]

_perf_ns = time.perf_counter_ns


def method(module: str, owner: str, attribute: str, mode: str = "sync",
           on_stream: Callable[[SDKCall, Any], Any] | None = None) -> MethodPatch:
    """Patch `module.owner.attribute`, a plain (`sync`) or `async` method, with the shared call wrapper."""
    if mode not in ("sync", "async"):
        raise ValueError(f"mode must be 'sync' or 'async', not {mode!r}")
    index = 0 if mode == "sync" else 1

    def make(adapter: Any) -> Callable[..., Any]:
        return call_wrappers(adapter, on_stream or proxy_stream)[index]

    return MethodPatch(module, owner, attribute, make)


def proxy_stream(call: SDKCall, result: Any) -> Any:
    """The default `on_stream`: a recording proxy around a sync or async iterable result."""
    import wrapt  # noqa: F401 - imported here, with the patches, never by `import tokentrail`

    call.chunks = []
    if hasattr(result, "__anext__") or hasattr(result, "__aiter__"):
        stream = _async_proxy()(result, call)
    elif hasattr(result, "__next__") or hasattr(result, "__iter__"):
        stream = _sync_proxy()(result, call)
    else:  # not a stream we can follow: record what we have
        call.chunks = None
        call.result = result
        call.finish()
        return result
    weakref.finalize(stream, finish_stream, call, None, True)  # dropped before it was read to the end
    return stream


def _keep(call: SDKCall, item: Any) -> None:
    kept = call.chunks
    if not kept:
        call.first_chunk_ns = _perf_ns()
    chunk = call.endpoint.chunk
    kept.append(item if chunk is None else chunk(item))


_classes: dict[str, type] = {}


def _sync_proxy() -> type:
    cls = _classes.get("sync")
    if cls is None:
        import wrapt

        class SyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
            def __init__(self, wrapped: Any, call: SDKCall) -> None:
                super().__init__(wrapped)
                self._self_call = call
                self._self_iter = None

            def __iter__(self) -> Any:
                return self

            def __next__(self) -> Any:
                call = self._self_call
                try:
                    if self._self_iter is None:
                        self._self_iter = iter(self.__wrapped__)
                    item = next(self._self_iter)
                except StopIteration:
                    finish_stream(call)
                    raise
                except BaseException as exc:
                    finish_stream(call, exc)
                    raise
                _keep(call, item)
                return item

            def close(self) -> None:
                try:
                    close = getattr(self.__wrapped__, "close", None)
                    if close is not None:
                        close()
                finally:
                    finish_stream(self._self_call, incomplete=True)

            def __enter__(self) -> Any:
                enter = getattr(self.__wrapped__, "__enter__", None)
                if enter is not None:
                    enter()
                return self

            def __exit__(self, *exc: Any) -> Any:
                try:
                    leave = getattr(self.__wrapped__, "__exit__", None)
                    return leave(*exc) if leave is not None else None
                finally:
                    finish_stream(self._self_call, incomplete=True)

        cls = _classes["sync"] = SyncStream
    return cls


def _async_proxy() -> type:
    cls = _classes.get("async")
    if cls is None:
        import wrapt

        class AsyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
            def __init__(self, wrapped: Any, call: SDKCall) -> None:
                super().__init__(wrapped)
                self._self_call = call
                self._self_iter = None

            def __aiter__(self) -> Any:
                return self

            async def __anext__(self) -> Any:
                call = self._self_call
                try:
                    if self._self_iter is None:
                        wrapped = self.__wrapped__
                        self._self_iter = wrapped.__aiter__() if hasattr(wrapped, "__aiter__") else wrapped
                    item = await self._self_iter.__anext__()
                except StopAsyncIteration:
                    finish_stream(call)
                    raise
                except BaseException as exc:
                    finish_stream(call, exc)
                    raise
                _keep(call, item)
                return item

            async def aclose(self) -> None:
                try:
                    close = getattr(self.__wrapped__, "aclose", None)
                    if close is not None:
                        await close()
                finally:
                    finish_stream(self._self_call, incomplete=True)

            async def __aenter__(self) -> Any:
                enter = getattr(self.__wrapped__, "__aenter__", None)
                if enter is not None:
                    await enter()
                return self

            async def __aexit__(self, *exc: Any) -> Any:
                try:
                    leave = getattr(self.__wrapped__, "__aexit__", None)
                    return (await leave(*exc)) if leave is not None else None
                finally:
                    finish_stream(self._self_call, incomplete=True)

        cls = _classes["async"] = AsyncStream
    return cls
