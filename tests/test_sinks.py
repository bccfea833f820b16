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
