"""The request point: SDKs generated from the Stainless template (openai, anthropic, groq, …).

Every endpoint of such an SDK goes through `SyncAPIClient.request(cast_to,
options, *, stream, stream_cls)` (and the async twin), so one patch per base
class covers every endpoint and client; the URL path names the endpoint.

- Streams: `stream_cls` is swapped for a cached subclass that stays the SDK's
  type (`isinstance` holds) and finishes the record when the stream is
  exhausted, fails, is closed, leaves its `with` block, or is
  garbage-collected unfinished (`metadata["stream_incomplete"]`). When the
  SDK decodes plain SSE (`SSEDecoder`), the body's bytes are kept as they pass
  — a tee built from C iterators (`map(dict.setdefault, count(), chunks)`),
  so the calling thread runs no Python per chunk — and the worker decodes the
  SSE and parses the events. Any other decoder (Bedrock's binary event
  stream, a test double) has each event's raw `data` kept instead. The time
  to first chunk is the arrival of the body's first bytes.
- The SDK's own retries are counted (`_sleep_for_retry`) into `attempt`.
- What is kept until the worker runs is the response's *bytes*
  (`_process_response` sees them before the SDK parses): keeping the SDK's
  parsed object trees alive instead cost the calling thread more (garbage
  collector and allocator work) than all of the wrapper's own work. The
  request is the SDK's body dict (`options.json_data`: a few small containers
  the SDK's `transform` builds afresh for each call), read on the worker
  without parsing its bytes again (its messages, lists and dicts are copies
  too: a caller's later change to its arguments does not reach the record);
  a request sent with `extra_body` (merged in after that dict), or whose body
  is not a dict, is kept as bytes.

An adapter module on this point declares `PATCHES = stainless_patches("pkg")`
and `call_of = stainless_call_of(ENDPOINTS)` (URL path -> `Endpoint`).
"""

from __future__ import annotations

import itertools
import time
import types
import typing
import weakref
from typing import Any, Callable

from ..context import current_span
from .endpoint import Call, Endpoint
from .patch import MethodPatch
from .sdkcall import SDKCall, call_wrappers, finish_stream

__all__ = ["stainless_patches", "stainless_call_of", "tracked_stream_class"]

KEY = "tokentrail.call"  # where a stream's http response carries its pending call
_perf_ns = time.perf_counter_ns
_tuple_new = tuple.__new__  # a Call from a tuple in C (Call(...) / Call._make run Python: this runs on every call)
_span_get = current_span.get


def stainless_call_of(endpoints: dict[str, Endpoint]) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Call | None]:
    """An adapter's `call_of`: the POST endpoint the request's URL path names, or None."""
    get = endpoints.get

    def call_of(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        options = args[1] if len(args) > 1 else kwargs.get("options")
        url = getattr(options, "url", None)
        if type(url) is not str or getattr(options, "method", "post") != "post":
            return None
        endpoint = get(url.partition("?")[0])
        if endpoint is None:
            return None
        body = getattr(options, "json_data", None)
        return _tuple_new(Call, (endpoint, body, body.get("model") if type(body) is dict else None,
                                 kwargs.get("stream_cls") is not None and bool(kwargs.get("stream"))))

    return call_of


def _swap_stream_class(call: SDKCall, kwargs: dict[str, Any]) -> None:
    if call.streaming:
        kwargs["stream_cls"] = tracked_stream_class(kwargs["stream_cls"])


def _follow_stream(call: SDKCall, result: Any) -> Any:
    response = getattr(result, "response", None) or getattr(result, "http_response", None)
    extensions = getattr(response, "extensions", None)
    if not isinstance(extensions, dict):  # not a stream we can follow: record what we have
        call.finish()
        return result
    call.chunks = []
    extensions[KEY] = call
    if type(result) not in _tracked_classes:
        # Not our stream class (a raw response whose stream is parsed later): finish when the HTTP
        # response is dropped — the parsed stream keeps it, so dropping the raw wrapper after `parse()`
        # (LiteLLM does) ends nothing. Our class does that in `__del__`, which costs nothing until then.
        weakref.finalize(response, finish_stream, call, None, True)
    return result


_wrappers: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _request_wrappers(adapter: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The sync and async `request` wrappers of one adapter (built once, shared by both patches)."""
    pair = _wrappers.get(adapter.NAME)
    if pair is None:
        pair = _wrappers[adapter.NAME] = call_wrappers(adapter, _follow_stream, before=_swap_stream_class)
    return pair


def keep_raw(adapter: Any) -> Callable[..., Any]:
    """Wraps the SDK's `_process_response` (sync or async): keep the bytes of the open call's
    request and response, before the SDK parses them into objects we would otherwise keep."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _span_get()
        if type(call) is SDKCall:
            try:
                response = kwargs["response"]
                options = kwargs.get("options")
                # The request's bytes only where the body dict is not what was sent (module docstring).
                # Multipart bodies are not JSON: their fields stay in `body`.
                if getattr(options, "files", None) is None and (
                        type(call.body) is not dict or getattr(options, "extra_json", None) is not None):
                    call.raw_request = response.request.content
                if not kwargs.get("stream"):
                    call.raw_response = response.content  # raises when the body is streamed to the app
            except Exception:  # noqa: BLE001 - no bytes at hand: the parsed result is kept instead
                pass
        return wrapped(*args, **kwargs)

    return wrapper


def count_retry(adapter: Any) -> Callable[..., Any]:
    """Wraps the SDK's `_sleep_for_retry` (sync or async): one more attempt for the open call."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _span_get()
        if type(call) is SDKCall:
            call.retries += 1
        return wrapped(*args, **kwargs)

    return wrapper


def stainless_patches(package: str) -> tuple[MethodPatch, ...]:
    """What to patch in an SDK generated from the Stainless template."""
    module = f"{package}._base_client"
    return (
        MethodPatch(module, "SyncAPIClient", "request", lambda adapter: _request_wrappers(adapter)[0]),
        MethodPatch(module, "AsyncAPIClient", "request", lambda adapter: _request_wrappers(adapter)[1]),
        MethodPatch(module, "SyncAPIClient", "_sleep_for_retry", count_retry),
        MethodPatch(module, "AsyncAPIClient", "_sleep_for_retry", count_retry),
        MethodPatch(module, "SyncAPIClient", "_process_response", keep_raw),
        MethodPatch(module, "AsyncAPIClient", "_process_response", keep_raw),
    )


# -- streams ------------------------------------------------------------------------------------------

_tracked: dict[Any, type] = {}
_tracked_classes: set[type] = set()


def _call_of(stream: Any) -> SDKCall | None:
    extensions = getattr(getattr(stream, "response", None), "extensions", None)
    return extensions.get(KEY) if isinstance(extensions, dict) else None


def _tee_ready(stream: Any, call: SDKCall | None) -> bool:
    """Whether the stream's bytes can be kept as they pass: a plain SSE decoder, read once."""
    if call is None or call.sse is not None or call.end_ns is not None:
        return False
    decoder = getattr(stream, "_decoder", None)
    return type(decoder).__name__ == "SSEDecoder" and hasattr(getattr(stream, "response", None), "iter_bytes")


class _SyncTee:
    """Stands in for the stream's SSE decoder: hands it the body's chunks through a C-level tee."""

    __slots__ = ("_decoder", "_call")

    def __init__(self, decoder: Any, call: SDKCall) -> None:
        self._decoder, self._call = decoder, call

    def iter_bytes(self, iterator: Any) -> Any:
        call = self._call
        kept = call.sse = {}
        chunks = map(kept.setdefault, itertools.count(), iterator)  # each chunk kept and passed on, no Python step
        return self._decoder.iter_bytes(itertools.chain(_first_timed(chunks, call), chunks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)


class _AsyncTee(_SyncTee):
    __slots__ = ()

    def aiter_bytes(self, iterator: Any) -> Any:
        call = self._call
        call.sse = {}
        return self._decoder.aiter_bytes(_async_kept(iterator, call))


def _first_timed(chunks: Any, call: SDKCall) -> Any:
    for chunk in chunks:
        call.first_chunk_ns = _perf_ns()
        yield chunk
        return


async def _async_kept(iterator: Any, call: SDKCall) -> Any:
    kept = call.sse
    async for chunk in iterator:
        if not kept:
            call.first_chunk_ns = _perf_ns()
        kept[len(kept)] = chunk
        yield chunk


def _sync_events(self: Any) -> Any:
    call = _call_of(self)
    if _tee_ready(self, call):
        self._decoder = _SyncTee(self._decoder, call)
        return self._tokentrail_base._iter_events(self)
    return _kept_events(self, call)


def _kept_events(self: Any, call: SDKCall | None) -> Any:
    """Per event: keep its raw `data` (a str: nothing for the garbage collector to scan), time the first."""
    events = self._tokentrail_base._iter_events(self)
    if call is None:
        yield from events
        return
    kept = call.chunks
    for event in events:
        if not kept:
            call.first_chunk_ns = _perf_ns()
        kept.append(event.data)
        yield event


def _async_events(self: Any) -> Any:
    call = _call_of(self)
    if _tee_ready(self, call):
        self._decoder = _AsyncTee(self._decoder, call)
        return self._tokentrail_base._iter_events(self)
    return _async_kept_events(self, call)


async def _async_kept_events(self: Any, call: SDKCall | None) -> Any:
    events = self._tokentrail_base._iter_events(self)
    if call is None:
        async for event in events:
            yield event
        return
    kept = call.chunks
    async for event in events:
        if not kept:
            call.first_chunk_ns = _perf_ns()
        kept.append(event.data)
        yield event


def _sync_stream(self: Any) -> Any:
    """The stream's end, failure or early close. A generator, so the call is looked up on the first
    chunk: the SDK builds the stream before the wrapper has attached the call to it. It does what
    sdkcall.follow does, written out: delegating to `follow` would resume two generator frames per
    chunk instead of one (`yield from`: no bytecode of ours runs per chunk)."""
    chunks = self._tokentrail_base.__stream__(self)
    call = _call_of(self)
    if call is None:
        yield from chunks
        return
    try:
        yield from chunks
    except GeneratorExit:
        finish_stream(call, incomplete=True)
        raise
    except BaseException as exc:
        finish_stream(call, exc)
        raise
    finish_stream(call)


async def _async_stream(self: Any) -> Any:
    """The async twin (sdkcall.afollow, written out for the same reason)."""
    chunks = self._tokentrail_base.__stream__(self)
    call = _call_of(self)
    if call is None:
        async for chunk in chunks:
            yield chunk
        return
    try:
        async for chunk in chunks:
            yield chunk
    except GeneratorExit:
        finish_stream(call, incomplete=True)
        raise
    except BaseException as exc:
        finish_stream(call, exc)
        raise
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    finish_stream(call)


def _closed(stream: Any) -> None:
    call = _call_of(stream)
    if call is not None:
        finish_stream(call, incomplete=True)  # no-op when it was read to the end


def _sync_close(self: Any) -> None:
    try:
        self._tokentrail_base.close(self)
    finally:
        _closed(self)


async def _async_close(self: Any) -> None:
    try:
        await self._tokentrail_base.close(self)
    finally:
        _closed(self)


def _dropped(self: Any) -> None:
    """Garbage-collected: a stream dropped before it was read to the end is recorded as incomplete."""
    try:
        call = _call_of(self)
        if call is not None and call.end_ns is None:
            finish_stream(call, incomplete=True)
    except Exception:  # noqa: BLE001 - never from a finalizer
        pass
    base_del = getattr(self._tokentrail_base, "__del__", None)
    if base_del is not None:
        base_del(self)


def tracked_stream_class(stream_cls: Any) -> type:
    """A subclass of the SDK's stream class (cached) that records chunks; `isinstance` still holds."""
    cls = _tracked.get(stream_cls)
    if cls is None:
        base = typing.get_origin(stream_cls) or stream_cls
        is_async = hasattr(base, "__aiter__")
        namespace = {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "_tokentrail_base": base,
            "__stream__": _async_stream if is_async else _sync_stream,
            "_iter_events": _async_events if is_async else _sync_events,
            "close": _async_close if is_async else _sync_close,
            "__del__": _dropped,
        }
        cls = types.new_class(base.__name__, (stream_cls,), exec_body=lambda ns: ns.update(namespace))
        _tracked[stream_cls] = cls
        _tracked_classes.add(cls)
    return cls
