"""The manual API: record calls to anything, by hand.

- `track_llm_call(provider, model)` — a block around one call; setters fill the record.
- `track_tool_call(name)` — a block around one tool execution.
- `llm_instrumented(...)` — a decorator for functions that call a model (sync,
  async, generator, async generator), with optional extractors.
- `log_llm_call(...)` — a call that already happened.
- `workflow(name)` and `emit_outcome(...)` — one run of a business workflow and
  what it achieved, so cost per outcome can be reported.
- `set_llm_attributes(...)`, `set_token_usage(...)` — fields of the call open in
  this context, for code that has no span object at hand.

Keyword attributes (`**attrs`) on these functions: an attribution field
(`user_id`, `customer_id`, `feature`, `session_id`, `tags`) overrides the
surrounding `attributes()` for this call; any other `LLMCall` field sets that
field (`message_count=3`, `request_params={...}`); anything else goes into
`metadata`.

Setters never raise: a bad value (a string for tokens, a negative count) is
dropped with one warning on the `tokentrail` logger when the record is built.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from time import perf_counter_ns as _perf_ns
from typing import Any, Callable, Iterable, Iterator

from . import log
from .context import (
    ATTRIBUTION_FIELDS,
    ContextBlock,
    attributes_var,
    current_span,
    current_workflow,
    merge_attributes,
    new_span_id,
    reset_quietly,
    new_trace_id,
)
from .pending import PendingCall, PendingOutcome, PendingSpan, PendingTool, coerce_field, record_id
from .record import FIELDS, LLMCall
from .shapes import default_model, default_prompt, default_response_text, default_usage, pick
from .runtime import check_budget, route_if_recording, submit
from .usage import TOKEN_KEYS, normalize_usage

__all__ = [
    "LLMSpan",
    "ToolSpan",
    "track_llm_call",
    "track_tool_call",
    "llm_instrumented",
    "log_llm_call",
    "workflow",
    "WorkflowRun",
    "emit_outcome",
    "set_llm_attributes",
    "set_token_usage",
]


class _SpanBlock:
    """Context-manager protocol shared by LLM and tool spans: an exception leaving the block is recorded and re-raised."""

    __slots__ = ()

    def __enter__(self) -> Any:
        self.enter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.finish(exc)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    @property
    def trace_id(self) -> str:
        return f"{self.trace:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.span:016x}"

    @property
    def id(self) -> str:
        """The id the record will have."""
        return record_id(self.wall_ns, self.span)

    def set_error(self, error: BaseException | str, category: str | None = None) -> None:
        """Mark the call failed; `category` one of DESIGN's error categories, else inferred."""
        self.error = error
        self.error_category = category

    def add_metadata(self, **kv: Any) -> None:
        self.fields.setdefault("metadata", {}).update(kv)


class LLMSpan(_SpanBlock, PendingCall):
    """One LLM call being recorded; yielded by `track_llm_call`."""

    __slots__ = ()

    def _set(self, name: str, value: Any) -> None:
        """Keep a good value; a bad one is dropped with one warning and the earlier value stays."""
        coerced = coerce_field(name, value)
        if coerced is not None:
            self.fields[name] = coerced

    def set_tokens(self, input: Any = None, output: Any = None, cache_read: Any = None, cache_write: Any = None, reasoning: Any = None) -> None:
        """Token counts: `input` counts *all* input tokens (cached included), `reasoning` is part of `output`.
        A count that is not a whole number >= 0 is ignored (one warning): the count set before it stays."""
        for name, value in zip(TOKEN_KEYS, (input, output, cache_read, cache_write, reasoning)):
            if value is not None:
                self._set(name, value)

    def set_usage(self, usage: Any) -> None:
        """Token counts from a usage object or dict in OpenAI, Anthropic, Gemini or our spelling."""
        self.fields["_usage"] = usage

    def set_request_id(self, request_id: Any) -> None:
        """The provider's id for this call (recorded as `response_id`)."""
        self.fields["response_id"] = request_id

    def set_response_model(self, model: Any) -> None:
        self.fields["response_model"] = model

    def set_request_params(self, **params: Any) -> None:
        """temperature, max_tokens, top_p, …; anything named like a credential is dropped."""
        current = self.fields.get("request_params")
        self.fields["request_params"] = {**current, **params} if isinstance(current, dict) else params

    def set_streaming(self, ttft_ms: Any = None, chunk_count: Any = None) -> None:
        self.fields["stream"] = True
        if ttft_ms is not None:
            self._set("ttft_ms", ttft_ms)
        if chunk_count is not None:
            self._set("chunk_count", chunk_count)

    def set_cache_hit(self, hit: Any = True) -> None:
        self._set("cache_hit", hit)

    def set_attempt(self, attempt: Any) -> None:
        self._set("attempt", attempt)

    def set_finish_reasons(self, *reasons: Any) -> None:
        flat: list[Any] = []
        for reason in reasons:
            flat.extend(reason if isinstance(reason, (list, tuple)) else [reason])
        self.fields["finish_reasons"] = [str(r) for r in flat if r is not None]

    set_finish_reason = set_finish_reasons

    def set_tool_call_count(self, count: Any) -> None:
        self._set("tool_call_count", count)

    def set_content(self, input: Any = None, output: Any = None) -> None:
        """Prompt (a string or a list of messages) and output text; kept only with `capture_content=True`,
        but the message count is always recorded."""
        if input is not None:
            self.content_in = input
        if output is not None:
            self.content_out = output

    def extract(self, settings: Any) -> None:
        usage = self.fields.pop("_usage", None)
        if usage is not None:
            for name, value in normalize_usage(usage).items():
                if value is not None:
                    self.fields.setdefault(name, value)


class ToolSpan(_SpanBlock, PendingTool):
    """One tool execution being recorded; yielded by `track_tool_call`."""

    __slots__ = ()

    def set_result(self, result: Any) -> None:
        """The tool's result; kept only with `capture_content=True`."""
        self.result = result

    def set_arguments(self, arguments: Any) -> None:
        """The tool's arguments; kept only with `capture_content=True`."""
        self.arguments = arguments

    def set_tool_call_id(self, tool_call_id: Any) -> None:
        self.fields["tool_call_id"] = tool_call_id


class _Inert:
    """What the span functions return when nothing is being recorded: every setter does nothing."""

    __slots__ = ()
    id = trace_id = span_id = None

    def __enter__(self) -> _Inert:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> _Inert:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("set_", "add_")):
            return self._ignore
        raise AttributeError(name)


_INERT = _Inert()


def _with_attrs(pending: Any, attrs: dict[str, Any]) -> Any:
    if attrs:
        pending.fields.update(attrs)
    return pending


def track_llm_call(provider: Any = None, model: Any = None, operation: Any = "chat", **attrs: Any) -> LLMSpan:
    """Record one LLM call made inside the block.

        with tokentrail.track_llm_call("openai", "gpt-4o", user_id="u1") as span:
            reply = my_client.complete(prompt)
            span.set_tokens(input=reply.in_tokens, output=reply.out_tokens)
    """
    recording, route = route_if_recording()
    if not recording:
        return _INERT  # type: ignore[return-value]
    span = _with_attrs(LLMSpan(provider, model, operation, "manual", route), attrs)
    check_budget(span)
    return span


def track_tool_call(name: Any, *, tool_call_id: Any = None, arguments: Any = None, **attrs: Any) -> ToolSpan:
    """Record one tool execution made inside the block."""
    recording, route = route_if_recording()
    if not recording:
        return _INERT  # type: ignore[return-value]
    span = _with_attrs(ToolSpan(name, route), attrs)
    if tool_call_id is not None:
        span.fields["tool_call_id"] = tool_call_id
    span.arguments = arguments
    return span


# -- fields of the call open here -------------------------------------------------------------------

# Names `set_llm_attributes` takes besides the record's own fields (OpenTelemetry's and other trackers' words).
_ALIASES = {"provider_request_id": "response_id", "request_id": "response_id", "streaming": "stream",
            "cached_tokens": "cache_read_tokens", "cache_creation_tokens": "cache_write_tokens",
            "finish_reason": "finish_reasons", "request_model": "model", "prompt": "input_messages",
            "completion": "output_text"}
_REQUEST_PARAMS = frozenset({"temperature", "top_p", "top_k", "max_tokens", "stop_sequences", "stop", "seed",
                             "frequency_penalty", "presence_penalty", "choice_count", "n"})
_METADATA = frozenset({"server_address", "server_port"})
_CALL_FIELDS = frozenset(FIELDS[LLMCall])


def _open_call(helper: str) -> PendingCall | None:
    """The LLM call open in this context (a `track_llm_call` block, an `llm_instrumented` function), or
    None with one debug line."""
    span = current_span.get()
    if isinstance(span, PendingCall) and span.end_ns is None:
        return span
    log.logger.debug("tokentrail: %s() outside an open LLM call (track_llm_call, llm_instrumented): nothing set", helper)
    return None


def _set_on(call: PendingCall, name: str, value: Any) -> None:
    name = _ALIASES.get(name, name)
    fields = call.fields
    if name == "provider":
        call.provider = value
    elif name == "model":
        call.model = value
    elif name == "operation":
        call.operation = value
    elif name == "error":
        call.error = value
    elif name == "input_messages":
        call.content_in = value  # kept only with capture_content=True, like every prompt
    elif name == "output_text":
        call.content_out = value
    elif name in _REQUEST_PARAMS:
        current = fields.get("request_params")
        fields["request_params"] = {**current, name: value} if isinstance(current, dict) else {name: value}
    elif name in _METADATA:
        fields.setdefault("metadata", {})[name] = value
    elif name == "finish_reasons":
        fields["finish_reasons"] = [str(r) for r in (value if isinstance(value, (list, tuple)) else [value]) if r is not None]
    elif name in _CALL_FIELDS and name not in ("metadata", "tags"):
        coerced = coerce_field(name, value)  # a bad value is dropped with one warning; an earlier one stays
        if coerced is not None:
            fields[name] = coerced
    elif name == "metadata" and isinstance(value, dict):
        fields.setdefault("metadata", {}).update(value)
    elif name == "tags":
        fields["tags"] = value
    else:
        fields.setdefault("metadata", {})[name] = value


def set_llm_attributes(**fields: Any) -> bool:
    """Set fields of the LLM call open in this context (a `track_llm_call` block or an `llm_instrumented`
    function) from code that has no span object at hand; returns whether a call was open. Outside one it
    does nothing (one debug line).

        @tokentrail.llm_instrumented(provider="acme")
        def ask(prompt):
            reply = acme.complete(prompt)
            tokentrail.set_llm_attributes(model=reply.model, input_tokens=reply.usage.prompt,
                                          output_tokens=reply.usage.completion, provider_request_id=reply.id)
            return reply.text

    Any `LLMCall` field (`input_tokens`, `response_model`, `ttft_ms`, `user_id`, …), plus `provider`,
    `model`, `operation` (a `tokentrail.Operation`), `streaming`, `provider_request_id` / `request_id`,
    `cached_tokens`, `finish_reason(s)`, `error`, request parameters (`temperature`, `top_p`, `top_k`,
    `max_tokens`, `stop_sequences`, `seed`, `frequency_penalty`, `presence_penalty`, `choice_count`),
    `server_address` / `server_port`, `prompt` / `completion` (kept only with `capture_content=True`).
    Other names go into `metadata`. `None` values are skipped; bad values are dropped with one warning.
    """
    call = _open_call("set_llm_attributes")
    if call is None:
        return False
    for name, value in fields.items():
        if value is not None:
            _set_on(call, name, value)
    return True


def set_token_usage(input_tokens: Any = None, output_tokens: Any = None, cached_tokens: Any = None, *,
                    cache_write_tokens: Any = None, reasoning_tokens: Any = None) -> bool:
    """Token counts of the LLM call open in this context (see `set_llm_attributes`): `input_tokens`
    counts all input tokens, `cached_tokens` (cache reads) included; `reasoning_tokens` are part of
    `output_tokens`. Returns whether a call was open; outside one, does nothing (one debug line)."""
    call = _open_call("set_token_usage")
    if call is None:
        return False
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                        ("cache_read_tokens", cached_tokens), ("cache_write_tokens", cache_write_tokens),
                        ("reasoning_tokens", reasoning_tokens)):
        if value is not None:
            _set_on(call, name, value)
    return True


# -- llm_instrumented / log_llm_call ----------------------------------------------------------------


def _call_extractor(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a user's extractor must not lose the record
        name = getattr(func, "__name__", repr(func))
        log.error_once(f"extractor.{name}", f"tokentrail: extractor {name} failed; the field is left empty", exc)
        return None


class _InstrumentedCall(PendingCall):
    """A pending call whose fields come from a function's result (or its chunks), read on the worker."""

    __slots__ = ("result", "chunks", "call_args", "extractors", "closed_early")

    def __init__(self, provider: Any, model: Any, operation: Any, route: Any, extractors: tuple[Any, ...]) -> None:
        super().__init__(provider, model, operation, "manual", route)
        self.result = self.chunks = self.call_args = None
        self.extractors = extractors
        self.closed_early = False

    def extract(self, settings: Any) -> None:
        usage_of, prompt_of, text_of, model_of = self.extractors
        fields = self.fields
        if self.call_args is not None and self.content_in is None:
            args, kwargs = self.call_args
            self.content_in = _call_extractor(prompt_of, *args, **kwargs)
        usage = model = None
        texts: list[str] = []
        for item in self.chunks if self.chunks is not None else ([self.result] if self.result is not None else []):
            usage = _call_extractor(usage_of, item) or usage  # the last chunk that has usage wins
            model = model or _call_extractor(model_of, item)
            text = _call_extractor(text_of, item)
            if text:
                texts.append(text if isinstance(text, str) else str(text))
        if self.chunks is not None:
            fields.setdefault("chunk_count", len(self.chunks))
            fields["stream"] = True
            if self.closed_early:
                fields.setdefault("metadata", {})["stream_incomplete"] = True
        if usage is not None:
            for name, value in normalize_usage(usage).items():
                if value is not None:
                    fields.setdefault(name, value)
        if model is not None:
            fields.setdefault("response_model", model)
        if self.result is not None:
            fields.setdefault("response_id", pick(self.result, "id"))
        if texts and self.content_out is None:
            self.content_out = "".join(texts)


def llm_instrumented(
    provider: Any = None,
    model: Any = None,
    operation: Any = "chat",
    extract_usage: Callable[[Any], Any] | None = None,
    extract_prompt: Callable[..., Any] | None = None,
    extract_response: Callable[[Any], Any] | None = None,
    extract_model: Callable[[Any], Any] | None = None,
    **attrs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function that calls a model tokentrail has no adapter for.

    The model is `model`, else the call's `model=` keyword argument. By default
    usage, model and text are read from the result as OpenAI, Anthropic and
    Gemini shape them; pass `extract_usage(result)`, `extract_response(result)`,
    `extract_model(result)` and `extract_prompt(*args, **kwargs)` for anything
    else. For generator functions the extractors are applied to each chunk: the
    last usage wins and the texts are joined. Extractors run on the pipeline's
    worker, not in your call.
    """
    extractors = (
        extract_usage or default_usage,
        extract_prompt or default_prompt,
        extract_response or default_response_text,
        extract_model or default_model,
    )

    def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _InstrumentedCall | None:
        recording, route = route_if_recording()
        if not recording:
            return None
        call = _with_attrs(_InstrumentedCall(provider, model or kwargs.get("model"), operation, route, extractors), attrs)
        call.call_args = (args, kwargs)
        check_budget(call)
        call.enter()
        return call

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                with _streaming(call):
                    async for item in func(*args, **kwargs):
                        _chunk(call, item)
                        yield item

            return agen_wrapper
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                with _streaming(call):
                    for item in func(*args, **kwargs):
                        _chunk(call, item)
                        yield item

            return gen_wrapper
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                with _calling(call) as keep:
                    return keep(await func(*args, **kwargs))

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = start(args, kwargs)
            with _calling(call) as keep:
                return keep(func(*args, **kwargs))

        return wrapper

    return decorator


@contextlib.contextmanager
def _calling(call: _InstrumentedCall | None) -> Iterator[Callable[[Any], Any]]:
    """Around one call of a decorated function: yields `keep(result)`, which stores and returns it."""
    if call is None:
        yield _identity
        return

    def keep(result: Any) -> Any:
        call.result = result
        return result

    try:
        yield keep
    except BaseException as exc:
        call.finish(exc)
        raise
    call.finish()


@contextlib.contextmanager
def _streaming(call: _InstrumentedCall | None) -> Iterator[None]:
    """Around the iteration of a decorated generator: errors recorded, early close marked."""
    if call is None:
        yield
        return
    call.chunks = []
    try:
        yield
    except GeneratorExit:
        call.closed_early = True
        raise
    except BaseException as exc:
        call.finish(exc)
        raise
    finally:
        call.finish()


def _identity(value: Any) -> Any:
    return value


def _chunk(call: _InstrumentedCall | None, item: Any) -> None:
    if call is None:
        return
    if call.first_chunk_ns is None:
        call.first_chunk_ns = _perf_ns()
    call.chunks.append(item)


def log_llm_call(
    *,
    provider: Any = None,
    model: Any = None,
    prompt: Any = None,
    response: Any = None,
    usage: Any = None,
    duration_ms: Any = None,
    **attrs: Any,
) -> str | None:
    """Record a call that already happened; returns the record's id (`None` when not recording).

    `response` is the output text, or the provider's response object/dict (its
    usage, model, id and text are read from it). `usage` accepts OpenAI,
    Anthropic, Gemini or our own key names. `started_at` (a datetime) and
    `error` (an exception or message) may be given too.
    """
    recording, route = route_if_recording()
    if not recording:
        return None
    operation = attrs.pop("operation", "chat")
    call = _InstrumentedCall(provider, model, operation, route, (default_usage, default_prompt, default_response_text, default_model))
    started_at = attrs.pop("started_at", None)
    error = attrs.pop("error", None)
    _with_attrs(call, attrs)
    call.end_ns = call.start_ns
    duration = coerce_field("duration_ms", duration_ms)  # None (and one warning) when unusable
    if duration is not None and duration >= 1e12:  # over 30 years: not a duration (and past what a clock holds)
        log.warn_once("coerce.duration_ms.range", "tokentrail: ignored duration_ms=%r: too large to be a duration", duration)
        duration = None
    if duration is not None:
        call.start_ns -= int(duration * 1e6)
        call.wall_ns -= int(duration * 1e6)
    else:
        call.fields["duration_ms"] = None  # unknown, not 0: it stays out of latency figures
    if started_at is not None:
        from .times import parse_time

        try:
            call.wall_ns = int(parse_time(started_at).timestamp() * 1e9)
        except ValueError:
            log.warn_once("coerce.started_at", "tokentrail: ignored started_at=%r: expected a datetime", started_at)
    if error is not None:
        call.error = error
    if prompt is not None:
        call.content_in = prompt
    if isinstance(response, str):
        call.content_out = response
    else:
        call.result = response
    if usage is not None:
        for name, value in normalize_usage(usage).items():
            if value is not None:
                call.fields.setdefault(name, value)
    submit(call)
    return record_id(call.wall_ns, call.span)


# -- workflows and outcomes -------------------------------------------------------------------------


class WorkflowRun:
    """One run of a workflow: what `with workflow(...) as run` yields."""

    # A span like the others to the calls inside it: their parent, never absorbing them.
    absorbs = defers = False
    end_ns = None

    __slots__ = ("name", "run_id", "trace", "span", "record")

    def __init__(self, name: str, trace: int, span: int, record: Any = None) -> None:
        self.name = name
        self.trace = trace  # ints, as spans keep them: the parent of the calls inside
        self.span = span
        self.record = record  # the pending Span recorded when the run ends (None when not recording)
        self.run_id = f"{new_trace_id():032x}"

    @property
    def trace_id(self) -> str:
        return f"{self.trace:032x}"

    def emit_outcome(self, name: str, value: Any = None, success: bool = True, **attrs: Any) -> None:
        """Record what this run achieved (a lead qualified, a ticket resolved, …)."""
        _emit(name, value, success, attrs, self)

    def __repr__(self) -> str:
        return f"<WorkflowRun {self.name} {self.run_id}>"


class workflow(ContextBlock):
    """One run of a business workflow; every call inside carries its name and run id.

        with tokentrail.workflow("support-ticket", customer_id="acme") as run:
            ...
            run.emit_outcome("resolved", value=1)

        @tokentrail.workflow("nightly-digest")     # each call is a new run
        async def digest(): ...

    Attribution keywords (`user_id`, `customer_id`, `feature`, `session_id`,
    `tags`) label the calls inside as `attributes()` would; others become metadata.
    """

    def __init__(self, name: str, **attrs: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"workflow needs a non-empty name, not {name!r}")
        self.name = name
        self._fields = {k: attrs.pop(k, None) for k in ATTRIBUTION_FIELDS}
        self._tags = attrs.pop("tags", None)
        self._metadata = attrs

    def _enter(self) -> tuple[Any, Any]:
        tokens = []
        if any(v is not None for v in self._fields.values()) or self._tags or self._metadata:
            merged = merge_attributes(attributes_var.get(), self._fields, self._tags, self._metadata)
            tokens.append((attributes_var, attributes_var.set(merged)))
        recording, route = route_if_recording()
        if recording:  # the run is recorded as a Span too (with its attribution): the parent the run tree hangs from
            span = PendingSpan(self.name, "invoke_workflow", "manual", route)
            run = WorkflowRun(self.name, span.trace, span.span, span)
            span.fields.update(workflow=self.name, workflow_run_id=run.run_id)
        else:
            parent = current_span.get()
            run = WorkflowRun(self.name, parent.trace if parent is not None else new_trace_id(), new_span_id())
        tokens += [(current_workflow, current_workflow.set(run)), (current_span, current_span.set(run))]
        return (tokens, run), run

    def _exit(self, state: Any, exc: BaseException | None) -> None:
        tokens, run = state
        for var, token in reversed(tokens):
            reset_quietly(var, token)
        if run.record is not None:
            run.record.finish(exc)


def _emit(name: Any, value: Any, success: Any, attrs: dict[str, Any], run: WorkflowRun | None) -> None:
    recording, route = route_if_recording()
    if not recording:
        return
    submit(_with_attrs(PendingOutcome(name, value, success, run, route), attrs))


def emit_outcome(name: str, value: Any = None, success: bool = True, **attrs: Any) -> None:
    """Record an outcome of the workflow run in effect here (or of no workflow, if none is)."""
    _emit(name, value, success, attrs, None)

