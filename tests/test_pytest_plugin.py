"""The pytest plugin (tokentrail.testing.pytest_plugin), run on test files of its own through `pytester`."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parent.parent


def installed() -> bool:
    """Whether the package's pytest11 entry point is installed (else the runs load the plugin with -p)."""
    return any(ep.name == "tokentrail" and ep.value == "tokentrail.testing.pytest_plugin"
               for ep in metadata.entry_points(group="pytest11"))


def run(pytester, *args):
    plugin = () if installed() else ("-p", "tokentrail.testing.pytest_plugin")
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "-p", "no:randomly", *args, timeout=120)


SUITE = '''
import pytest
import tokentrail
from tokentrail.testing import FakeProvider

fake = FakeProvider(reply="ok")
client = fake.openai_client()   # the real openai SDK on the fake provider


def ask(n=1):
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_one_call():
    ask(1)


def test_three_calls():
    ask(3)


def test_no_calls():
    assert 1 + 1 == 2


@pytest.mark.tokentrail(max_usd=0.01, max_calls=5)
def test_under_budget():
    ask(2)


@pytest.mark.tokentrail(max_calls=2)
def test_too_many_calls():
    ask(3)


@pytest.mark.tokentrail(max_usd=0.0000001)
def test_too_expensive():
    ask(1)


@pytest.mark.tokentrail(max_tokens=1)
def test_too_many_tokens():
    ask(1)


def test_manual_api():
    with tokentrail.track_llm_call("anthropic", "claude-3-5-haiku-latest") as span:
        span.set_tokens(input=1000, output=100)
'''


def per_call(pytester):
    """What one fake chat call costs: measured in this process with the same SDK and fake."""
    import tokentrail
    from tokentrail.testing import FakeProvider

    client = FakeProvider(reply="ok").openai_client()
    tokentrail.instrument()
    with tokentrail.tracking() as log:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    (call,) = log.calls
    assert call.cost_usd and call.total_tokens
    return call


def table(result) -> dict[str, list[str]]:
    """The session's table: test name -> its cells."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "tokentrail: LLM calls per test" in line)
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("=") and rows:
            break
        match = re.match(r"(\S+::(\w+)|TOTAL \(.*?\))\s+(.*)$", line)
        if match:
            rows[match.group(2) or "TOTAL"] = match.group(3).split()
    return rows


def test_the_table_and_the_budgets(pytester):
    one = per_call(pytester)
    pytester.makepyfile(test_llm=SUITE)
    result = run(pytester, "--tokentrail", "-v")
    result.assert_outcomes(passed=5, failed=3)
    rows = table(result)
    # A row per test that made calls: calls, input tokens, output tokens, cost.
    assert rows["test_one_call"][:3] == ["1", f"{one.input_tokens:,}", f"{one.output_tokens:,}"]
    assert rows["test_three_calls"][:3] == ["3", f"{3 * one.input_tokens:,}", f"{3 * one.output_tokens:,}"]
    assert float(rows["test_three_calls"][3].lstrip("$")) == pytest.approx(3 * one.cost_usd, rel=1e-3)
    assert rows["test_manual_api"][0] == "1" and rows["test_manual_api"][1:3] == ["1,000", "100"]
    assert "test_no_calls" not in rows
    assert rows["TOTAL"][0] == "12"  # 1 + 3 + 2 + 3 + 1 + 1 + 1 (manual)
    assert "FAILED" in " ".join(rows["test_too_many_calls"])
    # Over-budget tests fail with the test, the limit and what was spent; under-budget ones pass.
    result.stdout.fnmatch_lines(["*test_under_budget PASSED*", "*test_too_many_calls FAILED*"])
    out = result.stdout.str()
    assert re.search(r"test_llm.py::test_too_many_calls went over its LLM budget .*max_calls=2: made 3 calls", out)
    assert re.search(r"test_llm.py::test_too_expensive went over its LLM budget .*max_usd=1e-07: spent \$0\.0", out)
    assert re.search(r"test_llm.py::test_too_many_tokens went over its LLM budget .*max_tokens=1: spent [\d,]+ tokens", out)
    assert "test_under_budget went over" not in out


def test_without_the_option_nothing_is_printed_and_markers_are_inert(pytester):
    pytester.makepyfile(test_llm=SUITE)
    result = run(pytester)
    result.assert_outcomes(passed=8)
    if installed():
        result.stdout.fnmatch_lines(["plugins:*tokentrail-*"])  # loaded by its entry point, and inert
    out = "\n".join(line for line in result.outlines if not line.startswith("plugins:"))
    assert "tokentrail" not in out and "LLM calls" not in out


def test_the_fixture_without_the_option(pytester):
    pytester.makepyfile(test_fixture='''
import pytest
from tokentrail.testing import FakeProvider

client = FakeProvider().openai_client()

def ask():
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

def test_log(tokentrail):
    ask(); ask()
    assert len(tokentrail.calls) == 2 and tokentrail.total_cost_usd > 0
    assert tokentrail.calls[0].request_model == "gpt-4o"

def test_each_test_its_own(tokentrail):
    ask()
    assert len(tokentrail.calls) == 1

@pytest.mark.tokentrail(max_calls=1)
def test_marker_with_the_fixture(tokentrail):
    ask(); ask()

def test_not_recorded_without_the_fixture():
    import tokentrail
    assert not tokentrail.is_tracking()
''')
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_marker_with_the_fixture went over its LLM budget*max_calls=1: made 2 calls*"])
    assert "LLM calls per test" not in result.stdout.str()


def test_a_project_that_calls_init_itself_keeps_its_store(pytester):
    pytester.makeconftest('''
import pytest, tokentrail

@pytest.fixture(scope="session", autouse=True)
def tracked(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'calls.db'}"
    tokentrail.init(store=url)
    yield url
    tokentrail.shutdown()
    store = tokentrail.open_store(url)
    print("STORED", len(store.calls()))
    store.close()
''')
    pytester.makepyfile(test_app='''
from tokentrail.testing import FakeProvider
client = FakeProvider().openai_client()

def test_a(tokentrail):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert len(tokentrail.calls) == 1

def test_b():
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
''')
    result = run(pytester, "--tokentrail", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*STORED 2*"])  # the project's own store has every call
    rows = table(result)
    assert rows["test_a"][0] == "1" and rows["test_b"][0] == "1"


def test_a_suite_that_uninstruments_after_each_test_is_still_recorded(pytester):
    pytester.makeconftest('''
import pytest, tokentrail

@pytest.fixture(autouse=True)
def clean():
    yield
    tokentrail.uninstrument()
''')
    pytester.makepyfile(test_app='''
from tokentrail.testing import FakeProvider
client = FakeProvider().openai_client()

def test_a():
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

def test_b():
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
''')
    result = run(pytester, "--tokentrail")
    result.assert_outcomes(passed=2)
    rows = table(result)
    assert rows["test_a"][0] == "1" and rows["test_b"][0] == "2"


def test_a_bad_marker_is_a_usage_error(pytester):
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.tokentrail(max_dollars=1)
def test_x():
    pass
''')
    result = run(pytester, "--tokentrail")
    assert result.ret != 0
    assert "unknown @pytest.mark.tokentrail limit 'max_dollars'; accepted: max_usd, max_tokens, max_calls" in (
        result.stdout.str() + result.stderr.str())


def test_the_entry_point_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\ntokentrail = "tokentrail.testing.pytest_plugin"' in text
