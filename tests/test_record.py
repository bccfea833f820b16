import dataclasses
from datetime import datetime, timezone

from tokentrail.record import FIELDS, LLMCall, Outcome, ToolCall, to_dict

# The record as DESIGN.md lists it, in order.
DESIGN_FIELDS = """id trace_id span_id parent_span_id started_at duration_ms provider operation request_model
response_model response_id input_tokens output_tokens total_tokens cache_read_tokens cache_write_tokens
reasoning_tokens cost_usd input_cost_usd output_cost_usd stream ttft_ms chunk_count finish_reasons
request_params message_count tool_call_count error_type error_message error_category status_code attempt
cache_hit user_id customer_id feature session_id workflow workflow_run_id tags metadata input_messages
output_text source sdk_version""".split()


def test_llm_call_has_exactly_the_design_fields_in_order():
    assert list(FIELDS[LLMCall]) == DESIGN_FIELDS


def test_records_are_slotted_and_cheap():
    call = LLMCall(id="x")
    assert not hasattr(call, "__dict__")
    assert dataclasses.is_dataclass(ToolCall) and dataclasses.is_dataclass(Outcome)


def test_total_tokens_is_input_plus_output_when_either_is_known():
    assert LLMCall(id="a", input_tokens=10, output_tokens=5).total_tokens == 15
    assert LLMCall(id="b", input_tokens=10).total_tokens == 10
    assert LLMCall(id="c").total_tokens is None
    # An explicit total (e.g. read back from a store) is kept.
    assert LLMCall(id="d", input_tokens=1, output_tokens=1, total_tokens=2).total_tokens == 2


def test_model_prefers_requested_and_failed_flag():
    assert LLMCall(id="a", request_model="gpt-4o", response_model="gpt-4o-2024-08-06").model == "gpt-4o"
    assert LLMCall(id="a", response_model="gpt-4o-2024-08-06").model == "gpt-4o-2024-08-06"
    assert LLMCall(id="a", error_category="timeout").failed
    assert not LLMCall(id="a").failed


def test_to_dict_is_json_ready_and_typed():
    when = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    out = to_dict(Outcome(id="o", name="resolved", recorded_at=when, value=2.0))
    assert out["type"] == "outcome"
    assert out["recorded_at"] == "2026-11-01T12:00:00+00:00"
    assert out["value"] == 2.0
    assert to_dict(ToolCall(id="t", name="search"))["type"] == "tool_call"
