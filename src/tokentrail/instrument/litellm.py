"""LiteLLM (>= 1.40): every call LiteLLM makes, through its own callback system.

Recorded: `completion` / `acompletion` (tools, streams), `text_completion`,
`embedding`, `image_generation`, `amoderation`, `responses`, `transcription`,
`speech` and their async twins, whichever provider LiteLLM routes them to.

How it hooks in (two parts, both undone by `uninstrument("litellm")`):

- A `CustomLogger` (`litellm_callback()`, one per process) in `litellm.callbacks`:
  `log_pre_api_call` names the provider LiteLLM routed to (`openai/…`,
  `bedrock/…`, a bare `gpt-4o`) and the request; the success and failure
  callbacks (sync ones on LiteLLM's thread pool, async ones awaited) end a
  call with `kwargs["standard_logging_object"]` and the response. Registered
  by hand (`litellm.callbacks = [tokentrail.litellm_callback()]`, without
  `init()`), the logger alone records every call: it opens the call in
  `log_pre_api_call`, which runs in the caller's context.
- The public entry points (`litellm.completion`, `litellm.acompletion`, …) are
  wrapped so that each call is opened and closed *in the caller's context*:
  LiteLLM runs the provider code of some async calls (`aembedding`,
  `atext_completion`, …) in a thread-pool copy of the context, where an
  inner SDK call could not see the LiteLLM call, and its sync success
  callbacks run on a thread pool after the call has returned. A call that
  returns a result (not a stream) or raises is therefore recorded when it
  returns, on the calling thread, with the response it returned; a stream is
  recorded when LiteLLM reports it finished. LiteLLM's own retries
  (`num_retries`) stay one call, with `attempt`. Functions LiteLLM itself
  does not log (sync `moderation`) are left alone (the SDK patch records it).

Recorded once: when LiteLLM reaches the provider through an SDK tokentrail
patches (`openai/…`, `azure/…`, `text-completion-openai/…` and the
OpenAI-compatible providers go through the openai SDK), the SDK's record is
the call and LiteLLM's defers to it (its parent, labels `litellm_call_id`);
LiteLLM's record is the call only when LiteLLM used its own HTTP code
(`anthropic/…`, `hosted_vllm/…`, `bedrock/…`, the Responses API, …).

Fields: LiteLLM answers in OpenAI's shapes, so request and response are read
with the openai adapter's endpoint readers. Tokens come from the response's
`usage` (cache reads, cache writes from `cache_creation_input_tokens`,
reasoning); LiteLLM's `prompt_tokens` already includes Anthropic's cache
reads and writes. A usage of 0 input and 0 output tokens (a stream the
provider reported no usage for, before LiteLLM 1.110) is unknown, not zero:
the core estimates it and flags `metadata.tokens_estimated`. From 1.110
LiteLLM counts such a stream's tokens itself with its tokenizer and says
nothing of it: its counts are kept as they come, unflagged. Cost is priced by tokentrail;
LiteLLM's own `response_cost` is kept as `metadata.litellm_cost`. A LiteLLM
cache hit is `cache_hit=True` with no tokens and cost 0. TTFT of a stream
is LiteLLM's `completionStartTime`; its duration LiteLLM's start to end.

Known limits: a LiteLLM stream left unfinished, on a provider LiteLLM reaches
with its own HTTP code, is never reported by LiteLLM (it keeps the stream
referenced) and is not recorded; through the openai SDK the SDK's record has
`metadata.stream_incomplete`. A budget set to `raise` refuses a LiteLLM call
only through the wrapped entry points (LiteLLM swallows exceptions raised
from its callbacks).
"""

from __future__ import annotations

import functools
import importlib
import queue
import threading
import time
import uuid
from typing import Any, Callable

from .. import log
from ..context import current_span, reset_quietly
from ..errors import BudgetExceeded
from ..runtime import route_if_recording
from ..semconv import normalize_provider, server_from_url
from ..shapes import pick
from ..usage import TOKEN_KEYS
from . import openai as openai_readers
from .callback_point import Runs
from .endpoint import usage_fields
from .patch import Hook, MethodPatch, Undo

__all__ = ["litellm_callback", "FunctionPatch", "IfPresent", "provider_name", "token_fields", "outcome_fields"]

NAME = "litellm"
DISTRIBUTION = "litellm"
MIN_VERSION = (1, 40)


class FunctionPatch:
    """Replace the module-level function `module.attribute` with a wrapt wrapper that `make(adapter)`
    builds (None: leave it alone). A release without that function is skipped; a missing module raises.

    (MethodPatch's twin for module functions; the DSPy adapter uses it too.)
    """

    __slots__ = ("module", "attribute", "make")

    def __init__(self, module: str, attribute: str, make: Callable[[Any, Any], Callable[..., Any] | None]) -> None:
        self.module, self.attribute, self.make = module, attribute, make

    def apply(self, adapter: Any) -> Undo | None:
        import wrapt

        module = importlib.import_module(self.module)
        original = getattr(module, self.attribute, None)
        wrapper = None if original is None else self.make(adapter, original)
        if wrapper is None:
            return None
        own = self.attribute in vars(module)
        patched = wrapt.FunctionWrapper(original, wrapper)
        setattr(module, self.attribute, patched)

        def undo() -> None:
            if vars(module).get(self.attribute) is patched:
                if own:
                    setattr(module, self.attribute, original)
                else:
                    delattr(module, self.attribute)

        return undo

    def __repr__(self) -> str:
        return f"FunctionPatch({self.module}.{self.attribute})"


class IfPresent:
    """A `MethodPatch` whose module or class some releases of the library lack: skipped there,
    instead of leaving the whole library alone (the registry's answer to a missing class)."""

    __slots__ = ("patch",)

    def __init__(self, patch: Any) -> None:
        self.patch = patch

    @property
    def module(self) -> str:
        return self.patch.module

    def apply(self, adapter: Any) -> Undo | None:
        try:
            owner = getattr(importlib.import_module(self.patch.module), self.patch.owner, None)
        except ImportError:
            return None
        return None if owner is None else self.patch.apply(adapter)

    def __repr__(self) -> str:
        return f"IfPresent({self.patch!r})"


# -- pure readers ----------------------------------------------------------------------------------------

# LiteLLM's provider names that are not ours: what `normalize_provider` should read instead.
_PROVIDERS = {
    "text-completion-openai": "openai", "openai_like": "openai", "custom_openai": "openai", "chatgpt": "openai",
    "azure_text": "azure", "anthropic_text": "anthropic", "cohere_chat": "cohere", "ollama_chat": "ollama",
    "vertex_ai_beta": "vertex_ai", "sagemaker_chat": "sagemaker", "watsonx_text": "watsonx",
    "codestral": "mistral", "text-completion-codestral": "mistral", "hosted_vllm": "vllm", "ai21_chat": "ai21",
    "meta_llama": "meta",
}

# LiteLLM's call type (sync name) -> the openai adapter's endpoint that reads its request and response.
_ENDPOINTS = {
    "completion": "/chat/completions", "text_completion": "/completions", "embedding": "/embeddings",
    "image_generation": "/images/generations", "moderation": "/moderations", "responses": "/responses",
    "transcription": "/audio/transcriptions", "speech": "/audio/speech",
}


def provider_name(custom_llm_provider: Any) -> str | None:
    """Our provider name for LiteLLM's `custom_llm_provider` (`azure` -> `azure.ai.openai`, `hosted_vllm` -> `vllm`)."""
    if not custom_llm_provider:
        return None
    text = str(getattr(custom_llm_provider, "value", custom_llm_provider))
    return normalize_provider(_PROVIDERS.get(text, text))


def call_kind(call_type: Any) -> str:
    """LiteLLM's call type without its async prefix (`acompletion` -> `completion`)."""
    name = str(getattr(call_type, "value", call_type) or "completion")
    if name not in _ENDPOINTS and name.startswith("a") and name[1:] in _ENDPOINTS:
        return name[1:]
    return name


def _endpoint(kind: str) -> Any:
    """The openai adapter's endpoint for a call type (chat for those it has none for: rerank, …)."""
    return openai_readers.ENDPOINTS.get(_ENDPOINTS.get(kind, ""), openai_readers.ENDPOINTS["/chat/completions"])


def token_fields(usage: Any) -> dict[str, Any]:
    """Our token fields from a LiteLLM (OpenAI-shaped) usage: cache writes from Anthropic's
    `cache_creation_input_tokens`; 0 input and 0 output tokens mean the provider reported none."""
    fields = usage_fields(usage)
    if not fields.get("input_tokens") and not fields.get("output_tokens"):
        return {}
    write = pick(usage, "cache_creation_input_tokens") or pick(usage, "prompt_tokens_details", "cache_creation_tokens")
    if write and fields.get("cache_write_tokens") is None:
        fields["cache_write_tokens"] = write
    return fields


def request_fields(kind: str, body: Any) -> tuple[dict[str, Any], Any]:
    """The request's fields and messages, read as the openai adapter reads the same endpoint."""
    if not isinstance(body, dict):
        return {}, None
    fields, content = _endpoint(kind).request(body)
    return {k: v for k, v in fields.items() if v is not None}, content


def response_fields(kind: str, response: Any) -> tuple[dict[str, Any], Any]:
    """Fields and text of what LiteLLM returned (or assembled from a stream)."""
    if response is None:
        return {}, None
    choices = pick(response, "choices")
    if choices is not None:
        reader = openai_readers.chat_response if pick(choices, 0, "message") is not None else openai_readers.completion_response
    elif pick(response, "output") is not None:
        reader = openai_readers.responses_response
    else:
        reader = _endpoint(kind).response
    fields, text = reader(response)
    fields = {k: v for k, v in fields.items() if v is not None and k not in TOKEN_KEYS}
    fields.update(token_fields(pick(response, "usage")))
    return fields, text if isinstance(text, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def outcome_fields(kind: str, response: Any, logged: Any) -> tuple[dict[str, Any], Any]:
    """Everything LiteLLM tells about a finished call: the response, and its standard logging payload
    (`logged`, None when the call ended at its entry point) for cost, cache hit, stream and times."""
    fields, text = response_fields(kind, response)
    logged = logged if isinstance(logged, dict) else {}
    hidden = pick(response, "_hidden_params")
    hidden = hidden if isinstance(hidden, dict) else {}
    metadata = dict(fields.get("metadata") or {})
    cost = logged.get("response_cost", hidden.get("response_cost"))
    if _number(cost) is not None:
        metadata["litellm_cost"] = cost
    base = logged.get("api_base") or hidden.get("api_base")  # where LiteLLM sent it (OTel server.address/port)
    server = server_from_url(base) if isinstance(base, str) else None
    if server is not None:
        metadata["server_address"] = server[0]
        if server[1] is not None:
            metadata["server_port"] = server[1]
    if metadata:
        fields["metadata"] = metadata
    if logged.get("cache_hit") is True or hidden.get("cache_hit") is True:
        for name in TOKEN_KEYS:
            fields.pop(name, None)
        fields.update(cache_hit=True, cost_usd=0.0, input_cost_usd=0.0, output_cost_usd=0.0)
        return fields, text
    start, end, first = (_number(logged.get(k)) for k in ("startTime", "endTime", "completionStartTime"))
    if start is not None and end is not None and end >= start:
        fields["duration_ms"] = (end - start) * 1000
    if logged.get("stream") is True:
        fields["stream"] = True
        if start is not None and first is not None and first >= start:
            fields["ttft_ms"] = (first - start) * 1000
    return fields, text


def split_model(model: Any, providers: Any) -> tuple[Any, str | None]:
    """(`gpt-4o`, `openai`) from LiteLLM's `openai/gpt-4o`; the model as given when it names no provider."""
    if not isinstance(model, str):
        return model, None
    prefix, _, rest = model.partition("/")
    if rest and prefix in providers:
        return rest, prefix
    return model, None


# -- calls in flight ---------------------------------------------------------------------------------------

_runs = Runs("litellm")


class _Open:
    """A LiteLLM call in flight: its record, where it was opened, what the request said."""

    __slots__ = ("key", "keys", "call", "kind", "in_entry", "attempts", "messages", "token", "ended")

    def __init__(self, key: Any, call: Any, kind: str, in_entry: bool) -> None:
        self.key, self.keys, self.call, self.kind, self.in_entry = key, [key], call, kind, in_entry
        self.attempts = 0
        self.messages = None
        self.token = None  # the entry point's: restores the caller's current span when it returns
        self.ended = None  # a stream read to its end: (clock, text so far), for the fallback below


_open: dict[Any, _Open] = {}  # litellm_call_id -> the call
_done: dict[Any, None] = {}  # ids of calls already recorded: a late callback for them does nothing
_DONE_MAX = 4096
_lock = threading.Lock()


def _start(key: Any, kind: str, provider: Any, model: Any, body: Any, in_entry: bool, labels: dict[str, Any]) -> _Open | None:
    """Open the record of a LiteLLM call here (the calling context: its attribution and parent)."""
    call = _runs.start_call(key, provider=provider_name(provider), model=model, operation=_endpoint(kind).operation,
                            labels=labels)
    if call is None:
        return None
    opened = _Open(key, call, kind, in_entry)
    fields, opened.messages = request_fields(kind, body)
    call.fields.update(fields)
    _open[key] = opened
    return opened


def _finish(key: Any, response: Any = None, logged: Any = None, error: Any = None,
            extra: dict[str, Any] | None = None, text: Any = None) -> None:
    """End the call `key` belongs to (once: whoever comes first, the entry point or a callback)."""
    with _lock:
        opened = _open.get(key)
        if opened is None:
            return
        for name in opened.keys:
            _open.pop(name, None)
            _done[name] = None
        while len(_done) > _DONE_MAX:
            del _done[next(iter(_done))]
    fields, read = outcome_fields(opened.kind, response, logged) if error is None else ({}, None)
    fields.update(extra or {})
    fields["attempt"] = max(opened.attempts, 1)  # pre-calls seen: one per attempt (LiteLLM's `num_retries`)
    _runs.end_call(opened.key, output=read if text is None else text, messages=opened.messages, error=error, **fields)


def _was_recorded(key: Any) -> bool:
    with _lock:
        return key in _done


# -- the entry points -------------------------------------------------------------------------------------


def _providers() -> frozenset[str]:
    return _provider_set(id(_litellm().provider_list))


@functools.lru_cache(maxsize=4)
def _provider_set(_: int) -> frozenset[str]:
    return frozenset(str(getattr(p, "value", p)) for p in _litellm().provider_list)


def _litellm() -> Any:
    import litellm

    return litellm


def _open_entry(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Open | None:
    """A public LiteLLM function was called: open its record here, in the caller's context. None: not
    recorded (or already open: LiteLLM calling itself again for a retry). Raises only `BudgetExceeded`."""
    if not route_if_recording()[0]:
        return None
    token = current_span.set(current_span.get())  # to give the caller back its span, whatever LiteLLM leaves
    try:
        _ensure_registered()
        key = kwargs.get("litellm_call_id")
        if key is None:
            key = kwargs["litellm_call_id"] = str(uuid.uuid4())
        elif key in _open:
            reset_quietly(current_span, token)
            return None
        model, provider = split_model(args[0] if args else kwargs.get("model"), _providers())
        opened = _start(key, kind, kwargs.get("custom_llm_provider") or provider, model, kwargs, True,
                        {"litellm_call_id": key})
    except BudgetExceeded:
        reset_quietly(current_span, token)
        raise
    except Exception as exc:  # noqa: BLE001 - LiteLLM must run whatever happens here
        log.error_once("litellm.entry", "tokentrail: could not open a LiteLLM call", exc)
        opened = None
    if opened is None:
        reset_quietly(current_span, token)
        return None
    opened.token = token
    return opened


def _returned(opened: _Open, result: Any = None, error: BaseException | None = None) -> None:
    """The entry point returned or raised: a result or an error ends the call now; a stream ends when
    LiteLLM reports it finished."""
    reset_quietly(current_span, opened.token)
    opened.in_entry = False
    try:
        if error is not None:
            _finish(opened.key, error=error)
        elif not (hasattr(result, "__next__") or hasattr(result, "__anext__")):
            _finish(opened.key, response=result)
    except Exception as exc:  # noqa: BLE001
        log.error_once("litellm.returned", "tokentrail: could not read what LiteLLM returned", exc)


def _entry(kind: str) -> Callable[[Any, Any], Callable[..., Any] | None]:
    """The wrapper of one public function (sync or async): None for one LiteLLM does not log."""

    def make(adapter: Any, original: Any) -> Callable[..., Any] | None:
        if not hasattr(original, "__wrapped__"):  # not under LiteLLM's logging `client`: no callback would end it
            return None
        import inspect

        if inspect.iscoroutinefunction(original):

            async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                opened = _open_entry(kind, args, kwargs)
                if opened is None:
                    return await wrapped(*args, **kwargs)
                try:
                    result = await wrapped(*args, **kwargs)
                except BaseException as exc:
                    _returned(opened, error=exc)
                    raise
                _returned(opened, result)
                return result

            return async_wrapper

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            opened = _open_entry(kind, args, kwargs)
            if opened is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                _returned(opened, error=exc)
                raise
            _returned(opened, result)
            return result

        return wrapper

    return make


# -- streams ---------------------------------------------------------------------------------------------------

# How long after a stream's end LiteLLM has to report it before tokentrail records it without LiteLLM's
# word (LiteLLM reports nothing for a stream it assembles no response from: no content, no choices).
STREAM_REPORT_GRACE_S = 2.0


def _stream_key(stream: Any) -> Any:
    return getattr(getattr(stream, "logging_obj", None), "litellm_call_id", None)


def _stream_step(stream: Any, error: BaseException | None) -> None:
    """After each `__next__` / `__anext__` of LiteLLM's stream wrapper: first chunk, end, or failure."""
    opened = _open.get(_stream_key(stream))
    if opened is None or opened.in_entry:
        return
    if error is None:
        if opened.call.first_chunk_ns is None:
            _runs.first_chunk(opened.key)
    elif isinstance(error, (StopIteration, StopAsyncIteration)):
        if opened.ended is None:
            opened.ended = (time.perf_counter_ns(), getattr(stream, "response_uptil_now", None))
            _sweeper.add(opened.key)
    else:
        _finish(opened.key, error=error, extra={"stream": True})


def _stream_next(adapter: Any) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            chunk = wrapped(*args, **kwargs)
        except BaseException as exc:
            _guard(_stream_step, instance, exc)
            raise
        _guard(_stream_step, instance, None)
        return chunk

    return wrapper


def _stream_anext(adapter: Any) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            chunk = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _guard(_stream_step, instance, exc)
            raise
        _guard(_stream_step, instance, None)
        return chunk

    return wrapper


def _unreported(key: Any) -> None:
    """A stream read to its end that LiteLLM did not report within the grace: record what we saw."""
    opened = _open.get(key)
    if opened is None or opened.ended is None:
        return
    ended, text = opened.ended
    duration = (ended - opened.call.start_ns) / 1e6
    _finish(key, extra={"stream": True, "duration_ms": duration}, text=text if isinstance(text, str) and text else None)


class _Sweeper:
    """One daemon thread that runs `_unreported` for each ended stream once its grace has passed."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[float, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, key: Any) -> None:
        self._queue.put((time.monotonic() + STREAM_REPORT_GRACE_S, key))
        if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="tokentrail-litellm-streams", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            when, key = self._queue.get()
            delay = when - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _guard(_unreported, key)


_sweeper = _Sweeper()


# -- the callbacks -------------------------------------------------------------------------------------------


def _guard(fn: Callable[..., None], *args: Any) -> None:
    """Run a handler; nothing it raises reaches LiteLLM or the application."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        log.error_once(f"litellm.{fn.__name__}", "tokentrail: could not read what LiteLLM reported", exc)


def _details(kwargs: Any) -> tuple[Any, dict[str, Any]]:
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    return kwargs.get("litellm_call_id"), kwargs


def _open_late(key: Any, kwargs: dict[str, Any]) -> _Open | None:
    """A call LiteLLM reports that no entry point or pre-call opened (a cache hit, a mock): open it now."""
    logged = kwargs.get("standard_logging_object") or {}
    kind = call_kind(logged.get("call_type") or kwargs.get("call_type"))
    provider = logged.get("custom_llm_provider") or kwargs.get("custom_llm_provider")
    try:
        return _start(key, kind, provider, logged.get("model") or kwargs.get("model"), kwargs, False,
                      {"litellm_call_id": key})
    except BudgetExceeded:
        return None


def on_pre_call(model: Any, messages: Any, kwargs: Any) -> None:
    """`log_pre_api_call`, in the caller's context (or a copy of it), once per attempt."""
    key, kwargs = _details(kwargs)
    if key is None:
        return
    opened = _open.get(key)
    if opened is None:
        opened = _alias_or_open(key, kwargs, current_span.get())
        if opened is None:
            return
    opened.attempts += 1
    provider = provider_name(kwargs.get("custom_llm_provider"))
    if provider:
        opened.call.provider = provider
    if model:
        opened.call.model = model
    if opened.messages is None and messages is not None:
        opened.messages = messages
    if opened.call.fields.get("request_params") is None:
        fields, _ = request_fields(opened.kind, kwargs.get("optional_params"))
        if fields.get("request_params"):
            opened.call.fields["request_params"] = fields["request_params"]


def _alias_or_open(key: Any, kwargs: dict[str, Any], current: Any) -> _Open | None:
    """A pre-call for an id no entry point opened: LiteLLM calling itself under a new id inside a call
    we opened (the same call), or a call made while the logger is registered by hand (open it here)."""
    owner = next((o for o in list(_open.values()) if o.call is current and o.in_entry), None)
    if owner is not None:
        owner.keys.append(key)
        _open[key] = owner
        return owner
    if _was_recorded(key):  # a retry after the first attempt's failure was reported: a new call
        with _lock:
            _done.pop(key, None)
    _walk_out_stale()
    return _open_late(key, kwargs)


def _walk_out_stale() -> None:
    """Without the entry points, a call LiteLLM made earlier in this context may still be the current
    span (its end is reported later, on a thread pool): it is not the parent of what comes next."""
    current = current_span.get()
    while current is not None and getattr(current, "source", None) == "litellm" and current.end_ns is None:
        current = current.outer
        current_span.set(current)


def on_post_call(kwargs: Any) -> None:
    """`log_post_api_call`, in the caller's context after the provider answered: the call opened by a
    hand-registered logger stops being the parent of what the caller does next."""
    key, kwargs = _details(kwargs)
    opened = _open.get(key)
    if opened is not None and not opened.in_entry and current_span.get() is opened.call:
        current_span.set(opened.call.outer)


def on_success(kwargs: Any, response: Any) -> None:
    key, kwargs = _details(kwargs)
    if key is None:
        return
    logged = kwargs.get("standard_logging_object")
    opened = _open.get(key)
    if opened is not None and opened.in_entry:
        return  # the entry point ends it with what it returns
    if opened is None:
        if _was_recorded(key) or _open_late(key, kwargs) is None:
            return
    _finish(key, response=response, logged=logged)


def on_failure(kwargs: Any, response: Any) -> None:
    key, kwargs = _details(kwargs)
    if key is None:
        return
    opened = _open.get(key)
    if opened is not None and opened.in_entry:
        return  # the entry point sees the exception (after LiteLLM's own retries) and ends it
    if opened is None:
        if _was_recorded(key):
            return
        opened = _open_late(key, kwargs)
        if opened is None:
            return
    on_post_call(kwargs)
    logged = kwargs.get("standard_logging_object") or {}
    error = kwargs.get("exception") or (logged.get("error_str") or "LiteLLM call failed")
    _finish(key, error=error)


# -- the logger ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _logger_class() -> type:
    from litellm.integrations.custom_logger import CustomLogger

    class TokentrailLogger(CustomLogger):  # type: ignore[misc,valid-type]
        """tokentrail's LiteLLM logger: records every LiteLLM call (`tokentrail.litellm_callback()`)."""

        def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            _guard(on_pre_call, model, messages, kwargs)

        def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            _guard(on_post_call, kwargs)

        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            _guard(on_success, kwargs, response_obj)

        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            _guard(on_failure, kwargs, response_obj)

        async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            _guard(on_success, kwargs, response_obj)

        async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            _guard(on_failure, kwargs, response_obj)

        def __repr__(self) -> str:
            return "<tokentrail LiteLLM logger>"

    return TokentrailLogger


_logger: Any = None
_logger_lock = threading.Lock()


def litellm_callback() -> Any:
    """The LiteLLM logger, for those who register callbacks by hand:
    `litellm.callbacks = [tokentrail.litellm_callback()]` (`init()` registers it for you).
    One per process: registering it twice records nothing twice."""
    global _logger
    with _logger_lock:
        if _logger is None:
            _logger = _logger_class()()
        return _logger


# LiteLLM copies `litellm.callbacks` into these lists on each call; undoing removes it from all of them.
_CALLBACK_LISTS = ("callbacks", "input_callback", "success_callback", "failure_callback",
                   "_async_success_callback", "_async_failure_callback", "_async_input_callback")


def _ensure_registered() -> None:
    """The logger is in `litellm.callbacks` (an application that replaced the list since `init()` dropped it)."""
    callbacks = _litellm().callbacks
    handler = litellm_callback()
    if isinstance(callbacks, list) and handler not in callbacks:
        callbacks.append(handler)


def install(adapter: Any) -> Undo:
    import litellm

    handler = litellm_callback()
    if handler not in litellm.callbacks:
        litellm.callbacks.append(handler)

    def undo() -> None:
        for name in _CALLBACK_LISTS:
            found = getattr(litellm, name, None)
            while isinstance(found, list) and handler in found:
                found.remove(handler)

    return undo


_KINDS = {"completion": "completion", "acompletion": "completion", "text_completion": "text_completion",
          "atext_completion": "text_completion", "embedding": "embedding", "aembedding": "embedding",
          "image_generation": "image_generation", "aimage_generation": "image_generation",
          "moderation": "moderation", "amoderation": "moderation", "responses": "responses", "aresponses": "responses",
          "transcription": "transcription", "atranscription": "transcription", "speech": "speech", "aspeech": "speech"}

_STREAMS = "litellm.litellm_core_utils.streaming_handler"

PATCHES = (
    Hook("litellm", install),
    *(FunctionPatch("litellm", name, _entry(kind)) for name, kind in _KINDS.items()),
    IfPresent(MethodPatch(_STREAMS, "CustomStreamWrapper", "__next__", _stream_next)),
    IfPresent(MethodPatch(_STREAMS, "CustomStreamWrapper", "__anext__", _stream_anext)),
)
