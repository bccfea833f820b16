from hypothesis import given, strategies as st

from tokentrail.usage import MAX_COUNT, coerce_count, known_usage, normalize_usage


def test_openai_chat_usage_with_details():
    usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
             "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 30}}
    assert normalize_usage(usage) == {"input_tokens": 100, "output_tokens": 50, "cache_read_tokens": 40,
                                      "cache_write_tokens": None, "reasoning_tokens": 30}


def test_openai_responses_usage():
    usage = {"input_tokens": 20, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
             "output_tokens_details": {"reasoning_tokens": 6}}
    assert normalize_usage(usage) == {"input_tokens": 20, "output_tokens": 9, "cache_read_tokens": 4,
                                      "cache_write_tokens": None, "reasoning_tokens": 6}


def test_anthropic_usage_adds_cache_to_input():
    usage = {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
    out = normalize_usage(usage)
    assert out["input_tokens"] == 1210
    assert (out["cache_read_tokens"], out["cache_write_tokens"]) == (1000, 200)


def test_anthropic_usage_with_zero_cache_keeps_input():
    out = normalize_usage({"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 0, "cache_creation_input_tokens": None})
    assert out["input_tokens"] == 10 and out["cache_read_tokens"] == 0


def test_gemini_usage_counts_thoughts_as_output():
    usage = {"prompt_token_count": 12, "candidates_token_count": 8, "thoughts_token_count": 5, "cached_content_token_count": 3}
    assert normalize_usage(usage) == {"input_tokens": 12, "output_tokens": 13, "cache_read_tokens": 3,
                                      "cache_write_tokens": None, "reasoning_tokens": 5}


def test_gemini_wire_spelling_and_tool_use_prompt_as_input():
    wire = {"promptTokenCount": 12, "candidatesTokenCount": 8, "thoughtsTokenCount": 5, "cachedContentTokenCount": 3,
            "toolUsePromptTokenCount": 4, "totalTokenCount": 29}
    assert normalize_usage(wire) == {"input_tokens": 16, "output_tokens": 13, "cache_read_tokens": 3,
                                     "cache_write_tokens": None, "reasoning_tokens": 5}
    sdk = {"prompt_token_count": 12, "candidates_token_count": 8, "tool_use_prompt_token_count": 4}
    assert normalize_usage(sdk)["input_tokens"] == 16
    # An embedding's usage has a prompt count only.
    assert normalize_usage({"promptTokenCount": 7, "totalTokenCount": 7}) == {
        "input_tokens": 7, "output_tokens": None, "cache_read_tokens": None, "cache_write_tokens": None,
        "reasoning_tokens": None}


def test_our_own_spelling_and_objects():
    class Usage:
        input_tokens = 3
        output_tokens = 4
        cache_read_tokens = 1
        cache_write_tokens = 0
        reasoning_tokens = 2

    assert normalize_usage(Usage()) == {"input_tokens": 3, "output_tokens": 4, "cache_read_tokens": 1,
                                        "cache_write_tokens": 0, "reasoning_tokens": 2}
    assert normalize_usage(None) == dict.fromkeys(["input_tokens", "output_tokens", "cache_read_tokens",
                                                   "cache_write_tokens", "reasoning_tokens"])


def test_coerce_count(tt_warnings):
    assert coerce_count(5, "x") == 5
    assert coerce_count(5.0, "x") == 5
    assert coerce_count(" 12 ", "x") == 12
    assert coerce_count(-1, "input_tokens") is None
    assert coerce_count("many", "input_tokens") is None
    assert coerce_count(True, "input_tokens") is None
    assert coerce_count(2.5, "input_tokens") is None
    assert coerce_count(float("nan"), "input_tokens") is None
    # One warning per kind, not one per bad value.
    assert len([m for m in tt_warnings() if "input_tokens" in m]) == 1


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                         "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_tokens_details", "completion_tokens_details",
                         "cached_tokens", "prompt_token_count", "thoughts_token_count", "reasoning_tokens",
                         "promptTokenCount", "candidatesTokenCount", "toolUsePromptTokenCount"]),
        inner, max_size=6),
    max_leaves=12,
)


@given(junk)
def test_normalize_usage_never_raises_and_returns_counts(usage):
    out = normalize_usage(usage)
    assert set(out) == {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"}
    assert all(v is None or (type(v) is int and 0 <= v <= MAX_COUNT) for v in out.values())


@given(junk)
def test_known_usage_is_normalize_usage_without_the_unknown_counts(usage):
    known = known_usage(usage)
    assert known == {k: v for k, v in normalize_usage(usage).items() if v is not None}
    known["response_id"] = "x"  # a new dict each time: adapters add their fields to it
    assert "response_id" not in known_usage(usage)


def test_known_usage_leaves_out_a_count_it_cannot_read(tt_warnings):
    assert known_usage({"prompt_tokens": "many", "completion_tokens": 7}) == {"output_tokens": 7}
    assert known_usage({"prompt_tokens": 3, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}) == \
        {"input_tokens": 3, "output_tokens": 7, "cache_read_tokens": 1}
    assert known_usage({"input_tokens": 10, "output_tokens": -1, "cache_read_input_tokens": 5}) == \
        {"input_tokens": 15, "cache_read_tokens": 5}


def test_openai_chat_usage_read_whole_only_when_every_count_is_one(tt_warnings):
    """The four counts OpenAI sends on every chat response are read in one step when all are counts;
    one that is not (too large, negative, a bool, a float) is left out as in the general reading."""
    def usage(prompt=13, completion=97, cached=0, reasoning=0):
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 110,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}}
    assert known_usage(usage()) == {"input_tokens": 13, "output_tokens": 97, "cache_read_tokens": 0, "reasoning_tokens": 0}
    assert known_usage(usage(completion=MAX_COUNT + 1)) == {"input_tokens": 13, "cache_read_tokens": 0, "reasoning_tokens": 0}
    assert known_usage(usage(prompt=-1)) == {"output_tokens": 97, "cache_read_tokens": 0, "reasoning_tokens": 0}
    assert known_usage(usage(reasoning=True)) == {"input_tokens": 13, "output_tokens": 97, "cache_read_tokens": 0}
    assert known_usage(usage(cached=2.0))["cache_read_tokens"] == 2
