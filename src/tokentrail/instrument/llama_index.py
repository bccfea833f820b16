"""LlamaIndex (llama-index-core >= 0.10.20): an event handler and a span handler on the root dispatcher.

`llama_index.core.instrumentation.get_dispatcher()` (the root) receives the
events and spans of every LlamaIndex module; tokentrail adds one handler of
each kind there, and `uninstrument()` removes them.

What is recorded:

- LLM chat and completion calls (`LLMChatStartEvent` / `LLMCompletionStartEvent`
  ... `End`), sync, async and streamed (`...InProgressEvent`: time to first
  token), and embeddings (`EmbeddingStartEvent` / `End`). Provider from the
  LLM's class name (`OpenAI`, `Anthropic`, `BedrockConverse`, ...), model from
  its metadata (`model_name`). LlamaIndex keeps no token usage of its own: it
  is read from `response.raw` (the provider's response, e.g. the openai SDK's
  object with `.usage`, or a dict with `usage`), else from the token counts
  some integrations put in `response.additional_kwargs`.
- Each call once, innermost only. LlamaIndex nests its own LLM methods
  (`CustomLLM.chat` calls `complete`, `achat` calls `chat`, `predict` calls
  `complete`) and each level reports Start/End with the same usage: every
  level opens a call that *defers* (callback_point), so only the innermost is
  recorded — and if the provider is reached through an SDK tokentrail patches
  (openai, anthropic, ...), that SDK's record stands for it, taking the
  LlamaIndex labels (`llama_index_span`) and parent.
- Errors: LlamaIndex sends no End event for a failed call, only a dropped span
  (the exception) — or, for a stream failing mid-way, an `ExceptionEvent`. A
  stream the application stops reading is recorded with
  `metadata.stream_incomplete`.
- Query engines, retrievers (`operation="retrieval"`), synthesizers, chat
  engines, agents (`invoke_agent`), workflows and their steps: `Span` records
  (`kind` in their metadata) named `Class.method`, the parents of the calls
  inside them. Private methods (`_query`) and a module's re-entry into itself
  are folded into the span above them, and text splitters and prompt
  templates are not recorded: a trace shows the steps a user wrote, not
  LlamaIndex's plumbing.
- Tools (`BaseTool.call` / `acall`): `ToolCall` records (name from the tool's
  metadata, arguments and result kept only with `capture_content=True`;
  a `ToolOutput` with `is_error` is a failed tool call).

Limits: LlamaIndex swallows every exception a handler raises, so a budget set
to `raise` cannot stop a call from here (the SDK patch underneath, when there is
one, still does). A stream that is never iterated sends no event at all and is
not recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import log
from ..context import current_span
from ..errors import BudgetExceeded
from ..pending import PendingTool
from ..runtime import route_if_recording
from ..shapes import pick
from ..semconv import normalize_provider, provider_from_url, providers
from .callback_point import Runs
from .patch import Hook

__all__ = ["NAME", "DISTRIBUTION", "MIN_VERSION", "PATCHES", "Tracer", "usage_of", "kind_of", "install"]

NAME = "llama_index"
DISTRIBUTION = "llama-index-core"
MIN_VERSION = (0, 10, 20)

# Kinds of module, by a class name in the instance's MRO; the first match wins (agents are workflows too).
_KINDS = (
    ("BaseLLM", "llm"), ("BaseEmbedding", "embedding"), ("BaseTool", "tool"),
    ("BaseWorkflowAgent", "agent"), ("AgentWorkflow", "agent"), ("BaseAgent", "agent"), ("AgentRunner", "agent"),
    ("BaseAgentRunner", "agent"), ("BaseAgentWorker", "agent"), ("Workflow", "workflow"),
    ("BaseRetriever", "retriever"), ("BaseQueryEngine", "query_engine"), ("BaseChatEngine", "chat_engine"),
    ("BaseSynthesizer", "synthesizer"), ("BaseNodePostprocessor", "postprocessor"),
    ("NodeParser", "plumbing"), ("TextSplitter", "plumbing"), ("BasePromptTemplate", "plumbing"),
)
_NOT_SPANS = frozenset({"llm", "embedding", "tool", "plumbing"})
_OPERATIONS = {"agent": "invoke_agent", "retriever": "retrieval"}
# LLM class names (lower case, no `_`, no `llm` suffix) that are not a provider's name or alias.
_PROVIDERS = {"bedrockconverse": "aws.bedrock", "googlegenai": "gcp.gen_ai", "huggingfaceinferenceapi": "huggingface",
              "azureaiinference": "azure.ai.inference"}
# Providers outside the OpenTelemetry list that tokentrail names (semconv's own table).
_OTHER_PROVIDERS = frozenset({"ollama", "together", "fireworks", "huggingface", "openrouter", "cerebras", "voyage"})
_PARAMS = ("temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "n", "frequency_penalty", "presence_penalty")
_ABSENT = object()


# -- pure readers ---------------------------------------------------------------------------------------



_kind_cache: dict[type, str] = {}


def kind_of(instance: Any) -> str:
    """What a dispatcher span's instance is (`_KINDS`); `step` for a function (a workflow step), else `module`."""
    if instance is None:
        return "step"
    cls = type(instance)
    kind = _kind_cache.get(cls)
    if kind is None:
        names = {c.__name__ for c in cls.__mro__}
        kind = next((k for name, k in _KINDS if name in names), "module")
        _kind_cache[cls] = kind
    return kind


def span_name(span_id: str) -> str:
    """`RetrieverQueryEngine.query` from the dispatcher's `RetrieverQueryEngine.query-<uuid4>` (a function's
    qualified name, for a workflow step, without the `<locals>` of the function it was defined in)."""
    return span_id.split("-", 1)[0].rsplit("<locals>.", 1)[-1]


def provider_of(model_dict: Any) -> Any:
    """The provider an LLM's `class_name()` names (`openai_llm`, `Anthropic_LLM`, `OpenAIEmbedding`,
    `Bedrock_Converse_LLM`, ...); None for a class that names none (a custom LLM: then the model decides)."""
    name = str(pick(model_dict, "class_name") or "").lower().replace("_", "")
    for suffix in ("llm", "embedding", "embeddings"):
        name = name.removesuffix(suffix)
    base = pick(model_dict, "api_base") or pick(model_dict, "base_url")
    if name == "openailike" and isinstance(base, str):
        return provider_from_url(base)
    provider = _PROVIDERS.get(name) or normalize_provider(name) if name else None
    return provider if provider in providers() or provider in _OTHER_PROVIDERS else None


def model_of(model_dict: Any) -> Any:
    model = pick(model_dict, "model_name") or pick(model_dict, "model")
    return None if model in (None, "", "unknown") else model


def usage_of(response: Any) -> Any:
    """Token usage of a ChatResponse/CompletionResponse: the provider's, from `raw` (object or dict), else the
    counts an integration copied into `additional_kwargs`; None when neither has any."""
    raw = pick(response, "raw")
    for candidate in (pick(raw, "usage"), pick(raw, "usage_metadata"), raw, pick(response, "additional_kwargs")):
        if candidate is not None and any(pick(candidate, key) is not None for key in (
                "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "prompt_token_count",
                "promptTokenCount")):
            return candidate
    return None


def result_fields(response: Any) -> dict[str, Any]:
    raw = pick(response, "raw")
    message = pick(response, "message")
    text = pick(message, "content") if message is not None else pick(response, "text")
    response_id = pick(raw, "id")  # only a non-empty string is the provider's id (an SDK record is matched by it)
    return {"usage": usage_of(response), "response_id": response_id if isinstance(response_id, str) and response_id else None,
            "response_model": pick(raw, "model"),
            "output": text if isinstance(text, str) else None}


def messages_of(messages: Any) -> list[dict[str, Any]]:
    out = []
    for message in messages or ():
        role = pick(message, "role")
        out.append({"role": pick(role, "value") or role, "content": pick(message, "content")})
    return out


def request_params(kwargs: Any) -> dict[str, Any] | None:
    if not isinstance(kwargs, dict):
        return None
    return {k: kwargs[k] for k in _PARAMS if kwargs.get(k) is not None} or None


def step_out(ended: Any) -> None:
    """Stop holding an ended span as this context's current span (with its error, traceback and the frames in
    it: an SDK stream dropped inside would stay alive, unrecorded): its nearest open ancestor takes its place."""
    if current_span.get() is ended:
        outer = getattr(ended, "outer", None)
        while outer is not None and outer.end_ns is not None:
            outer = getattr(outer, "outer", None)
        current_span.set(outer)


def _tool_name(instance: Any, span_id: str) -> str:
    name = pick(pick(instance, "metadata"), "name")
    return str(name) if name else span_name(span_id)


def _arguments(bound_args: Any) -> Any:
    arguments = pick(bound_args, "arguments")
    if not isinstance(arguments, dict):
        return None
    kwargs = arguments.get("kwargs")
    args = arguments.get("args")
    if isinstance(kwargs, dict) and not args:
        return kwargs
    return {k: v for k, v in arguments.items() if k != "self"}


# -- the handlers ----------------------------------------------------------------------------------------


class Tracer:
    """LlamaIndex spans and events -> tokentrail runs, keyed by the dispatcher's span ids."""

    def __init__(self) -> None:
        self.enabled = True
        self.runs = Runs("llama_index")
        self.up: dict[str, Any] = {}  # span not recorded -> its parent span id
        self.spans: dict[str, Any] = {}  # recorded span id -> (span, id of its instance: re-entry into itself is folded)
        self.calls: dict[str, Any] = {}  # span id of an LLM/embedding call open in self.runs -> (label, call)
        self.tools: dict[str, Any] = {}  # span id -> PendingTool

    def _guard(self, what: str, exc: Exception) -> None:
        log.error_once(f"callback.llama_index.{what}", f"tokentrail: could not read LlamaIndex's {what}", exc)

    def parent(self, parent_id: Any) -> Any:
        """The nearest ancestor we opened (span, call or tool); a tool becomes the current span (Runs knows no tools)."""
        for _ in range(256):
            if parent_id is None or parent_id in self.spans or parent_id in self.calls or parent_id in self.tools:
                break
            found = self.up.get(parent_id, _ABSENT)
            if found is _ABSENT:
                break
            parent_id = found
        tool = self.tools.get(parent_id) if parent_id is not None else None
        if tool is not None:
            current_span.set(tool)
        return parent_id

    # -- spans --

    def span_enter(self, span_id: str, instance: Any, parent_id: Any, bound_args: Any) -> None:
        if not self.enabled or not route_if_recording()[0]:
            return  # nothing records here: read nothing
        try:
            kind = kind_of(instance)
            method = span_name(span_id).rsplit(".", 1)[-1]
            if kind == "tool" and method in ("call", "acall"):
                self.start_tool(span_id, instance, parent_id, bound_args)
                return
            parent = self.parent(parent_id)
            if (kind in _NOT_SPANS or method.startswith("_")
                    or (instance is not None and self.spans.get(parent, (None, None))[1] == id(instance))):
                self.up[span_id] = parent_id
                return
            span = self.runs.start_span(span_id, span_name(span_id), kind=kind, parent=parent)
            if span is None:
                self.up[span_id] = parent_id
                return
            if kind in _OPERATIONS:
                span.operation = _OPERATIONS[kind]
            self.spans[span_id] = (span, id(instance) if instance is not None else None)
        except Exception as exc:  # noqa: BLE001
            self._guard("span_enter", exc)

    def span_end(self, span_id: str, result: Any = None, error: Any = None) -> None:
        try:
            self.close_span(span_id, result, error)
        except Exception as exc:  # noqa: BLE001
            self._guard("span_end", exc)

    def close_span(self, span_id: str, result: Any, error: Any) -> None:
        if self.up.pop(span_id, _ABSENT) is not _ABSENT:
            if error is not None and span_id in self.calls:  # a failed call: no End event, only the drop
                self.end_call(span_id, error=error)
            return
        tool = self.tools.pop(span_id, None)
        if tool is not None:
            self.end_tool(tool, result, error)
            return
        opened = self.spans.pop(span_id, None)
        if opened is not None:
            self.runs.end_span(span_id, error=error)
            step_out(opened[0])

    def start_tool(self, span_id: str, instance: Any, parent_id: Any, bound_args: Any) -> None:
        route = route_if_recording()[1]
        opened = self.spans.get(self.parent(parent_id))
        if opened is not None:
            current_span.set(opened[0])  # the tool's parent: the span that ran it
        tool = PendingTool(_tool_name(instance, span_id), route)
        tool.fields["source"] = "llama_index"
        tool.arguments = _arguments(bound_args)
        self.tools[span_id] = tool
        current_span.set(tool)

    def end_tool(self, tool: Any, result: Any, error: Any) -> None:
        try:
            if error is None and pick(result, "is_error"):
                error = str(pick(result, "content") or "tool error")
            content = pick(result, "content")
            tool.result = content if content is not None else result
            tool.finish(error)
            step_out(tool)
        except Exception as exc:  # noqa: BLE001
            self._guard("tool_end", exc)

    # -- events --

    def on_event(self, event: Any) -> None:
        name = type(event).__name__
        handler = _EVENTS.get(name)
        if handler is None:
            return
        try:
            handler(self, event)
        except BudgetExceeded:
            # LlamaIndex swallows what a handler raises: the refusal is recorded, but the call goes on.
            log.warn_once("llama_index.budget", "tokentrail: a budget refused a LlamaIndex call, but LlamaIndex "
                                                "cannot be stopped from its instrumentation; only an SDK patch underneath can")
        except Exception as exc:  # noqa: BLE001
            self._guard(name, exc)

    def start_call(self, event: Any, operation: str, content: Any = None) -> None:
        if not self.enabled or not route_if_recording()[0]:
            return
        span_id = event.span_id
        model_dict = pick(event, "model_dict")
        parent = self.parent(self.up.get(span_id))
        # Nested in another call of the same LLM (chat -> complete): keep the name of the method the app called.
        label = self.calls[parent][0] if parent in self.calls else span_name(span_id or "")
        call = self.runs.start_call(
            span_id, provider=provider_of(model_dict), model=model_of(model_dict), operation=operation,
            parent=parent, labels={"llama_index_span": label},
            request_params=request_params(pick(event, "additional_kwargs")))
        if call is not None:
            self.calls[span_id] = (label, call)
            if content is not None:
                call.content_in = content

    def end_call(self, span_id: Any, **fields: Any) -> None:
        opened = self.calls.pop(span_id, None)
        self.runs.end_call(span_id, **fields)
        if opened is not None:
            step_out(opened[1])

    def on_chat_start(self, event: Any) -> None:
        self.start_call(event, "chat", messages_of(pick(event, "messages")))

    def on_completion_start(self, event: Any) -> None:
        self.start_call(event, "text_completion", pick(event, "prompt"))

    def on_embedding_start(self, event: Any) -> None:
        self.start_call(event, "embeddings")

    def on_progress(self, event: Any) -> None:
        if event.span_id in self.calls:
            self.runs.first_chunk(event.span_id)

    def on_end(self, event: Any) -> None:
        if event.span_id in self.calls:
            self.end_call(event.span_id, **result_fields(pick(event, "response")))

    def on_embedding_end(self, event: Any) -> None:
        chunks = pick(event, "chunks")
        self.end_call(event.span_id, inputs=len(chunks) if isinstance(chunks, list) else None)

    def on_exception(self, event: Any) -> None:
        span_id = event.span_id
        if span_id not in self.calls:
            return
        error = pick(event, "exception")
        if isinstance(error, GeneratorExit):  # the application stopped reading the stream: not a failure
            self.end_call(span_id, metadata={"stream_incomplete": True})
        else:
            self.end_call(span_id, error=error)


_EVENTS = {
    "LLMChatStartEvent": Tracer.on_chat_start, "LLMCompletionStartEvent": Tracer.on_completion_start,
    "LLMChatInProgressEvent": Tracer.on_progress, "LLMCompletionInProgressEvent": Tracer.on_progress,
    "LLMChatEndEvent": Tracer.on_end, "LLMCompletionEndEvent": Tracer.on_end,
    "EmbeddingStartEvent": Tracer.on_embedding_start, "EmbeddingEndEvent": Tracer.on_embedding_end,
    "ExceptionEvent": Tracer.on_exception,
}


def install(adapter: Any) -> Any:
    """Add an event handler and a span handler to LlamaIndex's root dispatcher; returns how to remove them."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

    tracer = Tracer()

    class TokentrailEventHandler(BaseEventHandler):
        tracer: ClassVar[Any] = None

        def handle(self, event: Any, **kwargs: Any) -> None:
            tracer.on_event(event)

    class TokentrailSpanHandler(BaseSpanHandler):
        def new_span(self, id_: str, bound_args: Any, instance: Any = None, parent_span_id: Any = None,
                     tags: Any = None, **kwargs: Any) -> None:
            tracer.span_enter(id_, instance, parent_span_id, bound_args)
            return None  # nothing kept in LlamaIndex's own open_spans

        def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any = None, result: Any = None,
                                 **kwargs: Any) -> None:
            tracer.span_end(id_, result=result)

        def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any = None, err: Any = None,
                                 **kwargs: Any) -> None:
            tracer.span_end(id_, error=err)

    TokentrailEventHandler.tracer = tracer  # the live state, for tests and debugging
    events, spans = TokentrailEventHandler(), TokentrailSpanHandler()
    root = get_dispatcher()
    root.add_event_handler(events)
    root.add_span_handler(spans)

    def undo() -> None:
        tracer.enabled = False
        root.event_handlers = [h for h in root.event_handlers if h is not events]
        root.span_handlers = [h for h in root.span_handlers if h is not spans]

    return undo


PATCHES = (Hook("llama_index.core.instrumentation", install),)
