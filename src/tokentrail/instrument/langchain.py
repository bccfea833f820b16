"""LangChain (langchain-core >= 0.3): one callback handler, registered globally, for every run.

No `callbacks=` argument is needed: the handler is the default of a
`ContextVar` given to `langchain_core.tracers.context.register_configure_hook`,
so LangChain adds it to every run's callback manager, in every thread.
`uninstrument()` removes the hook and switches the handler off (runs already in
flight still end their records).

What is recorded:

- Chat models and LLMs (`on_chat_model_start` / `on_llm_start` ... `on_llm_end`
  / `on_llm_error`): provider from LangChain's `ls_provider`, model from
  `ls_model_name` (else the invocation params), request params, token usage
  from the message's `usage_metadata` (else `llm_output["token_usage"]`),
  response id, response model, finish reasons, tool-call count, time to first
  token (`on_llm_new_token`), errors. Each call is recorded **once**: a model
  that calls a provider through an SDK tokentrail patches (`ChatOpenAI` ->
  openai, `ChatAnthropic` -> anthropic, ...) is recorded by that SDK's patch,
  which takes this run's labels (`langchain_run_id`, the enclosing chain's name
  as `langchain_chain`, LangGraph's `langgraph_node`) and its parent chain; a
  model no patch sees (a fake model, a provider reached over LangChain's own
  HTTP code) is recorded here, with `source="langchain"`.
- Token counts: LangChain's `usage_metadata.input_tokens` is already the sum of
  every input token, cache reads and writes included (langchain-anthropic adds
  Anthropic's separate cache counts back in), which is our convention too;
  `input_token_details.cache_read` / `cache_creation` (or Anthropic's
  `ephemeral_5m/1h_input_tokens` split) are our cache read/write counts,
  `output_token_details.reasoning` our reasoning tokens (part of the output).
- A hit in LangChain's LLM cache (`usage_metadata.total_cost == 0`, LangChain's
  own marker) is recorded with `cache_hit=True` and a cost of 0, without tokens:
  no provider was paid.
- Chains, agents, LangGraph graphs and nodes, retrievers: `Span` records
  (`kind` in their metadata: `chain`, `agent`, `node`, `prompt`, `parser`,
  `retriever`), the parents of the calls and tools inside them. An agent is an
  `AgentExecutor` (or a chain that reports an agent action) or the root of a
  `create_agent` graph (named by `lc_agent_name` when given). Runs LangChain
  tags `langsmith:hidden` (LangGraph's internal channel writes) are not
  recorded; what runs inside them hangs from their parent. LangGraph's
  interrupts (`GraphBubbleUp`) end a span without an error: they are control
  flow, not failures.
- Tools (`on_tool_*`): `ToolCall` records with the tool's name, `tool_call_id`,
  arguments and result (content kept only with `capture_content=True`), and
  errors — including a tool error LangChain turned into an error
  `ToolMessage` (`handle_tool_error`).

The handler runs inline (`run_inline = True`), so in async runs it is called in
the run's own context, not a thread-pool copy: the SDK call made inside a
model's run sees that run and defers to it. It never raises into LangChain,
except `BudgetExceeded` from a budget set to `raise` (`raise_error = True`
lets that one stop the model call before the provider is called).
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from typing import Any

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingTool
from ..runtime import route_if_recording
from ..shapes import pick
from .callback_point import Runs
from .patch import Hook

__all__ = ["NAME", "DISTRIBUTION", "MIN_VERSION", "PATCHES", "Tracer", "usage_of", "kind_of", "install"]

NAME = "langchain"
DISTRIBUTION = "langchain-core"
MIN_VERSION = (0, 3)

# Invocation params that describe the request (the rest name the model class, or are keys).
_PARAMS = ("temperature", "max_tokens", "max_completion_tokens", "max_output_tokens", "top_p", "top_k", "stop",
           "n", "seed", "frequency_penalty", "presence_penalty", "reasoning_effort", "service_tier", "stream")
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
          "chat": "user", "developer": "developer"}
# Exceptions LangGraph raises to pause or redirect a graph: control flow, not failures.
_CONTROL_FLOW = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"})
_AGENT_MARK = "langchain_create_agent"
_ABSENT = object()


# -- pure readers ---------------------------------------------------------------------------------------



def _int(value: Any) -> int:
    return value if type(value) is int else 0


def usage_of(message: Any, llm_output: Any) -> Any:
    """The token usage of a result, in a spelling `normalize_usage` reads; None when it has none.

    `usage_metadata` (every chat model of langchain-core >= 0.2) counts input tokens with the cache
    included, as we do; older or plain LLMs leave the provider's own usage in `llm_output`."""
    meta = pick(message, "usage_metadata")
    if isinstance(meta, dict) and meta:
        details_in = meta.get("input_token_details") or {}
        details_out = meta.get("output_token_details") or {}
        write = details_in.get("cache_creation")
        split = _int(details_in.get("ephemeral_5m_input_tokens")) + _int(details_in.get("ephemeral_1h_input_tokens"))
        if not write and split:
            write = split  # langchain-anthropic moves the writes to the TTL split and zeroes cache_creation
        return {"input_tokens": meta.get("input_tokens"), "output_tokens": meta.get("output_tokens"),
                "cache_read_tokens": details_in.get("cache_read"), "cache_write_tokens": write,
                "reasoning_tokens": details_out.get("reasoning")}
    if isinstance(llm_output, dict):
        return llm_output.get("token_usage") or llm_output.get("usage")
    return None


def _cache_hit(message: Any) -> bool:
    meta = pick(message, "usage_metadata")
    return isinstance(meta, dict) and "total_cost" in meta and meta["total_cost"] == 0


def _response_id(message: Any, llm_output: Any) -> str | None:
    """The provider's id of the response: only a non-empty string is one (it matches the SDK's record by it)."""
    for found in (pick(message, "response_metadata", "id"), pick(llm_output, "id")):
        if isinstance(found, str) and found:
            return found
    own = pick(message, "id")  # the provider's id on most chat models; LangChain's own ids start lc_run- / run-
    if isinstance(own, str) and own and not own.startswith(("lc_", "run-")):
        return own
    return None


def _finish_reasons(generation: Any, message: Any) -> list[str] | None:
    info = pick(generation, "generation_info") or {}
    meta = pick(message, "response_metadata") or {}
    reason = pick(info, "finish_reason") or pick(meta, "finish_reason") or pick(meta, "stop_reason")
    return [str(reason)] if reason else None


def result_fields(response: Any) -> dict[str, Any]:
    """What `on_llm_end`'s `LLMResult` says about the call: usage, ids, model, text."""
    first = pick(response, "generations", 0, 0)
    message = pick(first, "message")
    llm_output = pick(response, "llm_output")
    meta = pick(message, "response_metadata") or {}
    tool_calls = pick(message, "tool_calls")
    fields: dict[str, Any] = {
        "response_id": _response_id(message, llm_output),
        "response_model": pick(meta, "model_name") or pick(meta, "model") or pick(llm_output, "model_name"),
        "finish_reasons": _finish_reasons(first, message),
        "tool_call_count": len(tool_calls) if isinstance(tool_calls, list) and tool_calls else None,
        "output": pick(first, "text"),
    }
    if _cache_hit(message):
        fields.update(cache_hit=True, cost_usd=0.0, input_cost_usd=0.0, output_cost_usd=0.0)
    else:
        fields["usage"] = usage_of(message, llm_output)
    return fields


def messages_of(messages: Any) -> list[dict[str, Any]]:
    """LangChain messages as role/content dicts (what capture_content keeps, and the message count)."""
    out = []
    for message in messages or ():
        item = {"role": _ROLES.get(pick(message, "type"), pick(message, "type")), "content": pick(message, "content")}
        calls = pick(message, "tool_calls")
        if calls:
            item["tool_calls"] = calls
        out.append(item)
    return out


def request_params(invocation: Any, metadata: dict[str, Any]) -> dict[str, Any] | None:
    params = {k: invocation[k] for k in _PARAMS if isinstance(invocation, dict) and invocation.get(k) is not None}
    for key in ("temperature", "max_tokens"):
        value = metadata.get(f"ls_{key}")
        if value is not None:
            params.setdefault(key, value)
    return params or None


def model_of(metadata: dict[str, Any], invocation: Any) -> Any:
    if metadata.get("ls_model_name"):
        return metadata["ls_model_name"]
    for key in ("model", "model_name", "model_id", "deployment_name"):
        value = pick(invocation, key) if isinstance(invocation, dict) else None
        if value:
            return value
    return None


def name_of(serialized: Any, kwargs: dict[str, Any], default: str) -> str:
    name = kwargs.get("name") or pick(serialized, "name")
    if not name:
        ids = pick(serialized, "id")
        name = ids[-1] if isinstance(ids, list) and ids else default
    return str(name)


def kind_of(name: str, metadata: dict[str, Any], parent_marked: bool, run_type: Any = None) -> str:
    """What a chain run is: `agent`, `node` (a LangGraph node), `prompt`, `parser` or `chain`."""
    if metadata.get("ls_integration") == _AGENT_MARK and not parent_marked:
        return "agent"  # the root of a create_agent graph (its nodes inherit the mark)
    if name == "AgentExecutor":
        return "agent"
    if metadata.get("langgraph_node") == name:
        return "node"
    if run_type in ("prompt", "parser"):
        return str(run_type)
    return "chain"


def _control_flow(error: Any) -> bool:
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


def _tool_result(output: Any) -> tuple[Any, Any]:
    """(result, error) of a tool: a `ToolMessage` with status "error" is a handled tool failure."""
    content = pick(output, "content") if pick(output, "type") == "tool" else None
    if content is None:
        return output, None
    if pick(output, "status") == "error":
        return content, str(content)
    return content, None


def step_out(ended: Any) -> None:
    """Stop holding an ended span as this context's current span (with its error, traceback and the frames in
    it): its nearest open ancestor takes its place. Set, never reset: callbacks may end in another context."""
    if ended is not None and current_span.get() is ended:
        outer = getattr(ended, "outer", None)
        while outer is not None and outer.end_ns is not None:
            outer = getattr(outer, "outer", None)
        current_span.set(outer)


# -- the handler ----------------------------------------------------------------------------------------


def _never_raises(method: Any) -> Any:
    """A callback that never raises into LangChain (the handler has `raise_error = True`, so that a budget's
    `BudgetExceeded` can stop a model call): anything else is logged once and swallowed."""
    what = method.__name__

    @functools.wraps(method)
    def safe(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except BudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error_once(f"callback.langchain.{what}", f"tokentrail: could not read LangChain's {what} callback", exc)

    return safe


class Tracer:
    """LangChain callbacks -> tokentrail runs. Mixed into `BaseCallbackHandler` at install time."""

    raise_error = True  # only BudgetExceeded ever leaves a method (_never_raises): let it stop the model call
    run_inline = True  # async runs: call us in the run's context, not a thread-pool copy

    def __init__(self) -> None:
        self.enabled = True
        self.runs = Runs("langchain")
        self.spans: dict[Any, Any] = {}  # run id -> our span (FrameworkSpan): parents for tools, names for labels
        self.tools: dict[Any, Any] = {}  # run id -> PendingTool
        self.calls: dict[Any, Any] = {}  # run id -> FrameworkCall (to step out of it when it ends)
        self.hidden: dict[Any, Any] = {}  # run id of a run not recorded -> its parent's run id
        self.marked: set[Any] = set()  # runs inside a create_agent graph

    def recording(self) -> bool:
        return self.enabled and route_if_recording()[0]

    # -- parents --

    def parent(self, parent_run_id: Any) -> Any:
        """The nearest recorded ancestor's run id; a tool parent becomes this context's current span."""
        for _ in range(64):
            if parent_run_id not in self.hidden:
                break
            parent_run_id = self.hidden[parent_run_id]
        tool = self.tools.get(parent_run_id) if parent_run_id is not None else None
        if tool is not None:
            current_span.set(tool)  # Runs does not know tools: it falls back to the current span
        return parent_run_id

    def labels(self, run_id: Any, parent: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        labels = {"langchain_run_id": str(run_id)}
        span = self.spans.get(parent) if parent is not None else None
        if span is not None:
            labels["langchain_chain"] = span.name
        if metadata.get("langgraph_node"):
            labels["langgraph_node"] = metadata["langgraph_node"]
        if metadata.get("lc_agent_name"):
            labels["langchain_agent"] = metadata["lc_agent_name"]
        return labels

    # -- chains, agents, graphs, retrievers --

    @_never_raises
    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                       tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if not self.recording():
            return  # nothing records here: read nothing
        metadata = metadata or {}
        if tags and "langsmith:hidden" in tags:
            self.hidden[run_id] = parent_run_id
            return
        name = name_of(serialized, kwargs, "chain")
        parent_marked = parent_run_id in self.marked
        if metadata.get("ls_integration") == _AGENT_MARK:
            self.marked.add(run_id)
        kind = kind_of(name, metadata, parent_marked, kwargs.get("run_type"))
        if kind == "agent" and metadata.get("lc_agent_name"):
            name = str(metadata["lc_agent_name"])
        self.start_span(run_id, name, kind, parent_run_id)

    def start_span(self, run_id: Any, name: str, kind: str, parent_run_id: Any) -> Any:
        span = self.runs.start_span(run_id, name, kind=kind, parent=self.parent(parent_run_id))
        if span is not None:
            self.spans[run_id] = span
        return span

    def end_span(self, run_id: Any, error: Any = None) -> None:
        if self.hidden.pop(run_id, _ABSENT) is not _ABSENT:
            return
        self.marked.discard(run_id)
        span = self.spans.pop(run_id, None)
        if error is not None and _control_flow(error):
            error = None
        self.runs.end_span(run_id, error=error)
        step_out(span)

    @_never_raises
    def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.end_span(run_id)

    @_never_raises
    def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self.end_span(run_id, error)

    @_never_raises
    def on_agent_action(self, action: Any, *, run_id: Any, **kwargs: Any) -> None:
        """Only agents report actions: the run is an agent, whatever it was named."""
        span = self.spans.get(run_id)
        if span is not None and span.operation != "invoke_agent":
            span.operation = "invoke_agent"
            span.fields["metadata"] = {**(span.fields.get("metadata") or {}), "kind": "agent"}

    @_never_raises
    def on_retriever_start(self, serialized: Any, query: Any, *, run_id: Any, parent_run_id: Any = None,
                           tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if not self.recording():
            return
        span = self.start_span(run_id, name_of(serialized, kwargs, "retriever"), "retriever", parent_run_id)
        if span is not None:
            span.operation = "retrieval"

    @_never_raises
    def on_retriever_end(self, documents: Any, *, run_id: Any, **kwargs: Any) -> None:
        span = self.spans.get(run_id)
        if span is not None and isinstance(documents, list):
            span.fields["metadata"] = {**(span.fields.get("metadata") or {}), "documents": len(documents)}
        self.end_span(run_id)

    @_never_raises
    def on_retriever_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self.end_span(run_id, error)

    # -- models --

    def start_call(self, run_id: Any, parent_run_id: Any, metadata: Any, kwargs: dict[str, Any], operation: str) -> Any:
        metadata = metadata or {}
        invocation = kwargs.get("invocation_params") or {}
        parent = self.parent(parent_run_id)
        call = self.runs.start_call(  # raises BudgetExceeded when a budget set to `raise` refuses the call
            run_id, provider=metadata.get("ls_provider"), model=model_of(metadata, invocation), operation=operation,
            parent=parent, labels=self.labels(run_id, parent, metadata),
            request_params=request_params(invocation, metadata))
        if call is not None:
            self.calls[run_id] = call
        return call

    @_never_raises
    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, parent_run_id: Any = None,
                            tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if not self.recording():
            return
        call = self.start_call(run_id, parent_run_id, metadata, kwargs, "chat")
        if call is not None and messages:
            call.content_in = messages_of(messages[0])

    @_never_raises
    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, parent_run_id: Any = None,
                     tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if not self.recording():
            return
        call = self.start_call(run_id, parent_run_id, metadata, kwargs, "text_completion")
        if call is not None and prompts:
            call.content_in = prompts[0] if len(prompts) == 1 else list(prompts)

    @_never_raises
    def on_llm_new_token(self, token: Any, *, run_id: Any, **kwargs: Any) -> None:
        if run_id in self.calls:
            self.runs.first_chunk(run_id)

    @_never_raises
    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        if run_id not in self.calls:
            return  # not opened (not recording when it started)
        try:
            fields = result_fields(response)
        except Exception as exc:  # noqa: BLE001 - end the call with what we have
            log.error_once("callback.langchain.result", "tokentrail: could not read a LangChain result", exc)
            fields = {}
        self.runs.end_call(run_id, **fields)
        step_out(self.calls.pop(run_id, None))

    @_never_raises
    def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self.runs.end_call(run_id, error=error)
        step_out(self.calls.pop(run_id, None))

    # -- tools --

    @_never_raises
    def on_tool_start(self, serialized: Any, input_str: Any, *, run_id: Any, parent_run_id: Any = None,
                      tags: Any = None, metadata: Any = None, inputs: Any = None, **kwargs: Any) -> None:
        if not self.recording():
            return
        parent = self.parent(parent_run_id)
        span = self.spans.get(parent) if parent is not None else None
        if span is not None:
            current_span.set(span)  # the tool's parent: the chain/agent that ran it
        tool = PendingTool(name_of(serialized, kwargs, "tool"), route_if_recording()[1])
        tool.fields["source"] = "langchain"
        if kwargs.get("tool_call_id"):
            tool.fields["tool_call_id"] = kwargs["tool_call_id"]
        tool.arguments = inputs if inputs is not None else input_str
        self.tools[run_id] = tool
        current_span.set(tool)  # calls made inside the tool hang from it

    @_never_raises
    def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
        tool = self.tools.pop(run_id, None)
        if tool is not None:
            tool.result, error = _tool_result(output)
            tool.finish(error)
            step_out(tool)

    @_never_raises
    def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        tool = self.tools.pop(run_id, None)
        if tool is not None:
            tool.finish(error)
            step_out(tool)


def install(adapter: Any) -> Any:
    """Register one handler for every LangChain run; returns how to take it away again."""
    from langchain_core.callbacks.base import BaseCallbackHandler
    from langchain_core.tracers import context as tracer_context

    handler_class = type("TokentrailCallbackHandler", (Tracer, BaseCallbackHandler), {})
    handler = handler_class()
    var: ContextVar[Any] = ContextVar("tokentrail_langchain_handler", default=handler)
    tracer_context.register_configure_hook(var, True)
    hooks = getattr(tracer_context, "_configure_hooks", None)

    def undo() -> None:
        handler.enabled = False  # callback managers already built keep the handler: it now records nothing new
        if isinstance(hooks, list):
            hooks[:] = [entry for entry in hooks if not (entry and entry[0] is var)]
        else:
            var.set(None)

    return undo


PATCHES = (Hook("langchain_core.callbacks.base", install),)
