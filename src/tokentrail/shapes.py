"""Reading provider responses whatever their shape: SDK objects (pydantic), dicts, or missing parts.

`pick(obj, "choices", 0, "message", "content")` walks attributes, keys and
indexes and returns `None` at the first missing step, so a response with new,
missing or `None` fields never raises. The adapters and the manual API's
default extractors read every response through it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pick", "fields_of", "items", "default_usage", "default_model", "default_response_text", "default_prompt"]


def pick(obj: Any, *path: Any) -> Any:
    for step in path:
        if obj is None:
            return None
        if isinstance(step, int):
            try:
                obj = obj[step]
            except (IndexError, KeyError, TypeError):
                return None
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            obj = getattr(obj, step, None)
    return obj


def fields_of(obj: Any) -> Any:
    """A pydantic model's field values (and extra fields) as one dict, other values as they are.

    Reading a field a model does not have goes through pydantic's `__getattr__`, which raises and
    catches inside (≈ 20 µs each): a reader that looks for optional fields reads the dict instead."""
    if isinstance(obj, dict) or not hasattr(type(obj), "__pydantic_fields__"):
        return obj
    values = getattr(obj, "__dict__", None)
    if type(values) is not dict:
        return obj
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**values, **extra} if extra else values


def items(value: Any) -> list[Any] | tuple[Any, ...]:
    """A list from the wire, or nothing: a malformed body (`"choices": true`) reads as empty, never raises."""
    return value if isinstance(value, (list, tuple)) else ()


def default_usage(result: Any) -> Any:
    """The `usage` (or Gemini `usage_metadata`) of a response object or dict."""
    return pick(result, "usage") or pick(result, "usage_metadata")


def default_model(result: Any) -> Any:
    return pick(result, "model") or pick(result, "model_version")


def default_response_text(result: Any) -> Any:
    """Text of a string, an OpenAI chat/completion/Responses result or chunk, or an Anthropic message or event."""
    if result is None or isinstance(result, str):
        return result
    for path in (
        ("choices", 0, "message", "content"),
        ("choices", 0, "delta", "content"),
        ("choices", 0, "text"),
        ("output_text",),
        ("content", 0, "text"),
        ("delta", "text"),
        ("text",),
    ):
        value = pick(result, *path)
        if isinstance(value, str):
            return value
    return None


def default_prompt(*args: Any, **kwargs: Any) -> Any:
    for name in ("messages", "prompt", "input", "contents"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return next((a for a in args if isinstance(a, (str, list))), None)
