"""Spend alerts: a budget's event posted as JSON to a webhook (alerts.py), against real local HTTP servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tokentrail
from tokentrail import alerts
from tokentrail.errors import ConfigError


class Hook:
    """A local HTTP server in a thread: records each POST; `mode` is "ok", "500" or "hang"."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.bodies.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                hook.arrived.set()
                if hook.mode == "hang":
                    hook.release.wait(10)
                    return
                status = 500 if hook.mode == "500" else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token-123"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(request):
    servers = []

    def make(mode="ok"):
        server = Hook(mode)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
    # Events still queued for a server now closed fail fast: let them fail here, so no sender of this
    # test posts (and logs) during the next one.
    for sender in list(alerts._senders):
        sender.drain(5)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def cross(customer="acme", feature="search", user="u-1"):
    """One call of $0.01 (gpt-4o, 2000 in / 500 out) for this customer."""
    with tokentrail.attributes(customer_id=customer, feature=feature, user_id=user):
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=2_000, output=500)


def test_the_event_arrives_as_json(hook, db_url):
    server = hook()
    tracker = tokentrail.init(store=db_url, instrument=False, budgets=[
        tokentrail.Budget(limit_usd=0.005, period="day", scope={"customer_id": "*"}, name="per-customer",
                          webhook=server.url)])
    cross(customer="globex")  # $0.01: crosses globex's $0.005
    tokentrail.flush()
    assert server.arrived.wait(5)
    assert wait_for(lambda: tracker.stats()["alerts"]["sent"] == 1)
    (body,) = server.bodies
    assert server.headers[0]["Content-Type"] == "application/json"
    assert body["event"] == "budget.exceeded"
    assert body["budget"] == "per-customer" and body["action"] == "warn"
    assert body["scope"] == {"customer_id": "globex"}
    assert body["period"] == "day" and body["period_key"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert body["limit_usd"] == 0.005 and body["limit_tokens"] is None
    assert body["spent_usd"] == pytest.approx(0.01) and body["spent_tokens"] == 2500
    call = body["call"]
    assert (call["provider"], call["model"], call["feature"], call["customer_id"], call["user_id"]) == (
        "openai", "gpt-4o", "search", "globex", "u-1")
    assert call["cost_usd"] == pytest.approx(0.01) and call["total_tokens"] == 2500 and call["id"]
    assert abs(time.time() - __import__("datetime").datetime.fromisoformat(body["time"]).timestamp()) < 30
    # Once per counter and period: a second call over the same limit posts nothing more.
    cross(customer="globex")
    tokentrail.flush()
    time.sleep(0.2)
    assert len(server.bodies) == 1
    assert tracker.stats()["alerts"] == {"sent": 1, "failed": 0, "dropped": 0, "pending": 0, "last_error": None}


def test_a_raising_budget_posts_from_the_calling_threads_accounting_without_waiting(hook):
    server = hook("hang")
    tokentrail.init(store="none", instrument=False, budgets=[
        tokentrail.Budget(limit_usd=0.005, period="day", action="raise", webhook=server.url)])
    started = time.perf_counter()
    cross()  # accounted on the calling thread (a raise budget): the event is queued there, not sent
    elapsed = time.perf_counter() - started
    assert elapsed < 0.2, elapsed
    with pytest.raises(tokentrail.BudgetExceeded):
        cross()
    assert server.arrived.wait(5)
    assert server.bodies[0]["action"] == "raise"


@pytest.mark.parametrize("mode", ["hang", "500"])
def test_a_server_that_hangs_or_fails_costs_the_app_nothing_and_is_counted(hook, mode, tt_warnings, monkeypatch):
    monkeypatch.setattr(alerts, "TIMEOUT_S", 0.5)
    server = hook(mode)
    tracker = tokentrail.init(store="none", instrument=False, budgets=[
        tokentrail.Budget(limit_usd=0.005, period="day", scope={"customer_id": "*"}, webhook=server.url)])
    assert tracker.budgets.alerts.timeout == 0.5
    times = []
    for i in range(20):  # 20 customers, each crossing its limit: 20 events for a server that hangs or fails
        started = time.perf_counter()
        cross(customer=f"c{i}")
        tokentrail.flush()
        times.append(time.perf_counter() - started)
    assert max(times) < 0.1, times  # far below the webhook's timeout (0.5 s): the app never waits for it
    stats = lambda: tracker.stats()["alerts"]  # noqa: E731
    if mode == "500":
        assert wait_for(lambda: stats()["failed"] == 20)
        assert "HTTPError" in stats()["last_error"] and "500" in stats()["last_error"]
    else:  # one at a time, each cut off at the timeout
        assert wait_for(lambda: stats()["failed"] >= 2, timeout=5)
        assert "timed out" in stats()["last_error"]
    assert stats()["sent"] == 0
    assert "secret-token" not in (stats()["last_error"] or "")
    failures = [m for m in tt_warnings() if "budget webhook" in m]
    assert len(failures) == 1, failures  # logged once, then counted
    assert "127.0.0.1" in failures[0] and "secret-token" not in failures[0]


def test_a_full_queue_drops_and_counts(hook, monkeypatch):
    server = hook("hang")
    sender = alerts.WebhookSender(timeout=2, queue_size=3)
    started = time.perf_counter()
    for i in range(10):
        sender.post(server.url, {"n": i})
    assert time.perf_counter() - started < 0.1
    assert server.arrived.wait(5)
    # One in flight, 3 queued at most: at least 6 of the 10 dropped, none waited for.
    assert sender.snapshot()["dropped"] >= 6
    server.release.set()
    assert sender.drain(10)
    snap = sender.snapshot()
    assert snap["sent"] + snap["failed"] + snap["dropped"] == 10 and snap["pending"] == 0


def test_a_dead_port_is_counted(monkeypatch):
    sender = alerts.WebhookSender(timeout=1)
    sender.post("http://127.0.0.1:9/hook", {"x": 1})  # nothing listens on the discard port
    assert sender.drain(5)
    assert sender.snapshot()["failed"] == 1


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https://", "http://host:99999/x", 42])
def test_a_bad_url_fails_at_init_naming_the_option(url):
    with pytest.raises(ConfigError, match="webhook") as info:
        tokentrail.init(store="none", instrument=False, budgets=[{"limit_usd": 1, "webhook": url}])
    assert "budgets" in str(info.value)


def test_webhook_from_the_environment_and_the_config_file(hook, monkeypatch, tmp_path):
    server = hook()
    monkeypatch.setenv("TOKENTRAIL_BUDGETS", json.dumps([{"limit_usd": 0.005, "name": "env", "webhook": server.url}]))
    tracker = tokentrail.init(store="none", instrument=False)
    assert tracker.settings.budgets[0].webhook == server.url
    cross()
    tokentrail.flush()
    assert server.arrived.wait(5) and server.bodies[0]["budget"] == "env"
    tokentrail.shutdown()

    monkeypatch.delenv("TOKENTRAIL_BUDGETS")
    (tmp_path / "tokentrail.toml").write_text(f'store = "none"\n[[budgets]]\nlimit_usd = 1\nwebhook = "{server.url}"\n')
    assert tokentrail.init(instrument=False).settings.budgets[0].webhook == server.url
    tokentrail.shutdown()
    monkeypatch.setenv("TOKENTRAIL_BUDGETS", json.dumps([{"limit_usd": 1, "webhook": "mailto:me@example.com"}]))
    with pytest.raises(ConfigError, match="webhook.*TOKENTRAIL_BUDGETS"):
        tokentrail.init(instrument=False)


def test_the_url_is_not_in_the_budgets_repr():
    budget = tokentrail.Budget(limit_usd=1, webhook="https://hooks.example.com/T000/B000/secret")
    assert "secret" not in repr(budget)


def test_an_alert_from_the_last_calls_is_sent_at_exit(hook, tmp_path):
    """A script that crosses its limit and exits at once: the exit flush accounts the call, then the alert is sent."""
    server = hook()
    code = (
        "import tokentrail\n"
        f"tokentrail.init(store='none', instrument=False, budgets=[tokentrail.Budget(limit_usd=0.005, webhook={server.url!r})])\n"
        "with tokentrail.track_llm_call('openai', 'gpt-4o') as span:\n"
        "    span.set_tokens(input=2000, output=500)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert server.arrived.wait(5), result.stderr
    assert server.bodies[0]["call"]["model"] == "gpt-4o"
