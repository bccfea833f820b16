import math
import random
from datetime import datetime, timezone

import pytest
from genai_prices import Usage, __version__, calc_price
from genai_prices.data import providers

import tokentrail
from tokentrail.errors import ConfigError
from tokentrail.pricing import PriceBook, _GenaiModel, parse_prices

MIXES = [(1000, 100, 0, 0, 0), (250_000, 5000, 100_000, 20_000, 0), (128_001, 10, 0, 0, 0),
         (200_001, 3000, 0, 0, 500), (0, 0, 0, 0, 0), (1, 1, 1, 0, 0), (32_001, 900, 32_000, 0, 0)]
TIMES = [datetime(2024, 6, 1, tzinfo=timezone.utc), datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc),
         datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)]


def same(ours, theirs):
    return all(math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-12)
               for a, b in zip(ours, (theirs.input_price, theirs.output_price, theirs.total_price)))


def test_same_result_as_genai_prices_for_every_model_and_token_mix():
    rng = random.Random(7)
    compared = 0
    for provider in providers:
        for info in provider.models:
            model = _GenaiModel(info, provider.id, __version__)
            for when in TIMES:
                mixes = MIXES + [(rng.randint(0, 10**6), rng.randint(0, 10**5), 0, 0, 0)]
                for i, o, cr, cw, r in mixes:
                    usage = Usage(input_tokens=i, output_tokens=o, cache_read_tokens=cr, cache_write_tokens=cw,
                                  output_reasoning_tokens=r)
                    theirs = info.calc_price(usage, provider, genai_request_timestamp=when)
                    ours = model.rates(when).compute(i, o, cr, cw, r)
                    assert ours is not None and same(ours, theirs), (provider.id, info.id, (i, o, cr, cw, r), when)
                    compared += 1
    assert compared > 50_000


@pytest.mark.parametrize(
    "provider, model, genai_provider, genai_model",
    [
        ("openai", "gpt-4o-2024-08-06", "openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-20241022", "anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-sonnet-latest", "anthropic", "claude-3-5-sonnet"),
        ("openai", "openai/gpt-4o", "openai", "gpt-4o"),
        (None, "openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("aws.bedrock", "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "aws", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "aws", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("azure_openai", "gpt-4o", "azure", "gpt-4o"),
        ("gemini", "models/gemini-2.0-flash", "google", "gemini-2.0-flash"),
        ("vertex", "gemini-1.5-pro", "google", "gemini-1.5-pro"),
        ("mistralai", "mistral-large-latest", "mistral", "mistral-large-latest"),
        ("groq", "llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        ("deepseek", "deepseek-chat", "deepseek", "deepseek-chat"),
        ("togetherai", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        (None, "claude-3-haiku-20240307", "anthropic", "claude-3-haiku-20240307"),
    ],
)
def test_names_as_users_and_sdks_write_them(provider, model, genai_provider, genai_model):
    ours = tokentrail.cost(provider, model, input_tokens=12_345, output_tokens=678, cache_read_tokens=345)
    theirs = calc_price(Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=345), genai_model, provider_id=genai_provider)
    assert ours is not None and math.isclose(ours.total_usd, float(theirs.total_price), rel_tol=1e-9)
    assert ours.source == f"genai-prices {__version__}"


def test_unknown_model_is_none_never_zero():
    assert tokentrail.cost("openai", "definitely-not-a-model", input_tokens=10) is None
    local = tokentrail.cost("ollama", "llama3", input_tokens=10)  # a local model: $0 unless you give it a price
    assert (local.total_usd, local.source) == (0.0, "local")


def test_cost_object_fields():
    c = tokentrail.cost("openai", "gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000)
    assert (c.input_usd, c.output_usd, c.total_usd) == (pytest.approx(2.5), pytest.approx(10.0), pytest.approx(12.5))
    assert (c.model, c.provider) == ("gpt-4o", "openai")


def test_cached_tokens_priced_once_at_the_cache_rate():
    full = tokentrail.cost("openai", "gpt-4o", input_tokens=1_000_000)
    half_cached = tokentrail.cost("openai", "gpt-4o", input_tokens=1_000_000, cache_read_tokens=500_000)
    assert half_cached.input_usd == pytest.approx(0.5 * 2.5 + 0.5 * 1.25)
    assert half_cached.total_usd < full.total_usd


def test_context_tier_applies_to_all_tokens():
    below = tokentrail.cost("gemini", "gemini-1.5-pro", input_tokens=128_000)
    above = tokentrail.cost("gemini", "gemini-1.5-pro", input_tokens=128_001)
    assert above.input_usd / 128_001 > below.input_usd / 128_000 * 1.5


def test_cost_bad_arguments_are_none_with_a_warning(tt_warnings):
    assert tokentrail.cost("openai", "gpt-4o", input_tokens=-1) is None
    assert tokentrail.cost("openai", "gpt-4o", input_tokens="10") is None
    assert tokentrail.cost("openai", "gpt-4o", input_tokens=10, cache_read_tokens=20) is None  # contradicts itself
    assert any("cost()" in m for m in tt_warnings())


def test_pipeline_prices_by_response_model_first(db_url):
    tokentrail.init(db_url, model_aliases={"my-prod-gpt": "gpt-4o"})
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("azure_openai", "my-prod-gpt-2") as span:   # a deployment name
            span.set_response_model("gpt-4o-mini-2024-07-18")                     # the response says the model
            span.set_tokens(input=1000, output=100)
        with tokentrail.track_llm_call("azure_openai", "my-prod-gpt") as span:     # mapped by model_aliases
            span.set_tokens(input=1000, output=100)
    by_model = {c.request_model: c for c in log.calls}
    mini = tokentrail.cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
    assert by_model["my-prod-gpt-2"].cost_usd == pytest.approx(mini.total_usd)
    assert by_model["my-prod-gpt"].cost_usd == pytest.approx(tokentrail.cost("azure", "gpt-4o", input_tokens=1000, output_tokens=100).total_usd)
    call = by_model["my-prod-gpt"]
    assert call.input_cost_usd + call.output_cost_usd == pytest.approx(call.cost_usd)


def test_pipeline_unknown_model_none_and_counted(db_url, caplog):
    caplog.set_level("INFO", logger="tokentrail")
    tracker = tokentrail.init(db_url)
    for _ in range(3):
        with tokentrail.track_llm_call("in-house", "secret-model") as span:
            span.set_tokens(input=10, output=10)
    assert tokentrail.flush(10)
    calls = tokentrail.open_store(db_url).calls()
    assert [c.cost_usd for c in calls] == [None, None, None]
    assert tracker.stats()["unpriced"] == 3
    assert len([r for r in caplog.records if "no price known" in r.getMessage()]) == 1


def test_failed_call_without_usage_costs_zero_but_a_call_without_usage_is_unknown():
    with tokentrail.tracking() as log:
        with pytest.raises(TimeoutError):
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                raise TimeoutError()
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
    failed, silent = sorted(log.calls, key=lambda c: c.error_type is None)
    assert failed.cost_usd == 0.0
    assert silent.cost_usd is None


def test_custom_prices_override_and_add(db_url):
    tokentrail.init(db_url, prices={
        "ft:gpt-4o-mini:acme::abc123": {"input": 0.3, "output": 1.2, "cache_read": 0.15},
        "gpt-4o": {"input": 1.0, "output": 2.0},                       # a negotiated rate
        "ollama/llama3": {"input": 0, "output": 0},                    # self-hosted: free
    })
    ft = tokentrail.cost("openai", "ft:gpt-4o-mini:acme::abc123", input_tokens=1_000_000, output_tokens=1_000_000,
                         cache_read_tokens=1_000_000)
    assert (ft.input_usd, ft.output_usd, ft.source) == (pytest.approx(0.15), pytest.approx(1.2), "custom")
    assert tokentrail.cost("openai", "gpt-4o", input_tokens=1_000_000).total_usd == pytest.approx(1.0)
    assert tokentrail.cost("ollama", "llama3", input_tokens=5).total_usd == 0.0
    assert tokentrail.cost("groq", "llama-3.1-8b-instant", input_tokens=5).source.startswith("genai-prices")  # others unaffected
    with tokentrail.tracking() as log:
        tokentrail.log_llm_call(provider="openai", model="ft:gpt-4o-mini:acme::abc123",
                                usage={"prompt_tokens": 1_000_000, "completion_tokens": 0})
    assert log.calls[0].cost_usd == pytest.approx(0.3)


def test_custom_prices_from_the_config_file(tmp_path):
    (tmp_path / "tokentrail.toml").write_text('[prices."my-model"]\ninput = 2.0\noutput = 4.0\n')
    tokentrail.init()
    assert tokentrail.cost(None, "my-model", input_tokens=500_000, output_tokens=250_000).total_usd == pytest.approx(2.0)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"m": {"input": -1}}, "input = -1"),
        ({"m": {"input": "cheap"}}, "input = 'cheap'"),
        ({"m": {"inptu": 1}}, "unknown key"),
        ({"m": {"cache_read": 1}}, "needs `input` and/or `output`"),
        ({"m": 3}, "entry 'm'"),
        (["m"], "accepted"),
    ],
)
def test_malformed_custom_prices_fail_at_init(table, message):
    with pytest.raises(ConfigError, match="prices") as err:
        tokentrail.init(store="none", prices=table)
    assert message in str(err.value) and "argument" in str(err.value)


def test_malformed_prices_in_file_name_the_file(tmp_path):
    (tmp_path / "tokentrail.toml").write_text('[prices.m]\ninput = -2\n')
    with pytest.raises(ConfigError, match="tokentrail.toml"):
        tokentrail.init()


def test_price_lookup_is_cached_per_model():
    book = PriceBook()
    first = book.rates("openai", "gpt-4o")
    assert book.rates("openai", "gpt-4o") is first
    assert ("openai", "gpt-4o") in book._cache
    assert parse_prices("prices", None, "x") == {}
