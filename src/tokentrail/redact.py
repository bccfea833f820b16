"""Secrets never stored: credential-named keys are dropped, key-shaped strings are masked.

Applied once, in the core, to every record the worker builds — so stores,
exports (JSONL, OTLP) and the console all see the same masked text:

- a key of `metadata`, `request_params` or a tool's arguments that is named
  like a credential (`api_key`, `authorization`, `x-api-key`, `password`, …)
  is dropped with its value;
- anywhere in a stored text (error messages that echo the key, content,
  attribution, metadata values, tags), a string shaped like a provider key
  (`sk-…`, `sk-ant-…`, `sk-proj-…`, `AKIA…`, `gsk_…`, `xai-…`, `AIza…`,
  `hf_…`, `ghp_…`, `Bearer …`, a JWT) keeps its first characters and loses
  the rest: `sk-pr…[masked]`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["CREDENTIAL_NAME", "is_credential_name", "mask", "needs_mask", "scrub", "encodable", "gather_text"]

# Argument, header and metadata names that may hold a credential.
CREDENTIAL_NAME = re.compile(
    r"api[_-]?key|secret|passw|authoriz|credential|bearer|cookie|access[_-]?token|auth[_-]?token|"
    r"refresh[_-]?token|session[_-]?token|private[_-]?key|extra[_-]?headers|x-api-key", re.I)

# Strings shaped like credentials. Long enough not to catch ordinary words ("sk-" in "task-list").
_KEY_SHAPES = re.compile(
    r"\b(?:"
    r"sk-(?:ant-|proj-|svcacct-|or-v1-)?[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic, OpenRouter
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,}|pplx-[A-Za-z0-9]{20,}|r8_[A-Za-z0-9]{20,}"  # Groq, xAI, Perplexity, Replicate
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Hugging Face, GitHub, Slack
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"  # JWTs
    r")"
    r"|(?<=Bearer )[A-Za-z0-9._~+/\-]{12,}=*"  # bearer tokens
    r"|(?<=Basic )[A-Za-z0-9+/]{12,}=*",  # basic credentials
)
# Cheap test before the full patterns: every shape above contains one of these literals.
_HINTS = re.compile(r"sk-|A[KSGIR][IPDO]A|gsk_|xai-|pplx-|r8_|AIza|hf_|gh[pousr]_|xox|eyJ|Bearer |Basic ")


@functools.lru_cache(maxsize=4096)  # the same few key names come back on every record: answered once each
def is_credential_name(name: Any) -> bool:
    """Whether a key (of metadata, request params, tool arguments) names a credential. Keys are hashable."""
    return CREDENTIAL_NAME.search(name if type(name) is str else str(name)) is not None


def _masked(match: re.Match[str]) -> str:
    return match.group(0)[:5] + "…[masked]"


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str every surrogate is a lone one


def encodable(text: str) -> str:
    """`text` as UTF-8 can store it: a lone surrogate (from a bad decode upstream) becomes U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def mask(text: str) -> str:
    """`text` with every key-shaped string masked (and made encodable)."""
    text = encodable(text)
    if _HINTS.search(text) is None:
        return text
    return _KEY_SHAPES.sub(_masked, text)


_PLAIN = frozenset({int, float, bool, type(None)})  # nothing to mask in these
_DROPPED = object()


def needs_mask(text: str) -> bool:
    """Whether `mask` could change `text`: it is not plain ASCII, or it holds a key's first letters.
    One test over many short strings joined is cheaper than one per string (the usual answer is no)."""
    return not text.isascii() or _HINTS.search(text) is not None


# Keys `gather_text` found not to name a credential (`is_credential_name` is cached too, but a cached
# call costs ten times a dict lookup, and metadata and request params bring the same keys every time).
_plain_keys: dict[str, None] = {}


def gather_text(value: Any, into: list[str], known: Any = (), depth: int = 0) -> bool:
    """Append every string of a list or dict (items, values, nested ones) to `into`, for one `needs_mask`
    test of them all; those in `known` (strings found clean before) are left out. False when `scrub`
    would drop something here (a credential-named key) or when this does not walk a part (a key that
    is not a string, an object, a tuple, deep nesting): then `scrub` has to look. `into` may hold
    part of the strings then. A number or None: True."""
    if depth > 20:
        return False
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                return False
            if key not in _plain_keys:  # one lookup for the few keys that come back on every record
                if is_credential_name(key):
                    return False
                if len(_plain_keys) >= 4096:
                    _plain_keys.clear()
                _plain_keys[key] = None
        items: Any = value.values()
    elif type(value) is list:
        items = value
    else:
        return type(value) in _PLAIN  # a number in a field of any JSON value: nothing to mask
    for item in items:
        kind = type(item)
        if kind is str:
            if item not in known:
                into.append(item)
        elif kind not in _PLAIN and not ((kind is dict or kind is list) and gather_text(item, into, known, depth + 1)):
            return False
    return True


def scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-like value with credential-named keys dropped and key-shaped strings masked (copies only
    what changes). Deeper than 20 levels is left as it is: no stored value nests that far."""
    kind = type(value)
    if kind is str:
        return mask(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, str):
        return mask(value)
    if depth > 20:
        return value
    if isinstance(value, dict):
        # One pass that only looks (the usual case: nothing to change, the dict itself is kept), and a
        # copy only when a key goes or a value changes.
        changes = None
        for key, item in value.items():
            if is_credential_name(key):
                new = _DROPPED
            elif type(item) in _PLAIN:
                continue
            else:
                new = scrub(item, depth + 1)
                if new is item:
                    continue
            if changes is None:
                changes = {}
            changes[key] = new
        if changes is None:
            return value
        out = {}
        for key, item in value.items():
            new = changes.get(key, item)
            if new is not _DROPPED:
                out[key] = new
        return out
    if isinstance(value, (list, tuple)):
        items = [scrub(v, depth + 1) for v in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    return value
