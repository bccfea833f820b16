"""tokentrail: record every LLM call your Python application makes.

    import tokentrail
    tokentrail.init()                      # SQLite store ./tokentrail.db

See the README for the whole public API; everything not listed in `__all__`
is internal.
"""

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing alone costs `import tokentrail` ~5 ms.
TYPE_CHECKING = False

# Public name -> the module that defines it. Modules load on first use of one of their names
# (PEP 562), so `import tokentrail` costs ~1 ms and an application pays for what it uses.
_HOMES = {
    "Budget": "budget",
    "BudgetEvent": "budget",
    "attributes": "context",
    "BudgetExceeded": "errors",
    "ConfigError": "errors",
    "StoreError": "errors",
    "available": "instrument",
    "instrumented": "instrument",
    "uninstrument": "instrument",
    "emit_outcome": "manual",
    "llm_instrumented": "manual",
    "log_llm_call": "manual",
    "set_llm_attributes": "manual",
    "set_token_usage": "manual",
    "track_llm_call": "manual",
    "track_tool_call": "manual",
    "workflow": "manual",
    "LLMCall": "record",
    "Outcome": "record",
    "ToolCall": "record",
    "Operation": "semconv",
    "litellm_callback": "instrument.litellm",
    "open_store": "sinks",
    "Cost": "pricing",
    "cost": "pricing",
    "CallLog": "runtime",
    "flush": "runtime",
    "get_active_sink": "runtime",
    "is_tracking": "runtime",
    "track": "runtime",
    "tracking": "runtime",
    "untrack": "runtime",
    "Tracker": "tracker",
    "init": "tracker",
    "shutdown": "tracker",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .budget import Budget, BudgetEvent
    from .context import attributes
    from .errors import BudgetExceeded, ConfigError, StoreError
    from .instrument import available, instrumented, uninstrument
    from .manual import (emit_outcome, llm_instrumented, log_llm_call, set_llm_attributes, set_token_usage,
                         track_llm_call, track_tool_call, workflow)
    from .record import LLMCall, Outcome, ToolCall
    from .semconv import Operation
    from .sinks import open_store
    from .pricing import Cost, cost
    from .runtime import CallLog, flush, get_active_sink, is_tracking, track, tracking, untrack
    from .tracker import Tracker, init, shutdown
    from . import instrument
    from .instrument.litellm import litellm_callback

__version__ = "0.1.0"

__all__ = [
    "init",
    "flush",
    "shutdown",
    "track",
    "untrack",
    "is_tracking",
    "get_active_sink",
    "tracking",
    "CallLog",
    "Tracker",
    "instrument",
    "uninstrument",
    "instrumented",
    "available",
    "attributes",
    "track_llm_call",
    "track_tool_call",
    "llm_instrumented",
    "log_llm_call",
    "set_llm_attributes",
    "set_token_usage",
    "Operation",
    "litellm_callback",
    "workflow",
    "emit_outcome",
    "open_store",
    "cost",
    "Cost",
    "Budget",
    "BudgetEvent",
    "BudgetExceeded",
    "LLMCall",
    "ToolCall",
    "Outcome",
    "ConfigError",
    "StoreError",
]


def __getattr__(name: str) -> object:
    if name == "instrument":  # the subpackage, callable as instrument(*names)
        return importlib.import_module(f"{__name__}.instrument")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tokentrail' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
