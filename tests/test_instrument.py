"""The adapter registry and the shared wrapper: gates, idempotence, restore, patch on import, never break the app."""

import json
import subprocess
import sys
import textwrap

import openai
import pytest
import wrapt
from hypothesis import HealthCheck, given, settings, strategies as st
from openai._base_client import AsyncAPIClient, SyncAPIClient

import tokentrail
from conftest import only
from tokentrail.instrument import openai as openai_adapter
from tokentrail.testing import http_module

MESSAGES = [{"role": "user", "content": "hi"}]


def test_available_reports_installed_versions():
    found = tokentrail.available()
    assert found["openai"] == openai.__version__
    assert "anthropic" in found


def test_unsupported_version_is_left_alone_with_one_log_line(monkeypatch, tt_warnings):
    monkeypatch.setattr(openai_adapter, "MIN_VERSION", (999, 0))
    assert "unsupported: needs >= 999.0" in tokentrail.available()["openai"]
    tokentrail.instrument("openai")
    tokentrail.instrument("openai")
    assert "openai" not in tokentrail.instrumented()
    assert not isinstance(SyncAPIClient.__dict__["request"], wrapt.FunctionWrapper)
    assert len([m for m in tt_warnings() if "older than the supported" in m]) == 1


def test_instrument_is_idempotent_and_uninstrument_restores():
    original_sync, original_async = SyncAPIClient.__dict__["request"], AsyncAPIClient.__dict__["request"]
    tokentrail.instrument("openai")
    tokentrail.instrument("openai")
    patched = SyncAPIClient.__dict__["request"]
    assert isinstance(patched, wrapt.FunctionWrapper) and patched.__wrapped__ is original_sync
    assert tokentrail.instrumented() == {"openai": openai.__version__}
    tokentrail.uninstrument("openai")
    assert SyncAPIClient.__dict__["request"] is original_sync and AsyncAPIClient.__dict__["request"] is original_async
    assert tokentrail.instrumented() == {}
    tokentrail.uninstrument("openai")  # again: harmless


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no adapter for.*known: openai, anthropic"):
        tokentrail.instrument("cohere-ish")
    with pytest.raises(tokentrail.ConfigError, match="instrument"):
        tokentrail.init(store="none", instrument=["cohere-ish"])


def test_init_instruments_only_the_named(db_url):
    tokentrail.init(db_url, instrument=["anthropic"])
    assert set(tokentrail.instrumented()) == {"anthropic"}


def run(code, tmp_path, **env):
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_sdk_imported_after_init_is_patched_on_import(tmp_path):
    result = run(
        """
        import sys, tokentrail
        tokentrail.init()
        assert "openai" not in sys.modules
        from tokentrail.testing import FakeProvider
        FakeProvider().openai_client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    calls = tokentrail.open_store(f"sqlite:///{tmp_path / 'tokentrail.db'}").calls()
    assert [(c.source, c.request_model, c.output_tokens) for c in calls] == [("openai", "gpt-4o", 5)]


def test_import_tokentrail_auto_is_zero_code(tmp_path):
    result = run(
        """
        import tokentrail.auto
        from tokentrail.testing import FakeProvider
        fake = FakeProvider()
        fake.anthropic_client().messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        """,
        tmp_path,
        TOKENTRAIL_STORE=f"sqlite:///{tmp_path / 'auto.db'}",
    )
    assert result.returncode == 0, result.stderr
    calls = tokentrail.open_store(f"sqlite:///{tmp_path / 'auto.db'}").calls()
    assert [(c.provider, c.output_tokens) for c in calls] == [("anthropic", 5)]


def test_auto_with_a_bad_config_reports_and_lets_the_app_run(tmp_path):
    result = run("import tokentrail.auto\nprint('app ran')", tmp_path, TOKENTRAIL_QUEUE_SIZE="lots")
    assert result.returncode == 0 and "app ran" in result.stdout
    assert "queue_size" in result.stderr and "not recording" in result.stderr


def test_an_internal_error_never_reaches_the_app(fake, log, monkeypatch, caplog):
    def broken(client, args, kwargs):
        raise RuntimeError("adapter bug")

    monkeypatch.setattr(openai_adapter, "call_of", broken)
    reply = fake.openai_client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from the fake provider."
    assert log.calls == []
    assert any("internal error while recording" in r.getMessage() for r in caplog.records)


def test_an_adapter_that_cannot_read_a_response_still_records(fake, log, monkeypatch, caplog):
    def unreadable(data):
        raise KeyError("surprise")

    endpoint = openai_adapter.ENDPOINTS["/chat/completions"]
    monkeypatch.setattr(endpoint, "response", unreadable)
    fake.openai_client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    call = only(log)
    assert call.request_model == "gpt-4o" and call.input_tokens is None and call.duration_ms > 0


def test_error_inside_a_stream_is_recorded_and_reraised(log):
    http = http_module("openai")

    def handler(request):
        frames = (b'data: {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": '
                  b'[{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}\n\n'
                  b'data: {"error": {"message": "overloaded mid-stream"}}\n\n')
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=frames)

    client = openai.OpenAI(api_key="k", http_client=http.Client(transport=http.MockTransport(handler)), max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="overloaded mid-stream"):
        for _ in stream:
            pass
    call = only(log)
    assert call.error_type == "APIError" and call.chunk_count == 1 and call.response_id == "c1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
bodies = st.fixed_dictionaries({}, optional={
    "id": json_values, "model": json_values, "object": json_values, "usage": json_values | st.fixed_dictionaries(
        {}, optional={"prompt_tokens": json_values, "completion_tokens": json_values, "prompt_tokens_details": json_values}),
    "choices": json_values | st.lists(st.fixed_dictionaries({}, optional={
        "message": json_values, "finish_reason": json_values, "index": json_values}), max_size=3),
})


def outcome(client):
    try:
        return "ok", repr(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, status=st.sampled_from([200, 200, 200, 400, 429, 500]))
def test_fuzz_the_app_sees_the_same_results_and_tokentrail_never_raises(body, status):
    http = http_module("openai")
    transport = http.MockTransport(lambda request: http.Response(status, headers={"content-type": "application/json"},
                                                                 content=json.dumps(body).encode()))
    client = openai.OpenAI(api_key="k", http_client=http.Client(transport=transport), max_retries=0)
    tokentrail.uninstrument()
    bare = outcome(client)
    tokentrail.instrument("openai")
    with tokentrail.tracking() as log:
        tracked = outcome(client)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.request_model == "gpt-4o"
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    assert (call.error_type is not None) == (bare[0] == "raised")


def test_status_lists_every_adapter_with_package_minimum_and_installed_version():
    rows = {r["name"]: r for r in tokentrail.instrument.status()}
    assert set(rows) == set(tokentrail.instrument.ADAPTERS)
    assert rows["openai"]["installed"] == openai.__version__ and rows["openai"]["minimum"] == "0.27"  # 0.x through the legacy table
    assert rows["openai"]["supported"] is True and rows["openai"]["package"] == "openai"
    tokentrail.instrument("openai")
    assert {r["name"]: r for r in tokentrail.instrument.status()}["openai"]["patched"] is True
