"""Secrets never stored: credential-named keys dropped, key-shaped strings masked — stores, exports, console."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

import tokentrail
from conftest import only
from tokentrail.redact import gather_text, mask, needs_mask, scrub

OPENAI_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
KEYS = [OPENAI_KEY, "sk-ant-api03-" + "x" * 40, "AKIAIOSFODNN7EXAMPLE", "gsk_" + "q" * 40, "xai-" + "z" * 40,
        "AIzaSyD" + "k" * 32, "hf_" + "h" * 30, "ghp_" + "g" * 36, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcDEF123"]


@pytest.mark.parametrize("key", KEYS)
def test_every_key_shape_is_masked_in_any_text(key):
    text = f"Incorrect API key provided: {key}. You can find your API key at https://example"
    masked = mask(text)
    assert key not in masked and key[5:] not in masked and "…[masked]" in masked
    assert masked.startswith("Incorrect API key provided: ") and masked.endswith("You can find your API key at https://example")


def test_bearer_tokens_and_ordinary_words():
    assert mask("Authorization: Bearer abc.DEF-123_456~xyz") == "Authorization: Bearer abc.D…[masked]"
    for text in ("task-list", "ask-me-anything", "skeleton key", "disk-usage-report", "AKIA", "gpt-4o-mini", "eyJ"):
        assert mask(text) == text


def test_scrub_drops_credential_keys_at_any_depth_and_keeps_the_rest_identical():
    value = {"api_key": "x", "X-Api-Key": "y", "ok": 1, "deep": [{"password": "p", "note": f"key={OPENAI_KEY}"}]}
    assert scrub(value) == {"ok": 1, "deep": [{"note": "key=sk-pr…[masked]"}]}
    clean = {"a": [1, "b"], "c": {"d": "e"}}
    assert scrub(clean) is clean  # nothing to change: nothing copied


# Values as records hold them: strings (some key-shaped or non-ASCII), numbers, nested lists, dicts
# whose keys may name credentials, and what the walk leaves to scrub() (tuples, objects, int keys).
_texts = st.sampled_from(["stop", "gpt-4o-mini", "api.openai.com", "task-list", "é", f"key {OPENAI_KEY}", "Bearer abcdefghijklmnop", ""])
_keys = st.sampled_from(["note", "server_port", "api_key", "X-Api-Key", "deep", "password"])
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3)
    | st.tuples(inner) | st.dictionaries(st.integers(), inner, max_size=2) | st.builds(object),
    max_leaves=10,
)


@given(_values)
def test_a_value_whose_gathered_strings_need_no_mask_is_one_scrub_leaves_as_it_is(value):
    """The record's fast path (pending._scrubbed) trusts this: when gather_text walks a value and the
    strings it gathered need no mask, scrub() would change nothing in it."""
    strings: list[str] = []
    if gather_text(value, strings) and not needs_mask("\n".join(strings)):
        assert scrub(value) is value
    # The same when strings found clean before are left out of the test (the record's memo).
    strings = []
    if gather_text(value, strings, {"stop": None, "api.openai.com": None}) and not needs_mask("\n".join(strings)):
        assert scrub(value) is value
        assert "stop" not in strings and "api.openai.com" not in strings


def test_a_key_name_found_plain_is_remembered_and_a_credential_name_never_is():
    for _ in range(3):  # the second and third time the plain names come from the memo
        assert gather_text({"temperature": 0.2, "server_port": 443}, [])
        assert not gather_text({"temperature": 0.2, "api_key": "x"}, [])
        assert not gather_text({"note": {"Authorization": "x"}}, [])
        assert not gather_text({1: "one"}, [])


def test_credentials_nested_in_lists_and_dicts_are_dropped_and_params_left_empty_are_none(tmp_path):
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    tokentrail.init(store, instrument=False)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.add_metadata(outer={"api_key": "x", "notes": ["plain", f"key {OPENAI_KEY}"], "n": 3}, route="a/b")
        span.set_request_params(api_key=OPENAI_KEY)
        span.set_tokens(input=5, output=1)
    with tokentrail.track_llm_call("openai", "gpt-4o") as span:
        span.add_metadata(route="a/b", tried=[1, 2.5, None, True])
        span.set_request_params(temperature=0.0)
        span.set_tokens(input=5, output=1)
    assert tokentrail.flush(5)
    tokentrail.shutdown()
    first, second = sorted(tokentrail.open_store(store).calls(), key=lambda c: c.started_at)
    assert first.metadata == {"outer": {"notes": ["plain", "key sk-pr…[masked]"], "n": 3}, "route": "a/b"}
    assert first.request_params is None
    assert second.metadata == {"route": "a/b", "tried": [1, 2.5, None, True]} and second.request_params == {"temperature": 0.0}


def test_strings_remembered_as_clean_never_let_a_key_through(tmp_path):
    """The worker remembers names it found clean (pending._scrubbed); a key is a new string, always tested."""
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    tokentrail.init(store, instrument=False)
    for model in ("gpt-4o", "gpt-4o", OPENAI_KEY, "gpt-4o", OPENAI_KEY):
        tokentrail.log_llm_call(provider="openai", model=model, usage={"input_tokens": 1, "output_tokens": 1}, feature="chat")
    assert tokentrail.flush(5)
    tokentrail.shutdown()
    models = sorted(c.request_model for c in tokentrail.open_store(store).calls())
    assert models == ["gpt-4o"] * 3 + ["sk-pr…[masked]"] * 2


def test_response_ids_are_tested_but_not_remembered_as_clean(tmp_path):
    """An id that names one call never comes back: remembering it would only push out the names that do.
    A key-shaped one is masked like any other text."""
    from tokentrail import pending

    store = f"sqlite:///{tmp_path / 'calls.db'}"
    tokentrail.init(store, instrument=False)
    for n, response_id in enumerate(["chatcmpl-1", "chatcmpl-2", OPENAI_KEY]):
        tokentrail.log_llm_call(provider="openai", model="gpt-4o", response={"id": response_id, "model": "gpt-4o",
                                "usage": {"prompt_tokens": 1, "completion_tokens": n + 1}})
    assert tokentrail.flush(5)
    tokentrail.shutdown()
    ids = [c.response_id for c in sorted(tokentrail.open_store(store).calls(), key=lambda c: c.output_tokens)]
    assert ids == ["chatcmpl-1", "chatcmpl-2", "sk-pr…[masked]"]
    assert "gpt-4o" in pending._clean and "chatcmpl-1" not in pending._clean and "chatcmpl-2" not in pending._clean


def test_credentials_given_anywhere_are_never_stored(tmp_path):
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    jsonl = tmp_path / "calls.jsonl"
    tokentrail.init(store, exporters=[f"jsonl:{jsonl}"], instrument=False, capture_content=True)
    with tokentrail.attributes(user_id="u1", api_key=OPENAI_KEY, tags=[f"token:{OPENAI_KEY}"]):
        with tokentrail.track_llm_call("openai", "gpt-4o", api_key=OPENAI_KEY, note=f"uses {OPENAI_KEY}") as span:
            span.add_metadata(authorization=f"Bearer {OPENAI_KEY}", session_token="s3cr3t-value")
            span.set_request_params(temperature=0.1, api_key=OPENAI_KEY)
            span.set_content(input=f"my key is {OPENAI_KEY}", output="noted")
            span.set_tokens(input=5, output=1)
        tokentrail.log_llm_call(provider="openai", model="gpt-4o", api_key=OPENAI_KEY, error=f"Incorrect API key provided: {OPENAI_KEY}")
        with tokentrail.track_tool_call("lookup", arguments={"Authorization": OPENAI_KEY, "q": "x"}):
            pass
        tokentrail.emit_outcome("done", secret=OPENAI_KEY)
    assert tokentrail.flush(5)
    tokentrail.shutdown()
    stored = (tmp_path / "calls.db").read_bytes() + jsonl.read_bytes()
    for wal in tmp_path.glob("calls.db-*"):
        stored += wal.read_bytes()
    assert OPENAI_KEY.encode() not in stored and OPENAI_KEY[5:].encode() not in stored
    assert b"s3cr3t-value" not in stored
    calls = tokentrail.open_store(store).calls()
    failed = next(c for c in calls if c.error_message)
    assert failed.error_message == "Incorrect API key provided: sk-pr…[masked]"
    kept = next(c for c in calls if c.input_tokens)
    assert kept.metadata == {"note": "uses sk-pr…[masked]"} and kept.request_params == {"temperature": 0.1}
    assert kept.user_id == "u1" and kept.output_text == "noted"


def test_provider_error_echoing_the_key_is_masked_and_console_output_too(fake, log, capsys):
    import openai

    fake.fail(401, message=f"Incorrect API key provided: {OPENAI_KEY}.")
    with pytest.raises(openai.AuthenticationError):
        fake.openai_client(api_key=OPENAI_KEY).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    call = only(log)
    assert OPENAI_KEY not in call.error_message and "sk-pr…[masked]" in call.error_message
    from tokentrail.sinks import make_exporter

    make_exporter("console").export([call])
    printed = capsys.readouterr()
    assert "401" in printed.out + printed.err and OPENAI_KEY not in printed.out + printed.err
