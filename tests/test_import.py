import subprocess
import sys

import tokentrail


def test_public_names_match_the_design():
    expected = {"init", "flush", "shutdown", "track", "untrack", "is_tracking", "get_active_sink", "tracking",
                "attributes", "track_llm_call", "track_tool_call", "llm_instrumented", "log_llm_call", "workflow",
                "emit_outcome", "open_store", "LLMCall", "ToolCall", "Outcome"}
    assert expected <= set(tokentrail.__all__)
    assert all(hasattr(tokentrail, name) for name in tokentrail.__all__)


def test_import_is_light():
    code = "import sys, tokentrail; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    for heavy in ("sqlite3", "opentelemetry", "json", "tomllib", "wrapt", "openai"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in loaded), heavy


def test_using_the_manual_api_loads_nothing_heavy():
    """Names load their modules on first use; even then no asyncio, importlib.metadata, price database or SQLite."""
    code = ("import sys, tokentrail; print(len([m for m in sys.modules if m.startswith('tokentrail')])); "
            "tokentrail.track_llm_call, tokentrail.attributes, tokentrail.tracking; "
            "print(' '.join(sorted(sys.modules)))")
    first, modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n", 1)
    assert first == "1"  # `import tokentrail` alone loads the package and nothing of it
    loaded = set(modules.split())
    for heavy in ("asyncio", "importlib.metadata", "genai_prices", "sqlite3", "wrapt", "pathlib"):
        assert heavy not in loaded, heavy
