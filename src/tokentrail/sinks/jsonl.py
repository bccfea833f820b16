"""`jsonl:PATH`: one JSON object per record, appended to a file (`"type"` says which record)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

from ..record import to_dict

__all__ = ["JSONLSink"]


class JSONLSink:
    kind = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, records: Sequence[Any]) -> None:
        lines = "".join(json.dumps(to_dict(r), default=str, separators=(",", ":")) + "\n" for r in records)
        # Append per batch and close: several processes may share the file, and
        # a line is written whole by one write() call in append mode.
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)

    def after_fork(self) -> None:
        """A fresh lock in a forked child."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"
