"""Error categories: one word for "what kind of failure", from status code and exception class.

The categories are `rate_limit`, `authentication`, `permission`, `invalid_request`,
`not_found`, `context_length`, `content_filter`, `timeout`, `connection`,
`server`, `cancelled`, `budget` and `unknown`. SDKs differ in class names but
agree on HTTP status codes, so the status code decides first, then the class
name (its whole MRO, so subclasses of `openai.APITimeoutError` still count),
then the message for the two cases providers only tell in words (context length
and content filtering).
"""

from __future__ import annotations

import re
import sys
from typing import Any

__all__ = ["CATEGORIES", "categorize", "status_code_of", "ConfigError", "StoreError", "RecordsRejected", "BudgetExceeded"]

CATEGORIES = (
    "rate_limit",
    "authentication",
    "permission",
    "invalid_request",
    "not_found",
    "context_length",
    "content_filter",
    "timeout",
    "connection",
    "server",
    "cancelled",
    "budget",
    "unknown",
)


class ConfigError(ValueError):
    """A configuration value tokentrail cannot use; the message names the option, its source and what is accepted."""


class StoreError(RuntimeError):
    """The store cannot be opened or is not a tokentrail store."""


class RecordsRejected(Exception):
    """Raised by a sink's `export` that wrote a batch except `count` records it can never take
    (bad values): the pipeline counts those as `rejected` for the sink and does not retry the batch."""

    def __init__(self, count: int, cause: BaseException | None = None) -> None:
        self.count = count
        self.cause = cause
        reason = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"{count} record{'s' if count != 1 else ''} rejected{reason}")


class BudgetExceeded(Exception):
    """Raised *before* the provider is called, by a budget whose action is `raise`."""


_CONTEXT_LENGTH = re.compile(r"context.length|context window|maximum context|too many tokens|prompt is too long|token limit", re.I)
_CONTENT_FILTER = re.compile(r"content.filter|content.policy|content.management|safety|moderation|blocked", re.I)

_BY_STATUS = {
    400: "invalid_request",
    401: "authentication",
    402: "permission",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "invalid_request",
    413: "context_length",
    422: "invalid_request",
    429: "rate_limit",
    504: "timeout",
    529: "server",  # Anthropic "overloaded"
}

# Substrings of exception class names, checked along the MRO; first hit wins.
_BY_CLASS = (
    ("budget", "budget"),
    ("ratelimit", "rate_limit"),
    ("throttl", "rate_limit"),
    ("toomanyrequests", "rate_limit"),
    ("authentication", "authentication"),
    ("unauthorized", "authentication"),
    ("permission", "permission"),
    ("forbidden", "permission"),
    ("accessdenied", "permission"),
    ("notfound", "not_found"),
    ("contextwindow", "context_length"),
    ("contextlength", "context_length"),
    ("contentfilter", "content_filter"),
    ("contentpolicy", "content_filter"),
    ("timeout", "timeout"),
    ("timedout", "timeout"),
    ("connection", "connection"),
    ("connect", "connection"),
    ("network", "connection"),
    ("badrequest", "invalid_request"),
    ("validation", "invalid_request"),
    ("unprocessable", "invalid_request"),
    ("internalserver", "server"),
    ("serviceunavailable", "server"),
    ("overloaded", "server"),
    ("servererror", "server"),
)


def status_code_of(exc: Any) -> int | None:
    """The HTTP status an SDK exception carries (`status_code`, `status`, `response.status_code`, `code`,
    or botocore's `response["ResponseMetadata"]["HTTPStatusCode"]`)."""
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        if isinstance(holder, dict):  # botocore's ClientError keeps the parsed response as a dict
            value = (holder.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if type(value) is int and 100 <= value <= 599:
                return value
            continue
        for name in ("status_code", "status", "http_status", "code"):
            value = getattr(holder, name, None)
            if type(value) is int and 100 <= value <= 599:
                return value
    return None


def _cancelled(exc: Any) -> bool:
    """A cancellation (asyncio's, or Ctrl-C), as an instance or a class. asyncio is asked only when the
    application has imported it: importing it here would cost `import tokentrail` ~20 ms."""
    cls = exc if isinstance(exc, type) else type(exc)
    if issubclass(cls, KeyboardInterrupt):
        return True
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and issubclass(cls, asyncio.CancelledError)


def categorize(exc: Any = None, status_code: int | None = None, message: str | None = None) -> str:
    """The category of a failure; `exc` may be an exception, an exception class or `None`."""
    if _cancelled(exc):
        return "cancelled"
    if isinstance(exc, BudgetExceeded):
        return "budget"
    if isinstance(exc, BaseException):
        status_code = status_code or status_code_of(exc)
        message = message if message is not None else str(exc)
    text = message or ""
    if _CONTEXT_LENGTH.search(text) and (status_code in (None, 400, 413, 422)):
        return "context_length"
    if status_code in (400, 403, 422) and _CONTENT_FILTER.search(text):
        return "content_filter"
    if status_code is not None:
        if status_code in _BY_STATUS:
            return _BY_STATUS[status_code]
        if status_code >= 500:
            return "server"
    cls = exc if isinstance(exc, type) else type(exc) if exc is not None else None
    if cls is not None:
        for klass in cls.__mro__:
            name = klass.__name__.lower().replace("_", "")
            for needle, category in _BY_CLASS:
                if needle in name:
                    return category
        if issubclass(cls, TimeoutError):
            return "timeout"
        if issubclass(cls, ConnectionError):
            return "connection"
    return "unknown"
