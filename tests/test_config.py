import pytest

import tokentrail
from tokentrail.config import OPTIONS, Settings, load_settings
from tokentrail.errors import ConfigError

# option -> (a file value, an environment value, an argument value, what each parses to)
SAMPLES = {
    "store": ("sqlite:///file.db", "sqlite:///env.db", "sqlite:///arg.db"),
    "exporters": (["console"], "jsonl:env.jsonl", ["jsonl:arg.jsonl"]),
    "capture_content": (True, "off", True),
    "content_max_chars": (100, "200", 300),
    "queue_size": (10, "20", 30),
    "batch_size": (11, "21", 31),
    "flush_interval": (0.1, "0.2", 0.3),
    "shutdown_timeout": (1, "2", 3),
    "enabled": (False, "yes", False),
    "prices": ({"m-file": {"input": 1.0}}, '{"m-env": {"output": 2}}', {"m-arg": {"input": 3, "output": 4}}),
    "model_aliases": ({"dep-file": "gpt-4o"}, '{"dep-env": "gpt-4o"}', {"dep-arg": "gpt-4o-mini"}),
    "budgets": ([{"limit_usd": 1.0}], '[{"limit_usd": 2, "period": "month"}]', [tokentrail.Budget(limit_tokens=3)]),
    "instrument": (["openai"], "anthropic", False),
    "retention": ("90d", "12w rollup", "720h"),
}
PARSED = {
    "store": ("sqlite:///file.db", "sqlite:///env.db", "sqlite:///arg.db"),
    "exporters": (("console",), ("jsonl:env.jsonl",), ("jsonl:arg.jsonl",)),
    "capture_content": (True, False, True),
    "content_max_chars": (100, 200, 300),
    "queue_size": (10, 20, 30),
    "batch_size": (11, 21, 31),
    "flush_interval": (0.1, 0.2, 0.3),
    "shutdown_timeout": (1.0, 2.0, 3.0),
    "enabled": (False, True, False),
    "prices": ({"m-file"}, {"m-env"}, {"m-arg"}),
    "model_aliases": ({"dep-file": "gpt-4o"}, {"dep-env": "gpt-4o"}, {"dep-arg": "gpt-4o-mini"}),
    "budgets": ((tokentrail.Budget(limit_usd=1.0),), (tokentrail.Budget(limit_usd=2, period="month"),), (tokentrail.Budget(limit_tokens=3),)),
    "instrument": (("openai",), ("anthropic",), False),
    "retention": ((90 * 86400.0, False), (12 * 604800.0, True), (720 * 3600.0, False)),
}


def view(name, value):
    """What to compare of a parsed value (custom prices are rate objects: compare their models)."""
    return set(value) if name == "prices" else value


def test_every_option_is_sampled():
    assert set(SAMPLES) == set(OPTIONS)


def toml_value(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_precedence_argument_over_env_over_file_over_default(name, tmp_path):
    file_value, env_value, arg_value = SAMPLES[name]
    from_file, from_env, from_arg = PARSED[name]
    (tmp_path / "tokentrail.toml").write_text(f"{name} = {toml_value(file_value)}\n")
    env = {f"TOKENTRAIL_{name.upper()}": env_value}

    assert view(name, getattr(load_settings(cwd=tmp_path, env={}), name)) == from_file
    assert load_settings(cwd=tmp_path, env={}).sources[name].endswith("tokentrail.toml")
    assert view(name, getattr(load_settings(cwd=tmp_path, env=env), name)) == from_env
    assert load_settings(cwd=tmp_path, env=env).sources[name] == f"environment variable TOKENTRAIL_{name.upper()}"
    assert view(name, getattr(load_settings({name: arg_value}, cwd=tmp_path, env=env), name)) == from_arg
    assert load_settings({name: arg_value}, cwd=tmp_path, env=env).sources[name] == "argument"
    (tmp_path / "tokentrail.toml").unlink()
    assert view(name, getattr(load_settings(cwd=tmp_path, env={}), name)) == view(name, getattr(Settings(), name))
    assert load_settings(cwd=tmp_path, env={}).sources[name] == "default"


def test_defaults():
    s = Settings()
    assert s.store == "sqlite:///tokentrail.db" and s.capture_content is False and s.content_max_chars == 500
    assert s.queue_size == 100_000 and s.shutdown_timeout == 5.0


def test_pyproject_tool_section(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.tokentrail]\ncapture_content = true\n')
    settings = load_settings(cwd=tmp_path, env={})
    assert settings.capture_content is True and "[tool.tokentrail]" in settings.sources["capture_content"]


def test_tokentrail_toml_wins_over_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.tokentrail]\nqueue_size = 5\n")
    (tmp_path / "tokentrail.toml").write_text("queue_size = 7\n")
    assert load_settings(cwd=tmp_path, env={}).queue_size == 7


def test_explicit_config_file_and_env_pointer(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "tt.toml").write_text("queue_size = 9\n")
    assert load_settings(config=tmp_path / "conf" / "tt.toml", env={}).queue_size == 9
    assert load_settings(cwd=tmp_path, env={"TOKENTRAIL_CONFIG": "conf/tt.toml"}).queue_size == 9
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config=tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(
    "kwargs, env, pieces",
    [
        ({"queue_size": 0}, {}, ["queue_size", "argument", "0", "whole number >= 1"]),
        ({}, {"TOKENTRAIL_QUEUE_SIZE": "many"}, ["queue_size", "TOKENTRAIL_QUEUE_SIZE", "'many'", "whole number"]),
        ({}, {"TOKENTRAIL_CAPTURE_CONTENT": "perhaps"}, ["capture_content", "TOKENTRAIL_CAPTURE_CONTENT", "true or false"]),
        ({"store": "mongodb://x"}, {}, ["store", "argument", "mongodb://x", "sqlite:///"]),
        ({"exporters": ["kafka"]}, {}, ["exporters", "'kafka'", "jsonl:PATH"]),
        ({"exporters": [object()]}, {}, ["exporters", "export(records)"]),
        ({"shutdown_timeout": float("inf")}, {}, ["shutdown_timeout", "number >= 0"]),
        ({"content_max_chars": 2.5}, {}, ["content_max_chars", "whole number"]),
        ({"enabled": "maybe"}, {}, ["enabled", "argument"]),
    ],
)
def test_bad_values_name_option_source_and_accepted(kwargs, env, pieces, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(kwargs, cwd=tmp_path, env=env)
    for piece in pieces:
        assert piece in str(err.value)


def test_unknown_sdk_name_fails_at_init_naming_option_source_and_accepted(monkeypatch, tmp_path):
    # config.py knows no adapter names (it imports no adapter): init() checks them against the registry.
    monkeypatch.setenv("TOKENTRAIL_INSTRUMENT", "openai,cohere-ish")
    with pytest.raises(ConfigError) as err:
        tokentrail.init(store="none")
    for piece in ["instrument", "TOKENTRAIL_INSTRUMENT", "cohere-ish", "openai, anthropic"]:
        assert piece in str(err.value)


def test_bad_value_in_file_names_the_file(tmp_path):
    (tmp_path / "tokentrail.toml").write_text("content_max_chars = -1\n")
    with pytest.raises(ConfigError, match=r"content_max_chars.*tokentrail.toml"):
        load_settings(cwd=tmp_path, env={})


def test_unknown_key_and_invalid_toml(tmp_path):
    (tmp_path / "tokentrail.toml").write_text("qeue_size = 3\n")
    with pytest.raises(ConfigError, match="unknown option.*qeue_size"):
        load_settings(cwd=tmp_path, env={})
    (tmp_path / "tokentrail.toml").write_text("queue_size = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cwd=tmp_path, env={})


def test_init_raises_config_error_for_a_bad_value(monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_FLUSH_INTERVAL", "-3")
    with pytest.raises(tokentrail.ConfigError, match="flush_interval.*TOKENTRAIL_FLUSH_INTERVAL"):
        tokentrail.init()


def test_store_spellings():
    assert load_settings({"store": "none"}, config={}, env={}).store is None
    assert load_settings({"store": "data/calls.db"}, config={}, env={}).store == "sqlite:///data/calls.db"
    assert load_settings({"store": "sqlite:////abs/calls.db"}, config={}, env={}).store == "sqlite:////abs/calls.db"
