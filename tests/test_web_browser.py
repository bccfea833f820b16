"""The dashboard in a real browser: Debian's chromium driven by playwright, the server (uvicorn) in a thread.

Skipped, with the reason, when playwright or /usr/bin/chromium is missing (CI installs both: .ci/run).
A screenshot of the main view is saved under $TOKENTRAIL_ARTIFACTS (default: the session's temp folder,
`artifacts/dashboard.png`).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytest.importorskip("starlette", reason="the dashboard needs the ui extra")
pytest.importorskip("uvicorn", reason="the dashboard needs the ui extra")
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (the test extra)")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

import uvicorn  # noqa: E402

import tokentrail  # noqa: E402
from tokentrail import report  # noqa: E402
from tokentrail.web.server import create_app  # noqa: E402

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOW = datetime.now(timezone.utc)
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-6"), ("anthropic", "claude-3-5-haiku-latest")]


def record(url: str, n: int = 90) -> None:
    """`n` calls over the last five days through tokentrail's API, some failed, one workflow run with an outcome."""
    tokentrail.init(store=url, instrument=False)
    for i in range(n):
        provider, model = MODELS[i % len(MODELS)]
        tokentrail.log_llm_call(
            provider=provider, model=model, usage={"input_tokens": 200 + 37 * i, "output_tokens": 20 + 5 * i},
            duration_ms=100.0 + 13 * i, started_at=NOW - timedelta(minutes=80 * i + 1),
            customer_id=("acme", "globex", "initech")[i % 3], user_id=f"u{i % 5}", feature=("chat", "search")[i % 2],
            error=TimeoutError("slow") if i % 17 == 5 else None)
    with tokentrail.workflow("ticket", customer_id="acme") as run:
        tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", usage={"input_tokens": 10, "output_tokens": 1})
        run.emit_outcome("resolved")
    assert tokentrail.flush(10)
    tokentrail.shutdown()


class Server:
    """The dashboard on a free port, served by uvicorn in a thread."""

    def __init__(self, app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'calls.db'}"
    record(url)
    return url


@pytest.fixture(scope="module")
def dashboard(store):
    server = Server(create_app(store))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: page.problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: page.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    yield page
    context.close()


def load(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)


def direct(url: str, sql: str, params=()) -> list:
    with sqlite3.connect(report.store_path(url)) as db:
        return db.execute(sql, params).fetchall()


def artifacts() -> Path:
    folder = Path(os.environ.get("TOKENTRAIL_ARTIFACTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "tokentrail-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_loads_without_console_errors_and_draws_everything(page, dashboard):
    load(page, dashboard.url)
    assert page.input_value("#range") == "24h"  # the default view: cheap on any store
    assert page.problems == []
    page.select_option("#range", "")
    page.wait_for_function("document.querySelector('#calls-count').textContent.endsWith('of 91')")
    assert page.locator("#chart-cost canvas").count() == 1 and page.locator("#chart-calls canvas").count() == 1
    assert page.locator("#breakdown-table tbody tr").count() == len(MODELS)
    assert page.locator("#errors-table tbody tr").count() == 1 and "timeout" in page.inner_text("#errors-table")
    assert "resolved" in page.inner_text("#outcomes-table")
    assert page.locator("#calls-table tbody tr").count() == 50
    assert page.is_hidden("#empty") and page.is_hidden("#error")
    for by in ("provider", "user", "customer", "feature", "workflow"):
        page.click(f"#breakdown .tabs button[data-by='{by}']")
        page.wait_for_function(f"document.querySelector('#breakdown-key').textContent === '{by}'")
    page.wait_for_function("document.querySelector('#breakdown-table').innerText.includes('ticket')")
    shot = artifacts() / "dashboard.png"
    page.click("#breakdown .tabs button[data-by='model']")
    page.wait_for_timeout(200)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.problems == []


def test_the_totals_match_the_store(page, dashboard, store):
    load(page, dashboard.url)
    page.select_option("#range", "")
    calls, cost, tokens = direct(store, "SELECT COUNT(*), SUM(cost_usd), SUM(total_tokens) FROM llm_calls")[0]
    page.wait_for_function(f"document.querySelector('#total-calls').dataset.value === '{calls}'")
    assert page.inner_text("#total-calls") == f"{calls:,}"
    assert float(page.get_attribute("#total-cost", "data-value")) == pytest.approx(cost)
    assert int(page.get_attribute("#total-tokens", "data-value")) == tokens
    since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="microseconds")
    day = direct(store, "SELECT COUNT(*) FROM llm_calls WHERE started_at >= ?", (since,))[0][0]
    page.select_option("#range", "24h")
    page.wait_for_function(f"document.querySelector('#total-calls').dataset.value === '{day}'")
    assert day < calls
    assert page.problems == []


def test_filters_and_sorting_change_the_table(page, dashboard, store):
    load(page, dashboard.url)
    page.select_option("#range", "")
    page.wait_for_function("document.querySelector('#calls-count').textContent.endsWith('of 91')")
    page.fill("#filter-customer", "globex")
    page.click("#filters button[type=submit]")
    globex = direct(store, "SELECT COUNT(*) FROM llm_calls WHERE customer_id = 'globex'")[0][0]
    page.wait_for_function(f"document.querySelector('#calls-count').textContent.endsWith('of {globex}')")
    customers = page.locator("#calls-table tbody tr td:nth-child(4)").all_inner_texts()
    assert customers and set(customers) == {"globex"}
    page.select_option("#filter-status", "error")
    page.click("#filters button[type=submit]")
    failed = direct(store, "SELECT COUNT(*) FROM llm_calls WHERE customer_id = 'globex' AND error_category IS NOT NULL")[0][0]
    page.wait_for_function(f"document.querySelector('#calls-count').textContent.endsWith('of {failed}')")
    page.click("#filters-clear")
    page.wait_for_function("document.querySelector('#calls-count').textContent.endsWith('of 91')")
    page.click("#calls-table th[data-sort='cost_usd']")
    page.wait_for_function("document.querySelector('#calls-table th[data-sort=cost_usd]').classList.contains('sorted-desc')")
    top = direct(store, "SELECT id FROM llm_calls ORDER BY cost_usd DESC LIMIT 1")[0][0]
    page.wait_for_function(f"document.querySelector('#calls-table tbody tr').dataset.id === '{top}'")
    page.click("#next")
    page.wait_for_function("document.querySelector('#page-info').textContent.startsWith('page 2')")
    assert page.locator("#calls-table tbody tr").count() == 41
    assert page.problems == []


def test_the_detail_view_opens_with_every_field(page, dashboard, store):
    load(page, dashboard.url)
    page.select_option("#range", "")
    page.wait_for_function("document.querySelector('#calls-count').textContent.endsWith('of 91')")
    first = page.locator("#calls-table tbody tr").first
    call_id = first.get_attribute("data-id")
    first.click()
    page.wait_for_selector("#detail[open]")
    fields = page.inner_text("#detail-fields")
    assert call_id in fields and "cost_usd" in fields and "input_tokens" in fields
    assert "not captured" in page.inner_text("#detail-content")
    page.click("#detail-close")
    page.wait_for_selector("#detail:not([open])", state="attached")
    page.fill("#filter-feature", "")
    page.select_option("#range", "")
    page.click("#errors-table tbody tr")  # an error category lists its calls
    page.wait_for_function("document.querySelector('#filter-error_category').value === 'timeout'")
    timeouts = direct(store, "SELECT COUNT(*) FROM llm_calls WHERE error_category = 'timeout'")[0][0]
    page.wait_for_function(f"document.querySelector('#calls-count').textContent.endsWith('of {timeouts}')")
    assert page.problems == []


def test_what_if_compares_with_another_model(page, dashboard):
    load(page, dashboard.url)
    page.select_option("#range", "")
    page.fill("#whatif-model", "gpt-4o-mini")
    page.select_option("#whatif-by", "customer")
    page.click("#whatif-form button[type=submit]")
    page.wait_for_function("document.querySelector('#whatif-summary').textContent.startsWith('On gpt-4o-mini')")
    assert page.locator("#whatif-table tbody tr").count() == 3  # acme, globex, initech
    assert "instead of" in page.inner_text("#whatif-summary")
    assert page.problems == []


def test_live_refresh_shows_new_calls(page, dashboard, store):
    load(page, dashboard.url)
    before = int(page.get_attribute("#total-calls", "data-value"))
    tokentrail.init(store=store, instrument=False)
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 5, "output_tokens": 5})
    assert tokentrail.flush(10)
    tokentrail.shutdown()
    page.wait_for_function(f"document.querySelector('#total-calls').dataset.value === '{before + 1}'", timeout=15000)
    assert page.problems == []


def test_phone_width_and_dark_mode(browser, dashboard):
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    load(page, dashboard.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 392  # nothing wider than the phone
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)"
    assert page.locator("#calls-table th[data-sort='provider']").is_hidden()  # the less important columns fold away
    page.click("#theme")
    page.wait_for_function("getComputedStyle(document.body).backgroundColor === 'rgb(246, 247, 249)'")
    assert errors == []
    context.close()


def test_the_token_gate_refuses_the_page_without_the_token(browser, store):
    server = Server(create_app(store, token="let-me-in"))
    try:
        context = browser.new_context()
        page = context.new_page()
        answer = page.goto(server.url)
        assert answer.status == 401 and "token" in page.inner_text("body")
        answer = page.goto(server.url + "api/summary")
        assert answer.status == 401
        load(page, server.url + "?token=let-me-in")
        assert int(page.get_attribute("#total-calls", "data-value")) > 0  # the page's own requests carry it (cookie)
        context.close()
    finally:
        server.stop()


def test_an_empty_store_shows_how_to_record_the_first_call(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    tokentrail.open_store(url).close()
    server = Server(create_app(url))
    try:
        context = browser.new_context()
        page = context.new_page()
        load(page, server.url)
        assert page.is_visible("#empty") and "tokentrail.init()" in page.inner_text("#empty")
        context.close()
    finally:
        server.stop()


def test_a_long_breakdown_shows_the_costliest_and_sums_the_rest(page, dashboard, store, monkeypatch):
    from tokentrail.web import server as web_server

    monkeypatch.setattr(web_server, "BREAKDOWN_TOP", 2)  # the page's default; 100 in use
    groups = report.breakdown(tokentrail.open_store(store), ("user",))
    load(page, dashboard.url)
    page.select_option("#range", "")  # all time, as `groups`
    page.click("#breakdown .tabs button[data-by='user']")
    page.wait_for_function("document.querySelector('#breakdown-key').textContent === 'user'")
    page.wait_for_function("document.querySelectorAll('#breakdown-table tbody tr').length === 3 && "
                           f"document.querySelector('#breakdown-table tbody tr td').innerText === {groups[0]['user']!r}")
    rows = page.locator("#breakdown-table tbody tr")
    assert rows.nth(0).locator("td").first.inner_text() == groups[0]["user"]
    assert rows.nth(2).locator("td").first.inner_text() == f"{len(groups) - 2} more"
    assert rows.nth(2).locator("td").nth(1).inner_text() == str(sum(g["calls"] for g in groups[2:]))
    assert not page.problems, page.problems
