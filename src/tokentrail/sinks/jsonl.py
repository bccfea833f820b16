"""`jsonl:PATH`: one JSON object per record, appended to a file (`"type"` says which record).

Rotation by size, off unless asked for: `jsonl:logs/calls.jsonl?max_bytes=50MB&keep=5`
(or `JSONLSink(path, max_bytes=, keep=)`). Before a batch would take the file past
`max_bytes`, `calls.jsonl` becomes `calls.jsonl.1` (`.1` becomes `.2`, …; beyond
`keep` files the oldest is deleted), as `logging.RotatingFileHandler` does. A batch
is never split across files, so a batch larger than `max_bytes` makes one larger
file. Several processes may append to one file (a line is written whole by one
`write()` in append mode); with rotation they may each rotate, so a file can be
rotated early, but no line is lost or split.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..record import to_dict

__all__ = ["JSONLSink", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_UNITS = {None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2, "gb": 1024**3, "gib": 1024**3}
DEFAULT_KEEP = 5


def parse_size(value: Any) -> int:
    """Bytes from `50MB`, `512KiB`, `1.5GB` (powers of 1024) or a whole number; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a size: {value!r}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None])


def _options(spec: str) -> tuple[str, dict[str, str]]:
    """`PATH?max_bytes=50MB&keep=3` -> (PATH, {"max_bytes": "50MB", "keep": "3"})."""
    path, sep, query = spec.partition("?")
    options: dict[str, str] = {}
    for item in query.split("&") if sep else ():
        if item.strip():
            name, _, value = item.partition("=")
            options[name.strip().lower()] = value.strip()
    return path, options


class JSONLSink:
    kind = "jsonl"

    def __init__(self, path: str, *, max_bytes: Any = None, keep: Any = None) -> None:
        path, options = _options(str(path))
        unknown = set(options) - {"max_bytes", "keep"}
        if unknown:
            raise ConfigError(f"tokentrail: unknown option(s) {sorted(unknown)} for the jsonl exporter {path!r}; "
                              f"accepted: max_bytes (a size such as 50MB), keep (how many rotated files to keep)")
        try:
            self.max_bytes = parse_size(options.get("max_bytes", max_bytes if max_bytes is not None else 0))
        except ValueError:
            raise ConfigError(f"tokentrail: bad value for `max_bytes` of the jsonl exporter {path!r}: "
                              f"{options.get('max_bytes', max_bytes)!r}; accepted: a size such as 50MB, 512KiB, "
                              f"or 0 (never rotate)") from None
        keep_value = options.get("keep", keep if keep is not None else DEFAULT_KEEP)
        try:
            self.keep = int(keep_value)
            if self.keep < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"tokentrail: bad value for `keep` of the jsonl exporter {path!r}: {keep_value!r}; "
                              f"accepted: a whole number >= 0") from None
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, records: Sequence[Any]) -> None:
        data = "".join(json.dumps(to_dict(r), default=str, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
        # Append per batch and close: several processes may share the file, and
        # a line is written whole by one write() call in append mode.
        with self._lock:
            if self.max_bytes:
                size = self._size()
                if size and size + len(data) > self.max_bytes:
                    self._rotate()
            with self.path.open("ab") as fh:
                fh.write(data)

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        """`PATH` -> `PATH.1` -> … -> `PATH.<keep>`; the oldest beyond `keep` is deleted (`keep=0`: `PATH` itself)."""
        try:
            if self.keep == 0:
                os.unlink(self.path)
                return
            for n in range(self.keep - 1, 0, -1):
                if self._rotated(n).exists():
                    os.replace(self._rotated(n), self._rotated(n + 1))
            os.replace(self.path, self._rotated(1))
        except FileNotFoundError:  # another process rotated it first
            pass

    def after_fork(self) -> None:
        """A fresh lock in a forked child."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"
