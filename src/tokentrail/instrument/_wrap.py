"""The wrapper every SDK adapter shares: timing, context, sync/async, errors, retries and streams.

An adapter only says *what* an endpoint is (`Endpoint`: an operation and three
pure functions over the request body, the response and the stream chunks) and
how to name the provider of a client. Everything here runs the same for every
SDK built on the Stainless template (openai, anthropic, groq, …), whose calls
all pass through `BaseClient.request(cast_to, options, stream=, stream_cls=)`:

- the calling thread reads the clock, the attribution and `options.json_data`
  (a reference, not a copy), and hands an `SDKCall` to the pipeline;
- a call made while another LLM call is open (a manual `track_llm_call` block
  around an SDK call, or an SDK helper calling `request` again) passes straight
  through: the outer record is the one the user asked for, and nothing is
  counted twice;
- streams: `stream_cls` is swapped for a cached subclass that stays the SDK's
  type (`isinstance` holds), keeps each chunk and finishes the record when the
  stream is exhausted, fails, is closed, leaves its `with` block, or is
  garbage-collected unfinished (recorded with `metadata["stream_incomplete"]`);
- the SDK's own retries are counted (`_sleep_for_retry`) into `attempt`;
- what is kept until the worker runs is the request and response *bytes*
  (`_process_response` sees them before the SDK parses), and for streams each
  event's raw `data` string: keeping the SDK's parsed object trees alive
  instead cost the calling thread more (garbage-collector and allocator work)
  than all of the wrapper's own work. The worker parses the JSON; when no raw
  bytes are at hand (a body streamed to the app), the parsed object is kept.
"""

from __future__ import annotations

import json
import time
import types
import typing
import weakref
from typing import Any, Callable

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingCall
from ..runtime import budgets_active, check_budget, route_if_recording
from ..usage import normalize_usage

__all__ = ["Endpoint", "SDKCall", "Adapter", "tracked_stream_class", "stainless_patches", "endpoint_by_path",
           "params", "usage_fields"]

KEY = "tokentrail.call"  # where a stream's httpx response carries its pending call
_perf_ns = time.perf_counter_ns


class Endpoint:
    """One API endpoint: its operation and how to read its request, response and stream chunks.

    Each function returns `(fields, content)`: record fields (None values are
    ignored) and the request messages / response text. They run on the worker.
    """

    __slots__ = ("operation", "request", "response", "chunks")

    def __init__(
        self,
        operation: str,
        request: Callable[[Any], tuple[dict[str, Any], Any]],
        response: Callable[[Any], tuple[dict[str, Any], Any]],
        chunks: Callable[[list[Any]], tuple[dict[str, Any], Any]] | None = None,
    ) -> None:
        self.operation, self.request, self.response, self.chunks = operation, request, response, chunks


class Adapter:
    """What the shared wrapper needs from an SDK module (see instrument/openai.py)."""

    NAME: str
    version: str = ""
    endpoint: Callable[[Any], Endpoint | None]
    provider_of: Callable[[Any], str]


def stainless_patches(package: str) -> tuple[tuple[str, str, str, str], ...]:
    """What to patch in an SDK generated from the Stainless template (openai, anthropic, groq, …):
    (module, class, method, kind) for the shared wrapper's `request`, `retry` and `raw` wrappers."""
    module = f"{package}._base_client"
    return (
        (module, "SyncAPIClient", "request", "sync"),
        (module, "AsyncAPIClient", "request", "async"),
        (module, "SyncAPIClient", "_sleep_for_retry", "retry"),
        (module, "AsyncAPIClient", "_sleep_for_retry", "retry"),
        (module, "SyncAPIClient", "_process_response", "raw"),
        (module, "AsyncAPIClient", "_process_response", "raw"),
    )


def endpoint_by_path(endpoints: dict[str, Endpoint]) -> Callable[[Any], Endpoint | None]:
    """An adapter's `endpoint(options)`: the POST endpoint the request's URL path names, or None."""

    def endpoint(options: Any) -> Endpoint | None:
        url = getattr(options, "url", None)
        if getattr(options, "method", "post") != "post" or not isinstance(url, str):
            return None
        return endpoints.get(url.split("?", 1)[0])

    return endpoint


# -- reading request bodies (shared by the adapters) ------------------------------------------------

# The SDKs' markers for "argument not given" (falsy sentinels), which may sit in a request body.
_NOT_GIVEN = ("Omit", "NotGiven")


def params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    """The request's generation parameters; structured ones reduced to their `type` (no content)."""
    out = {}
    for name in names:
        value = body.get(name)
        if value is None or type(value).__name__ in _NOT_GIVEN:
            continue
        if isinstance(value, dict):
            value = value.get("type") or value.get("effort") or {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
        out[name] = value
    return out or None


def usage_fields(usage: Any) -> dict[str, Any]:
    return {k: v for k, v in normalize_usage(usage).items() if v is not None}


class SDKCall(PendingCall):
    """A call made through an instrumented SDK."""

    __slots__ = ("adapter", "endpoint", "client", "body", "result", "chunks", "retries", "closed_early",
                 "raw_request", "raw_response")

    def __init__(self, adapter: Adapter, endpoint: Endpoint, client: Any, body: Any, model: Any, route: Any) -> None:
        super().__init__(None, model, endpoint.operation, adapter.NAME, route)
        self.adapter, self.endpoint, self.client, self.body = adapter, endpoint, client, body
        self.result = self.chunks = self.raw_request = self.raw_response = None
        self.retries = 0
        self.closed_early = False

    def extract(self, settings: Any) -> None:
        adapter, endpoint, fields = self.adapter, self.endpoint, self.fields
        if self.provider is None:
            self.provider = adapter.provider_of(self.client)
        fields["sdk_version"] = adapter.version
        fields["attempt"] = self.retries + 1
        body = _json(self.raw_request) if self.raw_request is not None else self.body
        found, self.content_in = endpoint.request(body if isinstance(body, dict) else {})
        if self.chunks is not None:
            # An error event is raised by the SDK, not yielded: it is not a chunk.
            events = [e for e in map(_json, self.chunks) if e is not None and not (isinstance(e, dict) and "error" in e)]
            got, self.content_out = endpoint.chunks(events) if endpoint.chunks else ({}, None)
            found["chunk_count"] = len(events)  # the SDK yields one chunk per JSON event, unless the adapter says
            found.update({k: v for k, v in got.items() if v is not None})
            extra = fields.setdefault("metadata", {})
            if self.first_chunk_ns is not None and self.end_ns is not None:
                streamed_ms = (self.end_ns - self.first_chunk_ns) / 1e6
                extra["stream_duration_ms"] = streamed_ms
                if streamed_ms > 0:
                    extra["chunks_per_s"] = found["chunk_count"] / (streamed_ms / 1000)
            if self.closed_early:
                extra["stream_incomplete"] = True
        else:
            data = _json(self.raw_response) if self.raw_response is not None else _response_data(self.result)
            if data is not None:
                got, self.content_out = endpoint.response(data)
                found.update({k: v for k, v in got.items() if v is not None})
        for name, value in found.items():
            if value is not None:
                fields.setdefault(name, value)


def _json(raw: Any) -> Any:
    """Parsed JSON of raw bytes or text; None for anything else (`[DONE]`, audio, a torn body)."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _response_data(result: Any) -> Any:
    """The parsed response, or for `with_raw_response` the JSON body (when it has been read)."""
    raw = getattr(result, "http_response", None)
    if raw is None:
        return result
    try:
        content = raw.content
    except Exception:  # noqa: BLE001 - a body streamed to the app and not read yet: nothing to read
        return None
    return _json(content)


def _finish(call: SDKCall, error: BaseException | None = None, incomplete: bool = False) -> None:
    if call.end_ns is None:  # else: already finished (read to the end, then closed)
        call.closed_early = incomplete
        call.finish(error)


# -- the request wrapper ---------------------------------------------------------------------------


def _start(adapter: Adapter, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SDKCall | None:
    recording, route = route_if_recording()
    if not recording or isinstance(current_span.get(), PendingCall):
        return None
    options = args[1] if len(args) > 1 else kwargs.get("options")
    endpoint = adapter.endpoint(options)
    if endpoint is None:
        return None
    body = getattr(options, "json_data", None)
    model = body.get("model") if type(body) is dict else None
    call = SDKCall(adapter, endpoint, client, body, model, route)
    if budgets_active():
        call.provider = adapter.provider_of(client)
        check_budget(call)
    stream_cls = kwargs.get("stream_cls")
    if stream_cls is not None and kwargs.get("stream"):
        kwargs["stream_cls"] = tracked_stream_class(stream_cls)
    call.enter()
    return call


def _returned(call: SDKCall, result: Any, stream: bool) -> Any:
    call.leave()
    if call.raw_request is not None:
        call.body = None  # the worker reads the request from its bytes
    if not stream:
        if call.raw_response is None:
            call.result = result
        _finish(call)
        return result
    response = getattr(result, "response", None) or getattr(result, "http_response", None)
    extensions = getattr(response, "extensions", None)
    if not isinstance(extensions, dict):  # not a stream we can follow: record what we have
        _finish(call)
        return result
    call.chunks = []
    extensions[KEY] = call
    weakref.finalize(result, _finish, call, None, True)  # dropped before it was read to the end
    return result


def _failed(call: SDKCall, exc: BaseException) -> None:
    call.leave()
    _finish(call, exc)


def _guarded(step: Callable[..., Any], fallback: Callable[..., Any]) -> Callable[..., Any]:
    """`step`, except that an internal error is logged once and `fallback` answers instead:
    tracking never breaks the call (only a budget's `BudgetExceeded` gets through)."""

    def run(*args: Any) -> Any:
        try:
            return step(*args)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error_once(f"wrap.{step.__name__}", "tokentrail: internal error while recording an SDK call; the call is unaffected", exc)
            return fallback(*args)

    return run


_start_safely = _guarded(_start, lambda *args: None)
_returned_safely = _guarded(_returned, lambda call, result, stream: result)
_failed_safely = _guarded(_failed, lambda call, exc: None)


def request_wrappers(adapter: Adapter) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """wrapt wrappers for the sync and async `request` methods."""

    def sync_request(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start_safely(adapter, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _failed_safely(call, exc)
            raise
        return _returned_safely(call, result, bool(kwargs.get("stream")))

    async def async_request(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start_safely(adapter, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _failed_safely(call, exc)
            raise
        return _returned_safely(call, result, bool(kwargs.get("stream")))

    return sync_request, async_request


def keep_raw(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Wraps the SDK's `_process_response` (sync or async): keep the bytes of the open call's
    request and response, before the SDK parses them into objects we would otherwise keep."""
    call = current_span.get()
    if type(call) is SDKCall:
        try:
            response = kwargs["response"]
            if getattr(kwargs.get("options"), "files", None) is None:  # multipart bodies are not JSON
                call.raw_request = response.request.content
            if not kwargs.get("stream"):
                call.raw_response = response.content  # raises when the body is streamed to the app
        except Exception:  # noqa: BLE001 - no bytes at hand: the parsed result is kept instead
            pass
    return wrapped(*args, **kwargs)


def count_retry(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Wraps the SDK's `_sleep_for_retry` (sync or async): one more attempt for the open call."""
    call = current_span.get()
    if isinstance(call, SDKCall):
        call.retries += 1
    return wrapped(*args, **kwargs)


# -- streams ------------------------------------------------------------------------------------------

_tracked: dict[Any, type] = {}


def _call_of(stream: Any) -> SDKCall | None:
    extensions = getattr(getattr(stream, "response", None), "extensions", None)
    return extensions.get(KEY) if isinstance(extensions, dict) else None


def _sync_events(self: Any) -> Any:
    """Per event: keep its raw `data` (a str: nothing for the garbage collector to scan), time the first."""
    events = self._tokentrail_base._iter_events(self)
    call = _call_of(self)
    if call is None:
        yield from events
        return
    kept = call.chunks
    for event in events:
        if not kept:
            call.first_chunk_ns = _perf_ns()
        kept.append(event.data)
        yield event


async def _async_events(self: Any) -> Any:
    events = self._tokentrail_base._iter_events(self)
    call = _call_of(self)
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
    """The stream's end, failure or early close (`yield from`: no per-chunk bytecode here)."""
    chunks = self._tokentrail_base.__stream__(self)
    call = _call_of(self)
    if call is None:
        yield from chunks
        return
    try:
        yield from chunks
    except GeneratorExit:
        _finish(call, incomplete=True)
        raise
    except BaseException as exc:
        _finish(call, exc)
        raise
    _finish(call)


async def _async_stream(self: Any) -> Any:
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
        _finish(call, incomplete=True)
        raise
    except BaseException as exc:
        _finish(call, exc)
        raise
    finally:
        await chunks.aclose()
    _finish(call)


def _closed(stream: Any) -> None:
    call = _call_of(stream)
    if call is not None:
        _finish(call, incomplete=True)  # no-op when it was read to the end


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
        }
        cls = types.new_class(base.__name__, (stream_cls,), exec_body=lambda ns: ns.update(namespace))
        _tracked[stream_cls] = cls
    return cls
