"""DSPy (>= 2.5): modules as parent spans, and each LM call recorded once, whichever engine runs it.

- Modules: every `dspy.Module` call (`__call__` / `acall`: `Predict`,
  `ChainOfThought`, `ReAct`, your own programs) is a `Span` named after its
  class (kind `module`; `ReAct` is an `agent`), the parent of the modules and
  LM calls inside it.
- LM calls: every `dspy.BaseLM` call (`__call__` / `acall`) opens a call that
  *defers* (callback_point): when an SDK patch or the LiteLLM hook records
  the same call underneath (DSPy's `engine="litellm"`, DSPy before 3.4), that
  record is the call, with the module as parent. When nothing underneath
  records it — DSPy's own HTTP engine (`engine="auto"` for known providers,
  `"lm15"`), a `DummyLM`, a custom engine — DSPy's call is the record, with
  the usage DSPy read (`dspy.clients.execution.finalize(lm, call, result)`,
  the one point both engines pass: `result.usage`, OpenAI-shaped),
  `response_model`, the output text, and DSPy's own cost as
  `metadata.dspy_cost` (tokentrail prices it). Provider and model come from
  the LM's `provider/model` name.
- Cache hits (DSPy's cache answers without calling the provider): recorded
  as `cache_hit=True`, no tokens, cost 0.
- Errors: DSPy's `LMError`s (`LMRateLimitError` has `.status`) are recorded
  with their status and category; a budget set to `raise` stops the LM call
  before DSPy runs it (`BudgetExceeded` reaches the caller).

Why patches and not `dspy.configure(callbacks=[...])`: configuring DSPy from
an import hook would make the importing thread (or async task) the owner of
DSPy's settings, and a later `dspy.configure(callbacks=...)` by the
application would drop ours; the patched methods are the same points DSPy's
callbacks wrap (`with_callbacks`), seen in the caller's context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable

from .. import log
from ..context import current_span, reset_quietly
from ..errors import BudgetExceeded
from ..runtime import route_if_recording
from ..shapes import pick
from ..usage import TOKEN_KEYS
from .callback_point import Runs
from .litellm import FunctionPatch, IfPresent, provider_name, token_fields
from .patch import MethodPatch

NAME = "dspy"
DISTRIBUTION = "dspy"
MIN_VERSION = (2, 5)

_runs = Runs("dspy")
# The DSPy LM call open in this context: `finalize` hands it DSPy's result.
_current: ContextVar[Any] = ContextVar("tokentrail.dspy.lm", default=None)

_OPERATIONS = {"chat": "chat", "text": "text_completion", "responses": "chat"}
_AGENTS = frozenset({"ReAct", "CodeAct", "Avatar"})


# -- pure readers ------------------------------------------------------------------------------------------


def split_model(model: Any) -> tuple[Any, str | None]:
    """(`gpt-4o-mini`, `openai`) from DSPy's `openai/gpt-4o-mini` (DSPy names models as LiteLLM does)."""
    if isinstance(model, str) and "/" in model:
        prefix, _, rest = model.partition("/")
        return rest, provider_name(prefix)
    return model, None


def result_fields(result: Any) -> tuple[dict[str, Any], Any]:
    """Fields and output text of DSPy's `CallResult` (both engines)."""
    fields: dict[str, Any] = {}
    raw = pick(result, "raw")
    response = pick(result, "responses", 0) or raw
    if pick(result, "response_model"):
        fields["response_model"] = pick(result, "response_model")
    response_id = pick(response, "id")
    if isinstance(response_id, str):
        fields["response_id"] = response_id
    cost = pick(result, "cost")
    if pick(result, "cache_hit") is True:  # DSPy answered from its cache: no provider call, nothing paid
        fields.update(cache_hit=True, cost_usd=0.0, input_cost_usd=0.0, output_cost_usd=0.0)
    else:
        fields.update(token_fields(pick(result, "usage")))
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            fields["metadata"] = {"dspy_cost": cost}
    finish = pick(response, "finish_reason") or pick(response, "choices", 0, "finish_reason")
    if isinstance(finish, str):
        fields["finish_reasons"] = [finish]
    first = pick(result, "outputs", 0)
    text = first if isinstance(first, str) else pick(first, "text")
    return fields, text if isinstance(text, str) else None


def request_content(prepared: Any) -> Any:
    """The messages (or prompt) of DSPy's prepared call."""
    return pick(prepared, "legacy", "messages") or pick(prepared, "messages") or pick(prepared, "prompt")


# -- LM calls ---------------------------------------------------------------------------------------------------


class _LMRun:
    """A DSPy LM call in flight: its key, what `finalize` saw, and the caller's span to give back."""

    __slots__ = ("key", "lm", "result", "messages", "token", "span_token")

    def __init__(self, lm: Any) -> None:
        self.key, self.lm = object(), lm
        self.result = self.messages = self.token = self.span_token = None


def _open_lm(lm: Any) -> _LMRun | None:
    """Open the call's record in the caller's context. Raises only `BudgetExceeded`."""
    if not route_if_recording()[0]:
        return None
    run = _LMRun(lm)
    run.span_token = current_span.set(current_span.get())
    try:
        model, provider = split_model(getattr(lm, "model", None))
        call = _runs.start_call(run.key, provider=provider, model=model,
                                operation=_OPERATIONS.get(getattr(lm, "model_type", "chat"), "chat"))
    except BudgetExceeded:
        reset_quietly(current_span, run.span_token)
        raise
    except Exception as exc:  # noqa: BLE001
        log.error_once("dspy.lm", "tokentrail: could not open a DSPy LM call", exc)
        call = None
    if call is None:
        reset_quietly(current_span, run.span_token)
        return None
    run.token = _current.set(run)
    return run


def _close_lm(run: _LMRun, error: BaseException | None) -> None:
    reset_quietly(_current, run.token)
    reset_quietly(current_span, run.span_token)
    try:
        fields, text = ({}, None) if error is not None or run.result is None else result_fields(run.result)
        _runs.end_call(run.key, output=text, messages=run.messages, error=error, **fields)
    except Exception as exc:  # noqa: BLE001
        log.error_once("dspy.lm.end", "tokentrail: could not read a DSPy LM result", exc)


def _finalize(adapter: Any, original: Any) -> Callable[..., Any]:
    """`finalize(lm, call, result)`: hands DSPy's result to the LM call open here."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        run = _current.get()
        if run is not None:
            lm = args[0] if args else kwargs.get("lm")
            if lm is run.lm:
                run.result = args[2] if len(args) > 2 else kwargs.get("result")
                run.messages = request_content(args[1] if len(args) > 1 else kwargs.get("call"))
        return wrapped(*args, **kwargs)

    return wrapper


# -- modules -----------------------------------------------------------------------------------------------------


def _open_module(module: Any) -> tuple[Any, Any] | None:
    if not route_if_recording()[0]:
        return None
    token = current_span.set(current_span.get())
    key = object()
    name = type(module).__name__
    if _runs.start_span(key, name, kind="agent" if name in _AGENTS else "module") is None:
        reset_quietly(current_span, token)
        return None
    return key, token


def _close_module(opened: tuple[Any, Any], error: BaseException | None) -> None:
    key, token = opened
    reset_quietly(current_span, token)
    _runs.end_span(key, error)


def _around(open_: Callable[[Any], Any], close: Callable[[Any, BaseException | None], None]) -> tuple[Any, Any]:
    """Patch builders (sync, async) that run a method inside `open_(instance)` … `close(opened, error)`;
    the method runs as it is when `open_` returns None (not recording)."""

    def sync_patch(adapter: Any) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            opened = open_(instance)
            if opened is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                close(opened, exc)
                raise
            close(opened, None)
            return result

        return wrapper

    def async_patch(adapter: Any) -> Callable[..., Any]:
        async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            opened = open_(instance)
            if opened is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                close(opened, exc)
                raise
            close(opened, None)
            return result

        return wrapper

    return sync_patch, async_patch


_lm_call, _lm_acall = _around(_open_lm, _close_lm)
_module_call, _module_acall = _around(_open_module, _close_module)


def _optional_finalize(adapter: Any) -> Any:
    """DSPy 3.4's usage point; earlier releases have none (their LM calls all go through LiteLLM)."""
    import importlib.util

    if importlib.util.find_spec("dspy.clients.execution") is None:
        return None
    return FunctionPatch("dspy.clients.execution", "finalize", _finalize).apply(adapter)


class _Finalize:
    module = "dspy"
    apply = staticmethod(_optional_finalize)

    def __repr__(self) -> str:
        return "FunctionPatch(dspy.clients.execution.finalize)"


# The first patch's module is the import hook's target: `dspy` itself, so nothing is patched before
# the package has finished importing.
PATCHES = (
    MethodPatch("dspy", "Module", "__call__", _module_call),
    MethodPatch("dspy", "Module", "acall", _module_acall),
    IfPresent(MethodPatch("dspy", "BaseLM", "__call__", _lm_call)),
    IfPresent(MethodPatch("dspy", "BaseLM", "acall", _lm_acall)),
    MethodPatch("dspy", "LM", "__call__", _lm_call),  # DSPy 2.5: the LM defines its own (skipped when inherited)
    MethodPatch("dspy", "LM", "acall", _lm_acall),
    _Finalize(),
)
