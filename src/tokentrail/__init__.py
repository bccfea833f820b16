"""tokentrail: record every LLM call your Python application makes.

    import tokentrail
    tokentrail.init()                      # SQLite store ./tokentrail.db

See the README for the whole public API; everything not listed in `__all__`
is internal.
"""

from .budget import Budget, BudgetEvent
from .context import attributes
from .errors import BudgetExceeded, ConfigError, StoreError
from . import instrument  # the package, callable as instrument(*names)
from .instrument import available, instrumented, uninstrument
from .manual import emit_outcome, llm_instrumented, log_llm_call, track_llm_call, track_tool_call, workflow
from .record import LLMCall, Outcome, ToolCall
from .sinks import open_store
from .pricing import Cost, cost
from .runtime import CallLog, flush, get_active_sink, is_tracking, track, tracking, untrack
from .tracker import Tracker, init, shutdown

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
