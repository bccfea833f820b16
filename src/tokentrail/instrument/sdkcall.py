"""A call made through a patched SDK method, and the one wrapper every patched method runs.

The wrapper is the same for the request point (Stainless SDKs) and the method
point (every other SDK): it asks the adapter's `call_of(instance, args,
kwargs)` whether this is a call to record, and if so

- on the calling thread reads the clock, the attribution and a reference to
  the request body, and hands an `SDKCall` to the pipeline when the call ends;
- passes straight through when another LLM call is already open here (a manual
  `track_llm_call` block around the SDK call, or an SDK helper calling itself
  again): the outer record is the one the user asked for, nothing is counted
  twice; inside a framework's LLM call (LangChain, LiteLLM, …) it records and
  the framework's call defers to it (see `callback_point`);
- hands a stream to the patch kind's `on_stream`, which makes the stream
  record its chunks while staying the SDK's type;
- never lets a tracking error reach the application: only a budget's
  `BudgetExceeded` gets through, before the provider is called.

`SDKCall.extract` runs on the worker: it decodes what was kept (raw bytes,
text or the SDK's object) and asks the adapter's pure endpoint functions for
the fields.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingCall
from ..runtime import budgets_active, check_budget, route_if_recording
from .endpoint import Call, json_value

__all__ = ["SDKCall", "call_wrappers", "internal_error", "finish_stream", "open_call_here"]

_perf_ns = time.perf_counter_ns


class SDKCall(PendingCall):
    """A call made through an instrumented SDK."""

    __slots__ = ("adapter", "endpoint", "client", "body", "result", "chunks", "retries", "closed_early",
                 "raw_request", "raw_response", "streaming")

    def __init__(self, adapter: Any, call: Call, client: Any, route: Any) -> None:
        super().__init__(None, call.model, call.endpoint.operation, adapter.NAME, route)
        self.adapter, self.endpoint, self.client, self.body = adapter, call.endpoint, client, call.body
        self.streaming = call.stream
        self.result = self.chunks = self.raw_request = self.raw_response = None
        self.retries = 0
        self.closed_early = False

    def extract(self, settings: Any) -> None:
        adapter, endpoint, fields = self.adapter, self.endpoint, self.fields
        if self.provider is None:
            self.provider = adapter.provider_of(self.client)
        fields["sdk_version"] = adapter.version
        fields["attempt"] = self.retries + 1
        body = json_value(self.raw_request) if self.raw_request is not None else self.body
        found, self.content_in = endpoint.request(body if isinstance(body, dict) else {})
        found = dict(found)
        if self.chunks is not None:
            # An error event is raised by the SDK, not yielded: it is not a chunk.
            events = [e for e in map(json_value, self.chunks) if e is not None and not (isinstance(e, dict) and "error" in e)]
            got, self.content_out = endpoint.chunks(events) if endpoint.chunks else ({}, None)
            found["chunk_count"] = len(events)  # one chunk per event, unless the adapter says otherwise
            found["stream"] = True
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
            data = json_value(self.raw_response) if self.raw_response is not None else _response_data(self.result)
            if data is not None:
                got, self.content_out = endpoint.response(data)
                found.update({k: v for k, v in got.items() if v is not None})
        for name, value in found.items():
            if value is not None:
                fields.setdefault(name, value)


def _response_data(result: Any) -> Any:
    """What the worker reads of a kept result: a raw response's JSON body (when it was read), else the result."""
    raw = getattr(result, "http_response", None)
    if raw is None:
        return json_value(result)
    try:
        content = raw.content
    except Exception:  # noqa: BLE001 - a body streamed to the app and not read yet: nothing to read
        return None
    return json_value(content)


def internal_error(where: str, exc: BaseException) -> None:
    log.error_once(f"wrap.{where}", "tokentrail: internal error while recording an SDK call; the call is unaffected", exc)


def finish_stream(call: SDKCall, error: BaseException | None = None, incomplete: bool = False) -> None:
    """End a streamed call once: read to the end, failed, closed early or dropped unread."""
    if call.end_ns is None:
        call.closed_early = incomplete
        call.finish(error)


def open_call_here() -> SDKCall | None:
    """The SDK call open in this context (for the retry and raw-bytes wrappers), if any."""
    call = current_span.get()
    return call if type(call) is SDKCall else None


def call_wrappers(
    adapter: Any,
    on_stream: Callable[[SDKCall, Any], Any],
    before: Callable[[SDKCall, dict[str, Any]], None] | None = None,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """wrapt wrappers (sync, async) that record the calls `adapter.call_of` recognises.

    `before(call, kwargs)` may adjust the SDK's arguments before the call
    (Stainless: swap in a stream class that records); `on_stream(call, result)`
    makes a streamed result record its chunks and returns what the application gets.
    """
    def start(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SDKCall | None:
        recording, route = route_if_recording()
        if not recording:
            return None
        outer = current_span.get()
        if outer is not None and outer.absorbs and outer.end_ns is None:
            return None
        info = adapter.call_of(instance, args, kwargs)
        if info is None:
            return None
        call = SDKCall(adapter, info, instance, route)
        if budgets_active():
            call.provider = adapter.provider_of(instance)
            check_budget(call)
        if before is not None:
            before(call, kwargs)
        call.enter()
        return call

    def returned(call: SDKCall, result: Any) -> Any:
        try:
            call.leave()
            if call.raw_request is not None:
                call.body = None  # the worker reads the request from its bytes
            if call.streaming:
                return on_stream(call, result)
            if call.raw_response is None:
                keep = call.endpoint.keep
                call.result = result if keep is None else keep(result)
            call.finish()
        except Exception as exc:  # noqa: BLE001
            internal_error("returned", exc)
        return result

    def failed(call: SDKCall, exc: BaseException) -> None:
        try:
            call.leave()
            call.finish(exc)
        except Exception as error:  # noqa: BLE001
            internal_error("failed", error)

    def started(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SDKCall | None:
        try:
            return start(instance, args, kwargs)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            internal_error("start", exc)
            return None

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = started(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(call, exc)
            raise
        return returned(call, result)

    async def async_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = started(instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(call, exc)
            raise
        return returned(call, result)

    return sync_wrapper, async_wrapper
