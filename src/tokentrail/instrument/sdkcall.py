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

The wrapper is one frame from start to end (no chain of helpers: each Python
call it saved was a measurable share of its cost), and when recording is off
it is a context-variable read and a flag test.

`SDKCall.extract` runs on the worker: it decodes what was kept (raw bytes,
text, an SSE body or the SDK's objects) and asks the adapter's pure endpoint
functions for the fields. JSON is parsed with `jiter` when it is installed (it
comes with the openai, anthropic and groq SDKs; about three times as fast as
`json` on these bodies), else with `json`. Its default cache keeps short strings (keys, and
values such as model names, roles and finish reasons, which repeat from call to call) in a fixed-size
table: fewer allocations than caching keys only.
"""

from __future__ import annotations

import json
import time
from itertools import compress, repeat
from operator import eq, getitem
from typing import Any, Callable

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingCall
from ..runtime import State, check_budget, route_var, submit
from ..semconv import server_from_url
from .endpoint import Call

try:
    from jiter import from_json as _jiter_loads
except ImportError:  # pragma: no cover - not installed: the standard parser
    _jiter_loads = None

__all__ = ["SDKCall", "call_wrappers", "internal_error", "finish_stream", "open_call_here", "follow", "afollow", "parse_json", "sse_data"]

_perf_ns = time.perf_counter_ns
_span_get = current_span.get
_span_set = current_span.set
_span_reset = current_span.reset
_json_loads = json.loads


# -- JSON and SSE, on the worker -----------------------------------------------------------------------


def parse_json(raw: Any) -> Any:
    """Bytes or text parsed as JSON (None when they are not: `[DONE]`, audio, a torn body); anything else as it is."""
    kind = type(raw)
    if kind is bytes or kind is str or kind is bytearray or kind is memoryview:
        if _jiter_loads is not None:
            try:
                return _jiter_loads(raw.encode() if kind is str else bytes(raw) if kind is not bytes else raw)
            except (ValueError, UnicodeEncodeError):
                pass  # the standard parser may still read it (UTF-16, a lone surrogate): ask it
        try:
            return _json_loads(raw)
        except ValueError:
            return None
    return raw


def _parse_all(payloads: list[bytes]) -> list[Any]:
    """Each payload parsed (None where it is not JSON); one parse for all of them when they all are
    (OpenAI's closing `[DONE]` set aside first)."""
    done = 0
    while done < len(payloads) and payloads[-1 - done] == b"[DONE]":
        done += 1
    if _jiter_loads is not None and len(payloads) > done:
        try:
            parsed = _jiter_loads(b"[" + b",".join(payloads[:len(payloads) - done]) + b"]")
            if len(parsed) == len(payloads) - done:  # else a payload was not one value (`1,2`): one by one
                return parsed + [None] * done if done else parsed
        except ValueError:
            pass
    return [parse_json(p) for p in payloads]


def _events(payloads: list[bytes], plan: Callable[[list[bytes]], Any] | None) -> tuple[list[Any], int]:
    """The events of a stream, parsed, and how many were left unparsed. With a reader's `plan` (used
    when content is not kept), only the events it marks are parsed — it leaves out those that carry
    nothing but text, which then only count as chunks (the first event is always read)."""
    keep = plan(payloads) if plan is not None and len(payloads) > 2 else None
    if keep is None:
        return _parse_all(payloads), 0
    keep[0] = True
    kept = list(compress(payloads, keep))
    return _parse_all(kept), len(payloads) - len(kept)


# Slices of a line: its first 6 bytes (`data: `), its first 4 (a field named `data`), its text after `data: `.
# (Comparing slices in C costs half of bytes.startswith, which parses its arguments on every call.)
_DATA, _FIELD, _AFTER_DATA = slice(None, 6), slice(None, 4), slice(6, None)


def sse_data(raw: bytes) -> list[bytes]:
    """The `data` of each complete event of a Server-Sent Events body, as the SDKs' decoders read it
    (an event without data gives b""; text after the last blank line is an unfinished event: left out).

    The shapes providers send — every event one `data: ` line (OpenAI), or one other line such as
    `event: x` and then one `data: ` line (Anthropic) — are recognised and split with C-level
    operations only; anything else is read line by line by the SSE rules."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = raw.rfind(b"\n\n")
    if end < 0:
        return []
    lines = raw[:end].split(b"\n")  # the complete events' lines, blank separators included
    count = len(lines)
    if count % 2 == 1 and not any(lines[1::2]):  # data / blank / data / …
        data = lines[0::2]
        if all(map(eq, map(getitem, data, repeat(_DATA)), repeat(b"data: "))):
            return list(map(getitem, data, repeat(_AFTER_DATA)))
    elif count % 3 == 2 and not any(lines[2::3]):  # other line / data / blank / …
        data, heads = lines[1::3], lines[0::3]
        if all(map(eq, map(getitem, data, repeat(_DATA)), repeat(b"data: "))) and all(heads) and \
                not any(map(eq, map(getitem, heads, repeat(_FIELD)), repeat(b"data"))):
            return list(map(getitem, data, repeat(_AFTER_DATA)))
    return _sse_slow(raw[:end].split(b"\n\n"))


def _sse_slow(blocks: list[bytes]) -> list[bytes]:
    out = []
    for block in blocks:
        data: list[bytes] = []
        seen = False
        for line in block.split(b"\n"):
            if not line or line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
                seen = True
            elif name in (b"event", b"id", b"retry"):
                seen = True
        if seen:
            out.append(b"\n".join(data))
    return out


# -- the pending call ------------------------------------------------------------------------------------


class SDKCall(PendingCall):
    """A call made through an instrumented SDK.

    What the worker reads, whichever the patch kind kept: `raw_request` /
    `raw_response` (bytes or text of the bodies, else `body` / `result`), and
    for a stream either `chunks` (the items kept one by one) or `sse` (the raw
    bytes of an SSE body as they passed, decoded on the worker).
    """

    __slots__ = ("adapter", "endpoint", "client", "body", "result", "chunks", "retries", "closed_early",
                 "raw_request", "raw_response", "streaming", "sse")

    def __init__(self, adapter: Any, call: Call, client: Any, route: Any) -> None:
        endpoint = call[0]
        self.adapter, self.endpoint, self.client, self.body, self.streaming = adapter, endpoint, client, call[1], call[3]
        self.result = self.chunks = self.raw_request = self.raw_response = self.sse = None
        self.retries = 0
        self.closed_early = False
        PendingCall.__init__(self, None, call[2], endpoint.operation, adapter.NAME, route)

    def extract(self, settings: Any) -> tuple[dict[str, Any], ...]:
        adapter, endpoint, fields = self.adapter, self.endpoint, self.fields
        if self.provider is None:
            self.provider = adapter.provider_of(self.client)
        fields["sdk_version"] = adapter.version
        fields["attempt"] = self.retries + 1
        server = _server_of(adapter, self.client)
        if server is not None:  # under what the call's own metadata says
            extra = fields.get("metadata")
            fields["metadata"] = {**server} if extra is None else {**server, **extra}
        body = parse_json(self.raw_request) if self.raw_request is not None else self.body
        asked, self.content_in = endpoint.request(body if isinstance(body, dict) else {})
        if self.sse is not None or self.chunks is not None:
            reader = endpoint.chunks
            if self.sse is not None:
                payloads = sse_data(b"".join(self.sse.values()))
                plan = None if settings.capture_content else getattr(reader, "sse_plan", None)
                events, skipped = _events(payloads, plan)
            else:
                events, skipped = [parse_json(c) for c in self.chunks], 0
            # `[DONE]` and the like are no chunk; an error event is raised by the SDK, not yielded.
            events = [e for e in events if e is not None and not (type(e) is dict and "error" in e)]
            got, self.content_out = reader(events) if reader else ({}, None)
            if skipped:
                if got.get("input_tokens") is None and got.get("output_tokens") is None:
                    # No usage reported: the text is what the tokens will be estimated from. Read all of it.
                    events = [e for e in _parse_all(payloads) if e is not None and not (type(e) is dict and "error" in e)]
                    got, self.content_out = reader(events)
                    skipped = 0
                elif type(got.get("chunk_count")) is int:
                    got = {**got, "chunk_count": got["chunk_count"] + skipped}  # each one left unparsed was a chunk
            extra = fields.setdefault("metadata", {})
            if self.first_chunk_ns is not None and self.end_ns is not None:
                streamed_ms = (self.end_ns - self.first_chunk_ns) / 1e6
                extra["stream_duration_ms"] = streamed_ms
                if streamed_ms > 0:
                    extra["chunks_per_s"] = (got.get("chunk_count") or len(events) + skipped) / (streamed_ms / 1000)
            if self.closed_early:
                extra["stream_incomplete"] = True
            # One chunk per event, unless the adapter says otherwise.
            return asked, {"chunk_count": len(events) + skipped, "stream": True}, got
        data = parse_json(self.raw_response) if self.raw_response is not None else _response_data(self.result)
        if data is None:
            return (asked,)
        got, self.content_out = endpoint.response(data)
        # Lowest first: the request's, then the response's; the fields set on the call win (pending.py).
        return asked, got


_servers: dict[int, tuple[Any, Any]] = {}  # id(base URL object) -> (the object, its server metadata): see _server_of
_url_readers: dict[Any, Callable[[Any], Any]] = {}  # adapter -> how to read its client's base URL


def _stainless_base_url(client: Any) -> Any:
    # The attribute behind `base_url`: openai 3's property imports a module on every read (≈ 1 µs).
    url = getattr(client, "_base_url", None)
    return url if url is not None else getattr(client, "base_url", None)


def _server_of(adapter: Any, client: Any) -> dict[str, Any] | None:
    """The server the client sends to, as metadata (OTel's `server.address`/`server.port`): from the
    adapter's `base_url_of(client)` when it has one, else the client's `base_url` (the Stainless SDKs').

    Remembered per URL object (a client keeps the same one), kept with the answer so its id cannot
    be reused while the entry stands: no URL is formatted again for each record. The answer is
    shared: copied, never changed."""
    try:
        read = _url_readers.get(adapter)
        if read is None:
            read = _url_readers[adapter] = getattr(adapter, "base_url_of", None) or _stainless_base_url
        url = read(client)
        if not url:
            return None
        hit = _servers.get(id(url))
        if hit is not None and hit[0] is url:
            return hit[1]
        found = server_from_url(str(url))
        server = None if found is None else {"server_address": found[0]} if found[1] is None else \
            {"server_address": found[0], "server_port": found[1]}
        if len(_servers) >= 256:  # many short-lived clients: start over rather than grow
            _servers.clear()
        _servers[id(url)] = (url, server)
        return server
    except Exception:  # noqa: BLE001 - a client of another shape: the record goes without it
        return None


def _response_data(result: Any) -> Any:
    """What the worker reads of a kept result: a raw response's JSON body (when it was read), else the result."""
    raw = getattr(result, "http_response", None)
    if raw is None:
        return parse_json(result)
    try:
        content = raw.content
    except Exception:  # noqa: BLE001 - a body streamed to the app and not read yet: nothing to read
        return None
    return parse_json(content)


def internal_error(where: str, exc: BaseException) -> None:
    log.error_once(f"wrap.{where}", "tokentrail: internal error while recording an SDK call; the call is unaffected", exc)


def finish_stream(call: SDKCall, error: BaseException | None = None, incomplete: bool = False) -> None:
    """End a streamed call once: read to the end, failed, closed early or dropped unread."""
    if call.end_ns is None:
        call.closed_early = incomplete
        call.finish(error)


def follow(chunks: Any, call: SDKCall) -> Any:
    """`chunks` as they are, the record ending at their end, failure or early close (`yield from`:
    no Python work per chunk). The stream wrappers of every patch kind end their records here."""
    try:
        yield from chunks
    except GeneratorExit:
        finish_stream(call, incomplete=True)
        raise
    except BaseException as exc:
        finish_stream(call, exc)
        raise
    finish_stream(call)


async def afollow(chunks: Any, call: SDKCall) -> Any:
    """The async twin of `follow` (Python cannot share a generator body between the two)."""
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


def open_call_here() -> SDKCall | None:
    """The SDK call open in this context (for the retry and raw-bytes wrappers), if any."""
    call = _span_get()
    return call if type(call) is SDKCall else None


def _failed(call: SDKCall, exc: BaseException) -> None:
    try:
        call.leave()
        call.finish(exc)
    except Exception as error:  # noqa: BLE001
        internal_error("failed", error)


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
    route_get = route_var.get
    state = State
    keep_request = before

    # Both wrappers are written out in one frame each, from start to end: every helper call they
    # saved was a measurable share of their cost. Keep the two in step.

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        route = route_get()
        if route is None and not state.recording:
            return wrapped(*args, **kwargs)
        call = None
        try:
            outer = _span_get()
            if outer is None or not outer.absorbs or outer.end_ns is not None:
                info = adapter.call_of(instance, args, kwargs)
                if info is not None:
                    call = SDKCall(adapter, info, instance, route)
                    if state.budgets is not None:
                        call.provider = adapter.provider_of(instance)
                        check_budget(call)
                    if keep_request is not None:
                        keep_request(call, kwargs)
                    call._token = _span_set(call)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            internal_error("start", exc)
            call = None
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        try:
            try:
                _span_reset(call._token)
            except ValueError:
                pass  # left in another context than it was entered in (Python refuses that reset)
            call._token = None
            if call.raw_request is not None:
                call.body = None  # the worker reads the request from its bytes
            if call.streaming:
                return on_stream(call, result)
            if call.raw_response is None:
                keep = call.endpoint.keep
                call.result = result if keep is None else keep(result)
            call.end_ns = _perf_ns()
            pipeline = state.pipeline
            if pipeline is None:
                submit(call)
            else:
                pipeline.submit(call)
        except Exception as exc:  # noqa: BLE001
            internal_error("returned", exc)
        return result

    async def async_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        route = route_get()
        if route is None and not state.recording:
            return await wrapped(*args, **kwargs)
        call = None
        try:
            outer = _span_get()
            if outer is None or not outer.absorbs or outer.end_ns is not None:
                info = adapter.call_of(instance, args, kwargs)
                if info is not None:
                    call = SDKCall(adapter, info, instance, route)
                    if state.budgets is not None:
                        call.provider = adapter.provider_of(instance)
                        check_budget(call)
                    if keep_request is not None:
                        keep_request(call, kwargs)
                    call._token = _span_set(call)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            internal_error("start", exc)
            call = None
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        try:
            try:
                _span_reset(call._token)
            except ValueError:
                pass
            call._token = None
            if call.raw_request is not None:
                call.body = None
            if call.streaming:
                return on_stream(call, result)
            if call.raw_response is None:
                keep = call.endpoint.keep
                call.result = result if keep is None else keep(result)
            call.end_ns = _perf_ns()
            pipeline = state.pipeline
            if pipeline is None:
                submit(call)
            else:
                pipeline.submit(call)
        except Exception as exc:  # noqa: BLE001
            internal_error("returned", exc)
        return result

    return sync_wrapper, async_wrapper
