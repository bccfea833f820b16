"""Token counts: reading every SDK's spelling of "usage", and coercing bad values.

`normalize_usage` accepts a dict or an object (pydantic model, dataclass, …) in
any of these spellings and returns our five counts, `None` where unknown:

- ours: `input_tokens`, `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `reasoning_tokens`
- OpenAI Chat Completions: `prompt_tokens`, `completion_tokens`,
  `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`
- OpenAI Responses: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
  `output_tokens_details.reasoning_tokens`
- Anthropic: `input_tokens` (cache *excluded*), `output_tokens`,
  `cache_read_input_tokens`, `cache_creation_input_tokens` — we add the cache
  counts to `input_tokens`, as the OpenTelemetry convention counts them
- Gemini: `prompt_token_count`, `candidates_token_count`, `cached_content_token_count`,
  `thoughts_token_count`, `tool_use_prompt_token_count` (the SDK's objects), or the same in
  camelCase (`promptTokenCount`, …: the JSON on the wire). Thoughts are billed as output, so
  they are added to it; tool-use prompt tokens are input the prompt count leaves out, so they
  are added to it (cached content is already part of the prompt count)
"""

from __future__ import annotations

import math
from typing import Any

from . import log

__all__ = ["normalize_usage", "known_usage", "coerce_count", "TOKEN_KEYS"]

# The largest count a store can keep (a signed 64-bit integer column); a provider reporting more is wrong.
MAX_COUNT = 2**63 - 1

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def coerce_count(value: Any, what: str) -> int | None:
    """A non-negative int from an int, an integral float or a digit string; else `None` and one warning."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = value.strip()
            number = float(value) if value else -1.0
        else:
            number = float(value)
        if not math.isfinite(number) or number < 0 or number != int(number) or number > MAX_COUNT:
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        log.warn_once(
            f"coerce.{what}",
            "tokentrail: ignored %s=%r: expected a whole number from 0 to 2**63-1",
            what,
            value,
        )
        return None


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _has(obj: Any, name: str) -> bool:
    return _get(obj, name) is not None


# Gemini's counts: prompt, candidates, thoughts, cached content, tool-use prompt; as the SDK's objects
# spell them and as the JSON on the wire does.
_GEMINI_NAMES = (
    ("prompt_token_count", "candidates_token_count", "thoughts_token_count", "cached_content_token_count",
     "tool_use_prompt_token_count"),
    ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount",
     "toolUsePromptTokenCount"),
)


def _gemini_names(usage: Any) -> tuple[str, ...] | None:
    for names in _GEMINI_NAMES:
        if _has(usage, names[0]) or _has(usage, names[1]):
            return names
    return None


def _count(value: Any, name: str) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_COUNT else coerce_count(value, name)


def _known(out: dict[str, int | None]) -> dict[str, int]:
    # A count coerce_count refused is None: left out like an unknown one (rare; the test is C-level).
    return out if None not in out.values() else {k: v for k, v in out.items() if v is not None}


def _openai_chat_dict(usage: dict[str, Any]) -> dict[str, int] | None:
    """The fast path (the worker reads parsed JSON): OpenAI chat usage as a plain dict, the known
    counts only. None: not that shape."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details, completion_details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    if type(details) is dict and type(completion_details) is dict:
        # What OpenAI sends on every chat response, four counts in range: read without a call per count.
        cached, reasoning = details.get("cached_tokens"), completion_details.get("reasoning_tokens")
        # Ints are all in [0, 2**63) exactly when their bitwise or is: one test for the four.
        if (type(prompt) is int and type(completion) is int and type(cached) is int and type(reasoning) is int
                and 0 <= prompt | completion | cached | reasoning <= MAX_COUNT):
            return {"input_tokens": prompt, "output_tokens": completion,
                    "cache_read_tokens": cached, "reasoning_tokens": reasoning}
    if (details is not None and type(details) is not dict) or (completion_details is not None and type(completion_details) is not dict):
        return None
    out: dict[str, int | None] = {}
    if prompt is not None:
        out["input_tokens"] = _count(prompt, "prompt_tokens")
    if completion is not None:
        out["output_tokens"] = _count(completion, "completion_tokens")
    cached = details.get("cached_tokens") if details else None
    if cached is not None:
        out["cache_read_tokens"] = _count(cached, "cached_tokens")
    reasoning = completion_details.get("reasoning_tokens") if completion_details else None
    if reasoning is not None:
        out["reasoning_tokens"] = _count(reasoning, "reasoning_tokens")
    return _known(out)


_GEMINI_FIRST = tuple(names[i] for names in _GEMINI_NAMES for i in (0, 1))


def _anthropic_dict(usage: dict[str, Any]) -> dict[str, int] | None:
    """The fast path for Anthropic's usage as a plain dict (cache counts added into the input), the
    known counts only. None: not that shape."""
    read, write = usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")
    if read is None and write is None or any(usage.get(name) is not None for name in _GEMINI_FIRST):
        return None
    given, output = usage.get("input_tokens"), usage.get("output_tokens")
    given = _count(given, "input_tokens") if given is not None else None
    read = _count(read, "cache_read_input_tokens") if read is not None else None
    write = _count(write, "cache_creation_input_tokens") if write is not None else None
    out = {"output_tokens": _count(output, "output_tokens") if output is not None else None,
           "cache_read_tokens": read, "cache_write_tokens": write,
           "input_tokens": (given or 0) + (read or 0) + (write or 0) if given is not None or read or write else None}
    return _known(out)


_OURS = frozenset(TOKEN_KEYS)


def _plain_dict(usage: dict[str, Any]) -> dict[str, int] | None:
    """The known counts of OpenAI chat or Anthropic usage as a plain dict (parsed JSON); None: neither shape."""
    if usage.get("prompt_tokens") is not None or usage.get("completion_tokens") is not None:
        return _openai_chat_dict(usage)
    return _anthropic_dict(usage)


def known_usage(usage: Any) -> dict[str, int]:
    """`normalize_usage` without the unknown counts: what an adapter lays on a record. Always a new
    dict, the caller's to add its own fields to."""
    found = _plain_dict(usage) if type(usage) is dict else None
    return found if found is not None else _known(_any_spelling(usage))


def normalize_usage(usage: Any) -> dict[str, int | None]:
    """Our five token counts from any supported spelling (see the module docstring)."""
    found = _plain_dict(usage) if type(usage) is dict else None
    return {**_UNKNOWN, **found} if found is not None else _any_spelling(usage)


_UNKNOWN: dict[str, None] = dict.fromkeys(TOKEN_KEYS)


def _any_spelling(usage: Any) -> dict[str, int | None]:
    """`normalize_usage` for what `_plain_dict` does not read: our own spelling, Gemini, objects."""
    out: dict[str, int | None] = dict.fromkeys(TOKEN_KEYS)
    if usage is None:
        return out
    if type(usage) is dict and usage.keys() <= _OURS:  # our own spelling (the manual API, and adapters that name the counts)
        for name, value in usage.items():
            if value is not None:
                out[name] = _count(value, name)
        return out

    def count(obj: Any, name: str) -> int | None:
        return coerce_count(_get(obj, name), name)

    if _has(usage, "prompt_tokens") or _has(usage, "completion_tokens"):  # OpenAI chat
        out["input_tokens"] = count(usage, "prompt_tokens")
        out["output_tokens"] = count(usage, "completion_tokens")
        out["cache_read_tokens"] = count(_get(usage, "prompt_tokens_details"), "cached_tokens")
        out["reasoning_tokens"] = count(_get(usage, "completion_tokens_details"), "reasoning_tokens")
    elif (names := _gemini_names(usage)) is not None:  # Gemini
        prompt, candidates, thoughts, cached, tool_use = (count(usage, name) for name in names)
        if prompt is not None or tool_use:
            out["input_tokens"] = (prompt or 0) + (tool_use or 0)
        if candidates is not None or thoughts is not None:
            out["output_tokens"] = (candidates or 0) + (thoughts or 0)
        out["cache_read_tokens"] = cached
        out["reasoning_tokens"] = thoughts
    else:
        out["input_tokens"] = count(usage, "input_tokens")
        out["output_tokens"] = count(usage, "output_tokens")
        if _has(usage, "cache_read_input_tokens") or _has(usage, "cache_creation_input_tokens"):  # Anthropic
            read = count(usage, "cache_read_input_tokens")
            write = count(usage, "cache_creation_input_tokens")
            out["cache_read_tokens"], out["cache_write_tokens"] = read, write
            if out["input_tokens"] is not None or read or write:
                out["input_tokens"] = (out["input_tokens"] or 0) + (read or 0) + (write or 0)
        else:  # ours, or OpenAI Responses
            out["cache_read_tokens"] = count(usage, "cache_read_tokens")
            out["cache_write_tokens"] = count(usage, "cache_write_tokens")
            out["reasoning_tokens"] = count(usage, "reasoning_tokens")
            if out["cache_read_tokens"] is None:
                out["cache_read_tokens"] = count(_get(usage, "input_tokens_details"), "cached_tokens")
            if out["reasoning_tokens"] is None:
                out["reasoning_tokens"] = count(_get(usage, "output_tokens_details"), "reasoning_tokens")
    return out
