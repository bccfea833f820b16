"""Pending records: what the calling thread hands the pipeline, and how the worker finishes them.

The calling thread only reads clocks, keeps references (arguments, response,
exception, the attribution snapshot) and sets raw values; `build(settings)`
runs on the worker and does everything else: id formatting, provider and
operation names, coercing bad values (one warning per kind, never an
exception), attribution, the content switch, error classification.

`PendingCall` is the base of the manual `LLMSpan` and of every SDK adapter's
pending call; an adapter overrides `extract()` to fill `fields` from the raw
request and response. Content (messages, output, tool arguments and results)
is kept or dropped *here*, from `settings.capture_content`, so no adapter can
forget the switch.
"""

from __future__ import annotations

import math
import random
import time
from datetime import datetime, timezone
from typing import Any

from . import log
from .budget import call_fields
from .config import Settings
from .context import ATTRIBUTION_FIELDS, readers, as_tags, attributes_var, current_span, current_workflow, new_span_id, new_trace_id, reset_quietly
from .errors import CATEGORIES, categorize, status_code_of
from .estimate import estimate
from .redact import gather_text, mask, needs_mask, scrub
from .record import FIELD_KINDS, FIELDS, RECORD_TYPES, LLMCall, Outcome, Span, ToolCall
from .semconv import normalize_operation, normalize_provider
from .runtime import submit
from .usage import MAX_COUNT, coerce_count

__all__ = ["PendingCall", "PendingTool", "PendingOutcome", "PendingSpan", "record_id", "coerce_field", "error_fields"]

_perf_ns = time.perf_counter_ns
_wall_ns = time.time_ns
_rand = random.getrandbits  # as context.new_trace_id / new_span_id, without their frames
_attributes_get = attributes_var.get
_workflow_get = current_workflow.get
_span_get = current_span.get
_UTC = timezone.utc
_ERROR_MESSAGE_MAX = 2000


# Fields the pending record owns: ids and clocks cannot be set by a caller.
_PROTECTED = {"id", "trace_id", "span_id", "parent_span_id", "started_at", "recorded_at"}
# Response ids of the latest records (worker only): how a framework's call finds its SDK record.
_recent_responses: dict[Any, None] = {}
_RECENT_MAX = 4096


# `default_user_id=` from an adapter fills `user_id` only when attribution left it empty.
_FALLBACKS = {f"default_{name}": name for name in ATTRIBUTION_FIELDS}


def record_id(wall_ns: int, span_id: int) -> str:
    """Unique and time-ordered: 12 hex digits of milliseconds, then the 16 of the span id."""
    return f"{wall_ns // 1_000_000:012x}{span_id:016x}"


def _float(value: Any, name: str) -> float | None:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise ValueError
        return number
    except (TypeError, ValueError):
        log.warn_once(f"coerce.{name}", "tokentrail: ignored %s=%r: expected a non-negative number", name, value)
        return None


def _bool(value: Any, name: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    log.warn_once(f"coerce.{name}", "tokentrail: ignored %s=%r: expected True or False", name, value)
    return None


def _str(value: Any, name: str) -> str:
    return value if type(value) is str else str(value)


def _str_list(value: Any, name: str) -> list[str]:
    if type(value) is list:
        for item in value:  # a loop, not all() over a generator: a finish reason on every record
            if type(item) is not str:
                break
        else:
            return value
    return list(as_tags(value))


def _dict(value: Any, name: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    log.warn_once(f"coerce.{name}", "tokentrail: ignored %s=%r: expected a dict", name, value)
    return None


# A coercer per field kind; the kinds themselves are declared once, in record.py.
_COERCERS = {"int": coerce_count, "float": _float, "bool": _bool, "str": _str, "str_list": _str_list, "dict": _dict}
_COERCE: dict[str, Any] = {
    name: _COERCERS[kind]
    for cls in RECORD_TYPES for name, kind in FIELD_KINDS[cls].items()
    if kind in _COERCERS and name not in _PROTECTED
}


# Per set of record fields: field -> the type whose values need no coercion (a count also in range),
# or `object` for a field that is always coerced. Not there: protected, metadata, tags, unknown names.
_PLAIN_KINDS = {"int": int, "str": str, "dict": dict}
_plain_sets: dict[frozenset[str], dict[str, type]] = {}


def _plain_fields(allowed: frozenset[str]) -> dict[str, type]:
    plain = _plain_sets.get(allowed)
    if plain is None:
        kinds = {name: kind for cls in RECORD_TYPES for name, kind in FIELD_KINDS[cls].items()}
        plain = _plain_sets[allowed] = {
            name: _PLAIN_KINDS.get(kinds[name], object) for name in allowed
            if name not in _PROTECTED and name not in ("metadata", "tags")
        }
    return plain


def coerce_field(name: str, value: Any) -> Any:
    """A record field's value in the field's type; `None` (and one warning) when it cannot be."""
    if value is None:
        return None
    coerce = _COERCE.get(name)
    return value if coerce is None else coerce(value, name)


def _text_fields() -> frozenset[str]:
    """Every field that may hold text — names and ids too (a key passed as the model by mistake, or a
    proxy echoing one as the response's id, is masked like any stored text). Not the hex ids
    tokentrail formats itself."""
    return frozenset(name for cls in RECORD_TYPES for name, kind in FIELD_KINDS[cls].items()
                     if name not in ("id", "trace_id", "span_id", "parent_span_id") and kind in ("str", "str_list", "dict", "json"))


_SCRUB_NAMES = _text_fields()


def _scrubbed(out: dict[str, Any]) -> dict[str, Any]:
    """Every stored text masked and credential-named keys dropped (redact.py), once, before the record
    exists.

    One pass gathers the record's strings — text fields and the strings inside lists and dicts
    (finish reasons, request params, metadata, content), whose keys are tested for credential names
    on the way — and tests them together, joined: most records hold a dozen short names and nothing
    to mask, so that one test is all. Strings found clean before are left out of it. Only when it
    finds something, or a part it does not walk, does `_scrub_each` look at each value."""
    names: list[str] = []  # tested, and remembered when clean
    once: list[str] = []  # tested only: an id that names this call alone would never come back
    for name in _SCRUB_NAMES.intersection(out):  # this record's text-bearing fields (in C; cheaper than keys() &)
        value = out[name]
        if type(value) is str:
            if value not in _clean:
                (once if name in _ONCE else names).append(value)
        elif value is not None and not gather_text(value, names, _clean):
            return _scrub_each(out)
    if names or once:
        joined = "\n".join(names + once)
        if needs_mask(joined):
            return _scrub_each(out)
        if names and len(joined) <= 512:  # short names, not content: remembered as clean
            if len(_clean) >= 1024:
                _clean.clear()
            for text in names:  # a loop: for the one or two new strings, half of `update(fromkeys())`
                _clean[text] = None
    return out


# Strings a record's mask test found clean: the provider, model, SDK version, finish reasons, metadata
# values and other names that come back on every record are then not tested again. At most 1,024
# short ones. Records are built on the worker, and on a calling thread under a blocking budget: each
# use is one dict operation, and a string is only added by a thread that found it clean, so any
# interleaving is sound. Ids that name one call (`_ONCE`) are tested and never remembered: they
# would only push the names out.
_clean: dict[str, None] = {}
_ONCE = frozenset({"response_id", "tool_call_id"})


def _scrub_each(out: dict[str, Any]) -> dict[str, Any]:
    """`_scrubbed` field by field: strings masked, lists and dicts scrubbed (copied where they change).
    Request params left empty by dropping credentials are no params (None)."""
    for name in _SCRUB_NAMES.intersection(out):
        value = out[name]
        if value is None:
            continue
        if type(value) is str:
            out[name] = mask(value)
        else:
            kept = scrub(value)
            out[name] = None if name == "request_params" and value and not kept else kept
    return out


def _messages(content: Any) -> list[Any]:
    if isinstance(content, (list, tuple)):
        return list(content)
    if isinstance(content, dict):
        return [content]
    return [{"role": "user", "content": content if isinstance(content, str) else str(content)}]


def _cut(text: Any, limit: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit]


def error_fields(error: Any, category: str | None) -> dict[str, Any]:
    """`error_type`, `error_message`, `error_category`, `status_code` of an exception or a message."""
    if category is not None and category not in CATEGORIES:
        log.warn_once("coerce.error_category", "tokentrail: ignored error category %r; accepted: %s", category, ", ".join(CATEGORIES))
        category = None
    if isinstance(error, BaseException):
        message = str(error) or type(error).__name__
        return {
            "error_type": type(error).__name__,
            "error_message": _cut(message, _ERROR_MESSAGE_MAX),
            "error_category": category or categorize(error),
            "status_code": status_code_of(error),
        }
    message = _cut(error, _ERROR_MESSAGE_MAX)
    return {"error_type": "Error", "error_message": message, "error_category": category or categorize(None, message=message)}


class _Pending:
    """What every pending record shares: clocks, ids and the attribution snapshot."""

    # An open call that *absorbs* the calls made inside it records them itself: a manual
    # `track_llm_call` block, or an SDK call whose helper calls the SDK again. Those inner calls
    # pass straight through. A framework's call defers instead (callback_point).
    absorbs = False
    defers = False

    # trace, span, parent: W3C ids as ints (formatted to hex on the worker).
    # `outer`: the span object this one was opened in (its parent), to walk past closed spans.
    __slots__ = ("route", "wall_ns", "start_ns", "end_ns", "trace", "span", "parent", "outer",
                 "_attrs", "_workflow", "fields", "_token", "_labels")

    def _capture(self, route: Any, own_span: bool = True) -> None:
        """Snapshot the context and open ids (calling thread: a few contextvar reads)."""
        self.route = route
        self._attrs = attributes_var.get()
        self._workflow = current_workflow.get()
        self.fields = {}
        parent = current_span.get()
        if parent is not None and (parent.end_ns is not None or parent.defers):
            parent = self._claim(parent)
        self.outer = parent
        self.wall_ns = wall_ns = _wall_ns()
        if parent is None:  # none of ours: the application's span (otel), if a reader is installed
            found = readers.parent() if readers.parent is not None else None
            self.trace, self.parent = found or (new_trace_id(wall_ns), None)
        else:
            self.trace, self.parent = parent.trace, parent.span
        self._labels = readers.read_labels() if readers.labels else None
        self.span = new_span_id() if own_span else None
        self.start_ns = _perf_ns()
        self.end_ns = None
        self._token = None

    def _claim(self, parent: Any) -> Any:
        """The parent to take when the current span is closed or defers (the slow path).

        Framework spans are never reset out of the context (their callbacks may
        end in another context), so a closed one may still be current: walk out
        to the nearest open span. An open framework *call* that defers
        (callback_point) is stood for by the innermost record: an LLM call made
        inside it counts itself there — the framework's call then records
        nothing — takes its labels, and takes its parent as parent.
        """
        while parent is not None and parent.end_ns is not None:
            parent = getattr(parent, "outer", None)
        if parent is not None and parent.defers and isinstance(self, PendingCall):
            parent.inner += 1
            if parent.labels:
                self.fields["metadata"] = dict(parent.labels)
            parent = parent.outer
            while parent is not None and parent.end_ns is not None:
                parent = getattr(parent, "outer", None)
        return parent

    def _base(self, time_field: str, timed: bool = True) -> dict[str, Any]:
        """Ids, time (and duration), attribution, for the worker."""
        span, parent = self.span, self.parent
        try:  # int.to_bytes().hex(): half the cost of format() for the same digits
            span_hex = (span or new_span_id()).to_bytes(8, "big").hex()
            out: dict[str, Any] = {
                "id": (self.wall_ns // 1_000_000).to_bytes(6, "big").hex() + span_hex,
                "trace_id": self.trace.to_bytes(16, "big").hex(),
            }
            if parent is not None:  # a field left out is None, and one fewer to pass on
                out["parent_span_id"] = parent.to_bytes(8, "big").hex()
            if span is not None:
                out["span_id"] = span_hex
        except (OverflowError, AttributeError):  # an id out of its W3C size: formatted as it is
            out = {
                "id": record_id(self.wall_ns, span or new_span_id()),
                "trace_id": f"{self.trace:032x}",
                "parent_span_id": None if parent is None else f"{parent:016x}",
            }
            if span is not None:
                out["span_id"] = f"{span:016x}"
        out[time_field] = datetime.fromtimestamp(self.wall_ns / 1e9, _UTC)
        if timed:
            end = self.end_ns if self.end_ns is not None else _perf_ns()
            out["duration_ms"] = (end - self.start_ns) / 1e6
        attrs = self._attrs
        if attrs:
            for name in ATTRIBUTION_FIELDS:
                if name in attrs:
                    out[name] = attrs[name]
            if attrs.get("tags"):
                out["tags"] = list(attrs["tags"])
            if attrs.get("metadata"):
                out["metadata"] = dict(attrs["metadata"])
        run = self._workflow
        if run is not None:
            out["workflow"], out["workflow_run_id"] = run.name, run.run_id
        if self._labels:  # read from other libraries (mlflow_run_id): under what the call itself says
            out["metadata"] = {**self._labels, **out.get("metadata", {})}
        return out

    def _apply(self, out: dict[str, Any], allowed: frozenset[str], below: Any = ()) -> None:
        """Lay fields over `out`: known fields coerced, the rest into metadata.

        First the adapter's sources `below` (what `extract` read from the request and the response),
        lowest first, where None says nothing; then the fields set on the call, which win (there a
        None clears). One pass over each, straight into `out`: no merged copy is made first."""
        plain_of = _plain_fields(allowed)
        kind_of, explicit = plain_of.get, self.fields
        for source in (*below, explicit) if below else (explicit,):
            for name, value in source.items():
                # A known, settable field of its type (the usual case: a count also in range) is laid as it is.
                if (kind := type(value)) is kind_of(name) and (kind is not int or 0 <= value <= MAX_COUNT):
                    out[name] = value
                elif value is None and source is not explicit:
                    continue
                elif name in plain_of:  # known and settable, of another type
                    out[name] = coerce_field(name, value)
                elif name in _PROTECTED:
                    log.warn_once(f"protected.{name}", "tokentrail: ignored %s=%r: tokentrail sets this field itself", name, value)
                elif name == "metadata":
                    if isinstance(value, dict):
                        out["metadata"] = {**out.get("metadata", {}), **value}
                elif name == "tags":
                    tags = out.get("tags", [])
                    out["tags"] = tags + [t for t in as_tags(value) if t not in tags]
                elif name in allowed:
                    out[name] = coerce_field(name, value)
                elif name in _FALLBACKS:  # an adapter's guess (OpenAI's `user=`): only where no attribution says
                    if out.get(_FALLBACKS[name]) is None:
                        out[_FALLBACKS[name]] = coerce_field(_FALLBACKS[name], value)
                else:
                    out.setdefault("metadata", {})[name] = value

    # Span protocol: parent of the spans opened inside it.
    def enter(self) -> None:
        """Become the parent of the spans opened from here on in this context."""
        self._token = current_span.set(self)

    def leave(self) -> None:
        """Stop being the parent of new spans (the call itself may go on: a stream)."""
        if self._token is not None:
            reset_quietly(current_span, self._token)
            self._token = None

    def finish(self, error: BaseException | None = None) -> None:
        """Finish once: note the first error, stop the clock, hand the record to the pipeline.
        Later calls (a stream read to the end, then closed) do nothing."""
        if self.end_ns is not None:
            return
        if error is not None and self.error is None:
            self.error = error
        self.end_ns = _perf_ns()
        self.leave()
        submit(self)


_LLM_FIELDS = frozenset(FIELDS[LLMCall])
_TOOL_FIELDS = frozenset(FIELDS[ToolCall])
_OUTCOME_FIELDS = frozenset(FIELDS[Outcome])
_SPAN_FIELDS = frozenset(FIELDS[Span])


class PendingCall(_Pending):
    """An LLM call in flight or done, not yet turned into an `LLMCall`."""

    absorbs = True

    __slots__ = ("provider", "model", "operation", "source", "error", "error_category",
                 "content_in", "content_out", "first_chunk_ns")

    def __init__(self, provider: Any, model: Any, operation: Any = "chat", source: str = "manual", route: Any = None) -> None:
        # _capture(route), unrolled: every patched SDK call runs this on the calling thread.
        self.provider, self.model, self.operation, self.source, self.route = provider, model, operation, source, route
        self.error = self.error_category = self.content_in = self.content_out = self.first_chunk_ns = None
        self.end_ns = self._token = None
        self._attrs = _attributes_get()
        self._workflow = _workflow_get()
        self.fields = {}
        parent = _span_get()
        if parent is not None and (parent.end_ns is not None or parent.defers):
            parent = self._claim(parent)
        self.outer = parent
        self.wall_ns = wall_ns = _wall_ns()
        if parent is None:  # none of ours: the application's span (otel), if a reader is installed
            found = readers.parent() if readers.parent is not None else None
            # context.new_trace_id, unrolled: time first, 80 random bits
            self.trace, self.parent = found or ((wall_ns // 1_000_000) << 80 | _rand(80), None)
        else:
            self.trace, self.parent = parent.trace, parent.span
        self._labels = readers.read_labels() if readers.labels else None
        self.span = _rand(64) or 1
        self.start_ns = _perf_ns()

    def scope_fields(self, needed: frozenset[str]) -> dict[str, Any]:
        """The budget-scope fields (only those in `needed`) of this call, before it starts (calling thread)."""
        return call_fields(needed, self._attrs, self.fields, self._workflow, self.provider, self.model)

    def refuse(self, exc: BaseException) -> None:
        """A budget refused this call before the provider was called: record it as failed."""
        self.error_category = "budget"
        self.finish(exc)

    def extract(self, settings: Settings) -> Any:
        """Adapters fill `self.fields` / `content_*` from the raw request and response here (worker), or
        return what they read as field dicts, lowest precedence first (None values say nothing there);
        the fields set on the call win over them."""
        return ()

    def build(self, settings: Settings) -> LLMCall:
        try:
            below = self.extract(settings) or ()
        except Exception as exc:  # noqa: BLE001 - record what we have
            below = ()
            log.error_once(f"extract.{type(self).__name__}", "tokentrail: could not read a response; recorded what was readable", exc)
        out = self._base("started_at")
        if self.first_chunk_ns is not None:
            out["ttft_ms"] = (self.first_chunk_ns - self.start_ns) / 1e6
            out["stream"] = True
        out["request_model"] = None if self.model is None else str(self.model)
        out["operation"] = normalize_operation(self.operation)
        out["source"] = self.source
        self._apply(out, _LLM_FIELDS, below)
        provider = self.provider  # the model names the provider only when the call does not
        out["provider"] = normalize_provider(provider) if provider else \
            normalize_provider(provider, out.get("request_model") or out.get("response_model"))
        if self.error is not None:
            for name, value in error_fields(self.error, self.error_category).items():
                if out.get(name) is None:
                    out[name] = value
        if out.get("stream") and out.get("input_tokens") is None and out.get("output_tokens") is None:
            self._estimate_tokens(out)
        if self.content_in is not None and (settings.capture_content or out.get("message_count") is None):
            messages = _messages(self.content_in)
            out.setdefault("message_count", len(messages))
            if settings.capture_content:
                out["input_messages"] = messages
        if settings.capture_content:
            text = self.content_out if self.content_out is not None else out.get("output_text")
            if text is not None:
                out["output_text"] = _cut(text, settings.content_max_chars)
        else:
            out.pop("input_messages", None)
            out.pop("output_text", None)
        if not self._first_record_of(out.get("response_id")):
            return None
        return LLMCall(**_scrubbed(out))

    def _estimate_tokens(self, out: dict[str, Any]) -> None:
        """A stream that reported no usage gets estimated counts, flagged (estimate.py), so it has a cost.
        Not for a stream that failed or was dropped before it streamed anything: whether anything was
        generated (or, for a lazy stream, even asked for) is unknown."""
        abandoned = (out.get("metadata") or {}).get("stream_incomplete")
        if self.content_out is None and (self.content_in is None or self.error is not None or abandoned):
            return
        model = out.get("response_model") or out.get("request_model")
        out["input_tokens"], out["output_tokens"], method = estimate(self.content_in, self.content_out, model)
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
        out["metadata"] = {**(out.get("metadata") or {}), "tokens_estimated": method}

    def _first_record_of(self, response_id: Any) -> bool:
        """False for a framework's call that a lower layer already recorded (same response id):
        the fallback when the framework reported it from another context than the call ran in."""
        if response_id is None:
            return True
        if self.defers:
            return response_id not in _recent_responses
        _recent_responses[response_id] = None
        if len(_recent_responses) > _RECENT_MAX:
            del _recent_responses[next(iter(_recent_responses))]
        return True


class PendingTool(_Pending):
    __slots__ = ("name", "error", "error_category", "arguments", "result")

    def __init__(self, name: Any, route: Any = None) -> None:
        self.name = name
        self.error = None
        self.error_category = None
        self.arguments = None
        self.result = None
        self._capture(route)

    def build(self, settings: Settings) -> ToolCall:
        out = self._base("started_at")
        out["name"] = str(self.name)
        self._apply(out, _TOOL_FIELDS)
        if self.error is not None:
            fields = error_fields(self.error, self.error_category)
            fields.pop("status_code", None)
            out.update(fields)
        if settings.capture_content:
            out["arguments"] = self.arguments
            out["result"] = None if self.result is None else _cut(self.result, settings.content_max_chars)
        else:
            out.pop("arguments", None)
            out.pop("result", None)
        return ToolCall(**_scrubbed(out))


class PendingOutcome(_Pending):
    __slots__ = ("name", "value", "success", "run")

    def __init__(self, name: Any, value: Any, success: Any, run: Any, route: Any = None) -> None:
        self.name = name
        self.value = value
        self.success = success
        self._capture(route, own_span=False)
        self.run = run if run is not None else self._workflow
        self._workflow = self.run

    def build(self, settings: Settings) -> Outcome:
        out = self._base("recorded_at", timed=False)
        if self.run is not None:
            out["trace_id"] = f"{self.run.trace:032x}"
            out["parent_span_id"] = f"{self.run.span:016x}"
        out["name"] = str(self.name)
        value = self.value
        if isinstance(value, bool):
            value = float(value)
        elif value is not None:
            try:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            except (TypeError, ValueError):
                log.warn_once("coerce.outcome_value", "tokentrail: ignored outcome value %r: expected a number", value)
                value = None
        out["value"] = value
        out["success"] = bool(self.success)
        self._apply(out, _OUTCOME_FIELDS)
        return Outcome(**_scrubbed(out))


class PendingSpan(_Pending):
    """A workflow run or a framework's chain/agent/module in flight: the parent of the calls inside it."""

    __slots__ = ("name", "operation", "source", "error", "error_category")

    def __init__(self, name: Any, operation: str = "invoke_workflow", source: str = "manual", route: Any = None) -> None:
        self.name = name
        self.operation = operation
        self.source = source
        self.error = None
        self.error_category = None
        self._capture(route)

    def build(self, settings: Settings) -> Span:
        out = self._base("started_at")
        out["name"] = str(self.name)
        out["operation"] = self.operation
        out["source"] = self.source
        self._apply(out, _SPAN_FIELDS)
        if self.error is not None:
            fields = error_fields(self.error, self.error_category)
            fields.pop("status_code", None)
            out.update(fields)
        return Span(**_scrubbed(out))
