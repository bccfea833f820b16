"""Spend alerts: a budget's event posted as JSON to a webhook URL, never on the application's threads.

    tokentrail.Budget(limit_usd=50, period="day", webhook="https://hooks.example.com/tokentrail")

- When the budget is exceeded (the moment `on_exceed` is called and the warning
  logged), the event is put on a bounded queue (`QUEUE_SIZE`) and a small daemon
  thread posts it (`POST`, `Content-Type: application/json`, the body below),
  with a timeout of `TIMEOUT_S` seconds and no retry. A full queue drops the
  event; a server that fails, answers >= 400 or does not answer in time costs
  the application nothing. Each outcome is counted (`sent`, `failed`, `dropped`
  in `Tracker.stats()["alerts"]`) and the first failure is logged on the
  `tokentrail` logger, naming only the URL's scheme and host (webhook URLs
  often carry a secret in their path).
- The thread is started on the first event and ends after `IDLE_S` seconds with
  nothing to send (a forked child starts its own). Everything it uses is
  imported when the sender is built, on the thread that calls `init()`.
- At exit, the tracker's pending calls are flushed first, so an alert raised by
  the last calls is still sent; then the queue gets up to `TIMEOUT_S` seconds.

The body (`BudgetEvent.to_dict()`):

    {"event": "budget.exceeded", "budget": "daily", "action": "warn",
     "scope": {"customer_id": "acme"}, "period": "day", "period_key": "2026-11-23",
     "limit_usd": 50.0, "limit_tokens": null, "spent_usd": 50.31, "spent_tokens": 2400312,
     "call": {"id": "…", "provider": "openai", "model": "gpt-4o", "feature": "search",
              "customer_id": "acme", "user_id": "u-1", "session_id": null, "workflow": null,
              "cost_usd": 0.42, "total_tokens": 12000, "started_at": "2026-11-23T17:02:11.120000+00:00"},
     "time": "2026-11-23T17:02:11.950000+00:00"}
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
import time
import weakref
from typing import Any, Callable

from . import log

__all__ = ["WebhookSender", "webhook_problem", "TIMEOUT_S", "QUEUE_SIZE"]

TIMEOUT_S = 3.0  # per request: connect + answer
QUEUE_SIZE = 100  # events waiting to be posted; more are dropped (and counted)
IDLE_S = 30.0  # the sending thread ends after this long with nothing to send


def webhook_problem(url: Any) -> str | None:
    """What is wrong with a webhook URL, or None: it must be an http(s) URL with a host."""
    if not isinstance(url, str):
        return f"webhook must be an http:// or https:// URL, not {url!r}"
    from urllib.parse import urlsplit  # calling thread (Budget's validation)

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"webhook {where(url)!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"webhook must be an http:// or https:// URL with a host, not {where(url)!r}"
    return None


def where(url: str) -> str:
    """A webhook URL without what may be secret (path, query, credentials): scheme://host[:port]."""
    try:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<bad url>"


_senders: weakref.WeakSet[WebhookSender] = weakref.WeakSet()


class WebhookSender:
    """Posts JSON bodies to URLs from a daemon thread of its own; `post` never blocks."""

    def __init__(self, timeout: float | None = None, queue_size: int | None = None) -> None:
        # Imported here, on the thread building the sender (init()): the sending thread imports nothing.
        import http.client  # noqa: F401
        import urllib.request

        "localhost".encode("idna")  # socket.getaddrinfo encodes host names with the idna codec: load it now
        self._opener = urllib.request.build_opener()
        self._request = urllib.request.Request
        self.timeout = TIMEOUT_S if timeout is None else timeout
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(QUEUE_SIZE if queue_size is None else queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._busy = 0  # events posted and not yet sent or failed (queued or in flight)
        self.before_exit: Callable[[], Any] | None = None  # the tracker's flush, so the last calls' alerts are sent
        self.stats = {"sent": 0, "failed": 0, "dropped": 0}
        self.last_error: str | None = None
        _senders.add(self)

    def post(self, url: str, payload: dict[str, Any]) -> None:
        """Queue `payload` for `url`; never blocks, never raises."""
        with self._lock:
            self._busy += 1
        try:
            body = json.dumps(payload, default=str).encode()
            self._queue.put_nowait((url, body))
        except queue.Full:
            with self._lock:
                self._busy -= 1
            self._count("dropped")
            log.warn_once("alerts.dropped", "tokentrail: budget webhook queue full (%s events); alerts dropped", self._queue.maxsize)
            return
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._busy -= 1
            self._count("failed")
            log.error_once("alerts.encode", "tokentrail: could not encode a budget alert", exc)
            return
        self._ensure_thread()

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="tokentrail-alerts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                url, body = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self._send(url, body)
            finally:
                with self._lock:
                    self._busy -= 1

    def _send(self, url: str, body: bytes) -> None:
        request = self._request(url, data=body, method="POST",
                                headers={"Content-Type": "application/json", "User-Agent": "tokentrail"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
        except Exception as exc:  # noqa: BLE001 - HTTPError (>= 400), URLError, timeouts, resets
            self._count("failed")
            self.last_error = f"{where(url)}: {type(exc).__name__}: {exc}"
            log.error_once("alerts.webhook", f"tokentrail: a budget webhook to {where(url)} failed "
                                             f"({type(exc).__name__}: {exc}); the application is not affected")
            return
        self._count("sent")

    def pending(self) -> int:
        with self._lock:
            return self._busy

    def drain(self, timeout: float | None = None) -> bool:
        """Wait (bounded: `timeout`, default the request timeout) until the queued events are sent or failed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.pending():
            thread = self._thread
            if thread is None or not thread.is_alive() or self._pid != os.getpid() or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "pending": self._busy, "last_error": self.last_error}


def _at_exit() -> None:
    for sender in list(_senders):
        if not sender.pending() and sender.before_exit is None:
            continue
        try:
            if sender.before_exit is not None:
                sender.before_exit()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
        sender.drain()


atexit.register(_at_exit)
