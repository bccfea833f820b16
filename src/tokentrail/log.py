"""tokentrail's own diagnostics: the `tokentrail` logger, once per kind, and counters.

Nothing tokentrail does may raise into the application, so every internal
failure ends here: it is counted under a short kind (`sink.sqlite`,
`coerce.input_tokens`, …) and logged the first time that kind is seen, so a
failing sink does not flood the application's logs.

Messages are masked like stored text (`redact.mask`): a warning that quotes
a bad value (`ignored input_tokens='sk-…'`) never writes a key to the logs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from .redact import mask

logger = logging.getLogger("tokentrail")

# Reentrant: a signal handler that flushes may log on a thread interrupted while holding it.
_lock = threading.RLock()
_counts: Counter[str] = Counter()


def _first(kind: str) -> bool:
    with _lock:
        _counts[kind] += 1
        return _counts[kind] == 1


def _text(message: str, args: tuple[object, ...]) -> str:
    try:
        text = message % args if args else message
    except (TypeError, ValueError):
        text = f"{message} {args!r}"
    return mask(text)


def error_once(kind: str, message: str, exc: BaseException | None = None) -> None:
    """Count an internal error of `kind`; log it (with traceback) the first time."""
    if _first(kind):
        logger.error("%s (further errors of this kind are counted, not logged)", _text(message, ()), exc_info=exc)


def warn_once(kind: str, message: str, *args: object) -> None:
    """Count bad input of `kind`; warn the first time."""
    if _first(kind):
        logger.warning("%s", _text(message, args))


def info_once(kind: str, message: str, *args: object) -> None:
    """Count a notable event of `kind`; log it at INFO the first time."""
    if _first(kind):
        logger.info("%s", _text(message, args))


def counts() -> dict[str, int]:
    """Internal errors and warnings seen so far, by kind."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _counts.clear()


def after_fork_in_child() -> None:
    """A fresh lock in a forked child: the parent's may have been held by another thread at fork time."""
    global _lock
    _lock = threading.RLock()
