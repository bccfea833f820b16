import io
import json

import tokentrail
from tokentrail.record import LLMCall, Outcome, ToolCall
from tokentrail.sinks.console import ConsoleSink
from tokentrail.sinks.jsonl import JSONLSink


def test_jsonl_appends_one_object_per_record(tmp_path):
    sink = JSONLSink(str(tmp_path / "deep" / "calls.jsonl"))
    sink.export([LLMCall(id="a", input_tokens=1), ToolCall(id="t", name="search")])
    sink.export([Outcome(id="o", name="done", value=1.0)])
    lines = [json.loads(line) for line in (tmp_path / "deep" / "calls.jsonl").read_text().splitlines()]
    assert [(r["type"], r["id"]) for r in lines] == [("llm_call", "a"), ("tool_call", "t"), ("outcome", "o")]
    assert lines[0]["total_tokens"] == 1


def test_console_line_is_readable():
    out = io.StringIO()
    ConsoleSink(out).export([
        LLMCall(id="a", provider="openai", request_model="gpt-4o", input_tokens=100, output_tokens=20,
                cache_read_tokens=50, cost_usd=0.0012, duration_ms=812.4),
        LLMCall(id="b", provider="openai", request_model="gpt-4o", error_category="rate_limit", error_message="slow down"),
    ])
    first, second = out.getvalue().splitlines()
    assert first == "tokentrail: openai gpt-4o chat 100->20 tok (50 cached) $0.001200 812 ms"
    assert "tokens ?" in second and "$?" in second and "ERROR rate_limit: slow down" in second


def test_console_exporter_by_name(capsys):
    tokentrail.init(store="none", exporters="console")
    with tokentrail.track_llm_call("openai", "gpt-4o"):
        pass
    assert tokentrail.flush(5)
    assert "tokentrail: openai gpt-4o chat" in capsys.readouterr().err


def test_jsonl_rotates_by_size_and_keeps_the_newest_files(tmp_path):
    path = tmp_path / "calls.jsonl"
    sink = JSONLSink(f"{path}?max_bytes=1KB&keep=2")
    for n in range(12):
        sink.export([LLMCall(id=f"call-{n:02d}", provider="openai", request_model="gpt-4o", input_tokens=n)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["calls.jsonl", "calls.jsonl.1", "calls.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1024
    lines = [json.loads(line) for name in reversed(files) for line in (tmp_path / name).read_text().splitlines()]
    ids = [r["id"] for r in lines]
    assert ids == sorted(ids) and ids[-1] == "call-11"  # oldest first, nothing split or reordered


def test_jsonl_never_splits_a_batch_and_does_not_rotate_by_default(tmp_path):
    path = tmp_path / "calls.jsonl"
    big = [LLMCall(id=f"c{n}", metadata={"pad": "x" * 200}) for n in range(20)]
    JSONLSink(str(path)).export(big)
    JSONLSink(str(path)).export(big)
    assert [p.name for p in tmp_path.iterdir()] == ["calls.jsonl"]
    rotating = JSONLSink(str(path), max_bytes="1KiB", keep=0)
    rotating.export(big)  # one batch larger than max_bytes: one larger file, the full old one dropped (keep=0)
    assert [p.name for p in tmp_path.iterdir()] == ["calls.jsonl"]
    assert len(path.read_text().splitlines()) == 20


def test_jsonl_rotation_options_are_checked_at_init(tmp_path):
    import pytest
    from tokentrail.errors import ConfigError

    with pytest.raises(ConfigError, match="max_bytes"):
        tokentrail.init(store=None, exporters=[f"jsonl:{tmp_path / 'a.jsonl'}?max_bytes=lots"], instrument=False)
    with pytest.raises(ConfigError, match="unknown option"):
        tokentrail.init(store=None, exporters=[f"jsonl:{tmp_path / 'a.jsonl'}?size=1MB"], instrument=False)
    tracker = tokentrail.init(store=None, exporters=[f"jsonl:{tmp_path / 'a.jsonl'}?max_bytes=5MB&keep=3"], instrument=False)
    (sink,) = tracker.sinks
    assert (sink.max_bytes, sink.keep) == (5 * 1024 * 1024, 3)


def test_console_stays_one_line_per_record():
    out = io.StringIO()
    ConsoleSink(out).export([
        LLMCall(id="a", provider="openai", request_model="gpt-4o", error_type="APIError", error_category="server",
                error_message="upstream said:\n  502 Bad Gateway\n" + "x" * 500),
        ToolCall(id="t", name="multi\nline", error_type="E", error_message="a\nb"),
    ])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "ERROR server: upstream said: 502 Bad Gateway x" in lines[0] and len(lines[0]) < 300
    assert lines[1] == "tokentrail: tool multi line 0 ms ERROR a b"
