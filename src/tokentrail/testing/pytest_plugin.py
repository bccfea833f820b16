"""The pytest plugin: LLM calls, tokens and cost per test, and cost budgets that fail a test.

Installed with the package (entry point `pytest11: tokentrail`), and inert until
asked for:

- `pytest --tokentrail`: every test's LLM calls are recorded (real SDKs through
  the adapters, `tokentrail.testing.FakeProvider`, recorded cassettes, the
  manual API), a table of calls, tokens and cost per test is printed at the end
  of the session, and `@pytest.mark.tokentrail(max_usd=, max_tokens=, max_calls=)`
  fails a test that spends more.
- The `tokentrail` fixture, with or without the option: the test's `CallLog`
  (`.calls`, `.total_cost_usd`, `.input_tokens`, …), and the marker's limits
  enforced for that test. Nothing is printed without `--tokentrail`.

How: each test runs inside a `tokentrail.tracking()` block (setup, call and
teardown), with the installed SDKs instrumented (`tokentrail.instrument()`,
idempotent). A project that calls `tokentrail.init()` itself keeps its store,
exporters and budgets: the block adds the test's log as one more destination.
The limits are checked when the test body returns, over the calls of its setup
and body; a test over them fails with a message naming the test, the limit and
what was spent. A call without a known price counts nothing toward `max_usd`
(shown as `+N unpriced` in the table).

Without the entry point (`-p no:tokentrail`, or a checkout not installed), load
it with `-p tokentrail.testing.pytest_plugin`; do not list it in
`pytest_plugins` as well when it is installed (pytest refuses a plugin
registered twice).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest

__all__ = ["tokentrail"]

LIMITS = ("max_usd", "max_tokens", "max_calls")
_log_key = pytest.StashKey[Any]()  # the test's CallLog
_block_key = pytest.StashKey[Any]()  # the tracking() block recording it


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokentrail", "LLM calls, tokens and cost per test (tokentrail)")
    group.addoption("--tokentrail", action="store_true", default=False,
                    help="record each test's LLM calls, print calls/tokens/cost per test, and enforce "
                         "@pytest.mark.tokentrail(max_usd=, max_tokens=, max_calls=)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tokentrail(max_usd=None, max_tokens=None, max_calls=None): fail the test when its LLM calls spend more "
        "(with pytest --tokentrail or the tokentrail fixture)",
    )
    if config.getoption("tokentrail", False):
        config.pluginmanager.register(Session(config), "tokentrail-session")


def _limits(item: pytest.Item) -> dict[str, float]:
    """The marker's limits (the closest marker wins per limit); a bad one is a usage error naming the test."""
    limits: dict[str, float] = {}
    for marker in reversed(list(item.iter_markers("tokentrail"))):
        if marker.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.tokentrail takes keywords only "
                                    f"({', '.join(LIMITS)}), not {marker.args!r}")
        for name, value in marker.kwargs.items():
            if name not in LIMITS:
                raise pytest.UsageError(f"{item.nodeid}: unknown @pytest.mark.tokentrail limit {name!r}; "
                                        f"accepted: {', '.join(LIMITS)}")
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.tokentrail({name}=...) must be a number >= 0, "
                                        f"not {value!r}")
            limits[name] = value
    return limits


def _start(item: pytest.Item) -> Any:
    """Record the test's calls (idempotent: the option and the fixture share one log)."""
    log_ = item.stash.get(_log_key, None)
    if log_ is None:
        import tokentrail

        _instrument(tokentrail)
        block = tokentrail.tracking()
        log_ = block.__enter__()
        item.stash[_block_key] = block
        item.stash[_log_key] = log_
    return log_


_patched: set[str] = set()  # what instrument() patched: a test that uninstruments gets it back for the next
_instrumented = [False]


def _instrument(tokentrail: Any) -> None:
    """Patch the installed SDKs: once (instrument() takes ~10 ms), then again only if a test undid it
    (SDKs imported later are patched on import by the hooks instrument() leaves)."""
    if not _instrumented[0] or not _patched <= tokentrail.instrumented().keys():
        _patched.update(tokentrail.instrument())
        _instrumented[0] = True


def _stop(item: pytest.Item) -> Any:
    block = item.stash.get(_block_key, None)
    log_ = item.stash.get(_log_key, None)
    if block is not None:
        del item.stash[_block_key]
        try:
            block.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - a context already reset by the test: the log is still there
            pass
    return log_


def _money(usd: float) -> str:
    if usd >= 0.01:
        return f"${usd:.4f}"
    return "$" + (f"{usd:.9f}".rstrip("0").rstrip(".") or "0")


def _spent(log_: Any) -> dict[str, Any]:
    calls = log_.calls
    return {
        "calls": len(calls),
        "input_tokens": sum(c.input_tokens or 0 for c in calls),
        "output_tokens": sum(c.output_tokens or 0 for c in calls),
        "tokens": sum(c.total_tokens or 0 for c in calls),
        "usd": sum(c.cost_usd for c in calls if c.cost_usd is not None),
        "unpriced": sum(1 for c in calls if c.cost_usd is None),
        "errors": sum(1 for c in calls if c.error_type or c.error_category),
    }


def _over(item: pytest.Item, limits: dict[str, float], spent: dict[str, Any]) -> str | None:
    """The failure message when the test spent more than a limit, else None."""
    over = []
    if "max_usd" in limits and spent["usd"] > limits["max_usd"]:
        over.append(f"max_usd={limits['max_usd']:g}: spent {_money(spent['usd'])}")
    if "max_tokens" in limits and spent["tokens"] > limits["max_tokens"]:
        over.append(f"max_tokens={limits['max_tokens']:g}: spent {spent['tokens']:,} tokens")
    if "max_calls" in limits and spent["calls"] > limits["max_calls"]:
        over.append(f"max_calls={limits['max_calls']:g}: made {spent['calls']} calls")
    if not over:
        return None
    unpriced = f", {spent['unpriced']} without a known price" if spent["unpriced"] else ""
    return (f"tokentrail: {item.nodeid} went over its LLM budget (@pytest.mark.tokentrail): {'; '.join(over)} "
            f"(in all: {spent['calls']} calls, {spent['tokens']:,} tokens, {_money(spent['usd'])}{unpriced})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test body: fail it when its calls went over the marker's limits (only when recording)."""
    result = yield
    log_ = item.stash.get(_log_key, None)
    if log_ is not None:
        limits = _limits(item)
        if limits:
            message = _over(item, limits, _spent(log_))
            if message:
                pytest.fail(message, pytrace=False)
    return result


@pytest.fixture
def tokentrail(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The `CallLog` of this test's LLM calls; the `@pytest.mark.tokentrail` limits are enforced for it.

        def test_summary_is_cheap(tokentrail):
            summarize(document)
            assert tokentrail.total_tokens < 2_000
    """
    item = request.node
    owned = _log_key not in item.stash
    log_ = _start(item)
    yield log_
    if owned and request.config.pluginmanager.get_plugin("tokentrail-session") is None:
        _stop(item)


class Session:
    """With `--tokentrail`: every test recorded, and the table at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: list[tuple[str, dict[str, Any], str]] = []  # (nodeid, spent, outcome)
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        _start(item)
        return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        try:
            return (yield)
        finally:
            log_ = _stop(item)
            if log_ is not None:
                self.rows.append((item.nodeid, _spent(log_), ""))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed or (report.when == "call" and report.outcome != "passed") or report.skipped:
            self.outcomes.setdefault(report.nodeid, report.outcome)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        tr.section("tokentrail: LLM calls per test")
        rows = [(nodeid, spent) for nodeid, spent, _ in self.rows if spent["calls"]]
        if not rows:
            tr.write_line(f"no LLM calls recorded in {len(self.rows)} tests")
            return
        header = ("test", "calls", "input tok", "output tok", "cost", "")
        lines = []
        for nodeid, spent in rows:
            note = []
            if spent["unpriced"]:
                note.append(f"+{spent['unpriced']} unpriced")
            if spent["errors"]:
                note.append(f"{spent['errors']} errors")
            if self.outcomes.get(nodeid) in ("failed",):
                note.append("FAILED")
            lines.append((nodeid, str(spent["calls"]), f"{spent['input_tokens']:,}", f"{spent['output_tokens']:,}",
                          _money(spent["usd"]), ", ".join(note)))
        total = {k: sum(s[k] for _, s in rows) for k in ("calls", "input_tokens", "output_tokens", "usd", "unpriced")}
        lines.append((f"TOTAL ({len(rows)} of {len(self.rows)} tests made calls)", str(total["calls"]),
                      f"{total['input_tokens']:,}", f"{total['output_tokens']:,}", _money(total["usd"]),
                      f"+{total['unpriced']} unpriced" if total["unpriced"] else ""))
        widths = [max(len(r[i]) for r in (header, *lines)) for i in range(len(header))]

        def fmt(row: tuple[str, ...]) -> str:
            cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, 5)] + [row[5]]
            return "  ".join(cells).rstrip()

        tr.write_line(fmt(header))
        for line in lines[:-1]:
            tr.write_line(fmt(line))
        tr.write_line("-" * len(fmt(lines[-1])))
        tr.write_line(fmt(lines[-1]))
