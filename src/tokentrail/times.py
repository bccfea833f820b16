"""Reading a moment in time from what users type: datetimes, dates, ISO text, or "7d ago"."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = ["parse_time"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: Any, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from a datetime, date, timedelta (that long ago), epoch seconds,
    ISO 8601 text, or a duration ago as text (`90s`, `15m`, `24h`, `7d`, `2w`). Naive times are UTC."""
    now = now or datetime.now(timezone.utc)
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    try:
        if isinstance(value, timedelta):
            return now - value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        match = _RELATIVE.match(value) if isinstance(value, str) else None
        if match:
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"not a time: {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            return parse_time(datetime.fromisoformat(value.strip().replace("Z", "+00:00")), now)
        except ValueError:
            pass
    raise ValueError(
        f"not a time: {value!r}; use a datetime, an ISO date such as 2026-11-01, or a duration ago such as 24h or 7d"
    )
