from __future__ import annotations

import logging
import os

import pytest

import tokentrail
from tokentrail import context
from tokentrail import log as tt_log
from tokentrail import runtime


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test: a fresh working directory, no TOKENTRAIL_* variables, no tracker left behind."""
    for name in list(os.environ):
        if name.startswith("TOKENTRAIL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    tt_log.reset()
    # A test may leave a block's context behind on purpose (a generator finished in another context):
    # every test starts with no attribution, workflow or open span.
    for var in (context.attributes_var, context.current_span, context.current_workflow):
        var.set(None)
    yield
    tokentrail.shutdown(timeout=5)
    tokentrail.uninstrument()
    runtime.reset()
    tt_log.reset()


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'calls.db'}"


@pytest.fixture
def tt_warnings(caplog):
    """The messages tokentrail logged at WARNING or above."""
    caplog.set_level(logging.WARNING, logger="tokentrail")

    def messages():
        return [r.getMessage() for r in caplog.records if r.name == "tokentrail"]

    return messages


@pytest.fixture
def fake():
    from tokentrail.testing import FakeProvider

    return FakeProvider()


@pytest.fixture
def log():
    """SDKs instrumented; yields the CallLog of the test's calls (no store)."""
    tokentrail.instrument()
    with tokentrail.tracking() as calls:
        yield calls


def only(log):
    calls = log.calls
    assert len(calls) == 1, calls
    return calls[0]


def pytest_terminal_summary(terminalreporter):
    """The figures tests/reliability printed, together at the end of the run (they are also in each test's output)."""
    import sys

    helpers = sys.modules.get("reliability_helpers")
    if helpers is not None and helpers.FIGURES:
        terminalreporter.section("reliability figures")
        for _, name, value in helpers.FIGURES:
            terminalreporter.write_line(f"{name}: {value}")


# -- PostgreSQL: one real server per test session (tokentrail.testing.postgres), a database per test ------------

@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server started for this session (initdb into a temp dir, a free port); skipped without binaries."""
    from tokentrail.testing.postgres import PostgresServer, find_binaries

    pytest.importorskip("psycopg", reason="psycopg is in the `test` extra (pip install -e '.[test]')")
    if find_binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
                    ".ci/run installs Debian's postgresql package")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh database of its own for each test: its URL."""
    import re
    import uuid

    name = re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    if not pg_server.running:
        pg_server.start()  # a test that stopped the server leaves it stopped
    return pg_server.create_database(name)
