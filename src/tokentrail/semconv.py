"""Operation and provider names, shared with the OpenTelemetry GenAI conventions.

The strings come from `opentelemetry-semantic-conventions` where it has them
(`gen_ai.operation.name`, `gen_ai.provider.name` values); the few operations the
convention lacks are ours. The tables are built on first use, on the pipeline's
worker thread, so `import tokentrail` does not pay for importing the convention.

`normalize_provider` folds what users type (`Azure_OpenAI`, `bedrock`, `vertex`,
`gemini`, `mistralai`, `togetherai`, `claude`, …) to one name; names we do not
know are kept, lower-cased. `infer_provider` guesses the provider from a model
name when the caller gave none; a model we cannot place is recorded under
`unknown` rather than guessed.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "UNKNOWN",
    "OUR_OPERATIONS",
    "operations",
    "providers",
    "normalize_operation",
    "normalize_provider",
    "infer_provider",
    "server_from_url",
    "prepare",
    "Operation",
]

UNKNOWN = "unknown"

# Operations the GenAI convention has no value for.
OUR_OPERATIONS = ("image_generation", "moderation", "speech_to_text", "text_to_speech", "rerank", "count_tokens")


@functools.lru_cache(maxsize=None)
def _convention():
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes

    return gen_ai_attributes.GenAiOperationNameValues, gen_ai_attributes.GenAiProviderNameValues


class _ConventionValues(type):
    """Fills a class's declared names on first read: the convention's values, loaded only then."""

    def __getattr__(cls, name: str) -> str:
        if name in cls.__annotations__:
            ops, _ = _convention()
            value = getattr(ops, name).value if hasattr(ops, name) else name.lower()
            if value in operations():
                setattr(cls, name, value)
                return value
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class Operation(metaclass=_ConventionValues):
    """Operation names for `operation=` (`track_llm_call`, `set_llm_attributes`, …): the OpenTelemetry
    GenAI convention's `gen_ai.operation.name` values, read from `opentelemetry-semantic-conventions`
    (on first use, so importing tokentrail stays light); ours where the convention has none
    (`RERANK`, `IMAGE_GENERATION`, `SPEECH_TO_TEXT`, `TEXT_TO_SPEECH`, `MODERATION`, `COUNT_TOKENS`:
    the names in `OUR_OPERATIONS`). Plain strings: `Operation.CHAT == "chat"`."""

    CHAT: str
    TEXT_COMPLETION: str
    GENERATE_CONTENT: str
    EMBEDDINGS: str
    RETRIEVAL: str
    EXECUTE_TOOL: str
    CREATE_AGENT: str
    INVOKE_AGENT: str
    INVOKE_WORKFLOW: str
    RERANK: str
    IMAGE_GENERATION: str
    SPEECH_TO_TEXT: str
    TEXT_TO_SPEECH: str
    MODERATION: str
    COUNT_TOKENS: str


def prepare() -> None:
    """Load the convention's names now, on the calling thread (the worker imports nothing)."""
    _convention()


@functools.lru_cache(maxsize=None)
def operations() -> frozenset[str]:
    ops, _ = _convention()
    return frozenset(op.value for op in ops) | frozenset(OUR_OPERATIONS)


@functools.lru_cache(maxsize=None)
def providers() -> frozenset[str]:
    """Provider names the convention defines."""
    _, prov = _convention()
    return frozenset(p.value for p in prov)


def _key(text: str) -> str:
    return re.sub(r"[\s\-./]+", "_", text.strip().lower())


@functools.lru_cache(maxsize=None)
def _operation_aliases() -> dict[str, str]:
    ops, _ = _convention()
    table = {_key(op): op for op in operations()}
    for alias, op in {
        "chat_completion": ops.CHAT,
        "chat_completions": ops.CHAT,
        "messages": ops.CHAT,
        "completion": ops.TEXT_COMPLETION,
        "completions": ops.TEXT_COMPLETION,
        "embedding": ops.EMBEDDINGS,
        "embed": ops.EMBEDDINGS,
        "tool": ops.EXECUTE_TOOL,
        "tool_call": ops.EXECUTE_TOOL,
        "agent": ops.INVOKE_AGENT,
        "workflow": ops.INVOKE_WORKFLOW,
        "generate": ops.GENERATE_CONTENT,
    }.items():
        table[alias] = op.value
    for alias, op in {
        "image": "image_generation",
        "images": "image_generation",
        "moderations": "moderation",
        "transcription": "speech_to_text",
        "transcriptions": "speech_to_text",
        "translation": "speech_to_text",
        "speech": "text_to_speech",
        "tts": "text_to_speech",
        "reranking": "rerank",
    }.items():
        table[alias] = op
    return table


@functools.lru_cache(maxsize=None)
def _provider_aliases() -> dict[str, str]:
    _, p = _convention()
    aliases = {
        p.OPENAI: ["oai", "open_ai"],
        p.AZURE_AI_OPENAI: ["azure", "azure_openai", "azureopenai", "azure_open_ai"],
        p.AZURE_AI_INFERENCE: ["azure_ai", "azure_inference"],
        p.AWS_BEDROCK: ["bedrock", "aws_bedrock", "amazon_bedrock", "bedrock_runtime", "bedrock_converse"],
        p.GCP_VERTEX_AI: ["vertex", "vertex_ai", "vertexai", "google_vertex", "google_vertex_ai", "gcp_vertex"],
        p.GCP_GEMINI: ["gemini", "google_gemini", "google_ai_studio", "googleai", "google_ai", "google"],
        p.GCP_GEN_AI: ["google_genai", "google_gen_ai", "genai"],
        p.ANTHROPIC: ["claude", "anthropic_ai"],
        p.COHERE: ["cohere_ai", "cohereai"],
        p.GROQ: ["groq_cloud", "groqcloud"],
        p.MISTRAL_AI: ["mistral", "mistralai"],
        p.DEEPSEEK: ["deep_seek", "deepseek_ai"],
        p.X_AI: ["xai", "grok"],
        p.PERPLEXITY: ["pplx", "perplexity_ai"],
        p.IBM_WATSONX_AI: ["watsonx", "ibm", "ibm_watsonx", "watsonx_ai"],
        "together": ["togetherai", "together_ai"],
        "fireworks": ["fireworks_ai", "fireworksai"],
        "huggingface": ["hf", "hugging_face"],
        "ollama": [],
        "openrouter": ["open_router"],
        "voyage": ["voyageai", "voyage_ai"],
        "cerebras": [],
    }
    table: dict[str, str] = {}
    for canonical, names in aliases.items():
        value = getattr(canonical, "value", canonical)
        table[_key(value)] = value
        for name in names:
            table[name] = value
    return table


@functools.lru_cache(maxsize=4096)
def _normalize_operation(operation: object) -> str:
    if not operation:
        return "chat"
    text = str(operation)
    key = _key(text)
    return _operation_aliases().get(key, key)


# Names given -> the convention's, for the names that are strings (nearly all): every record looks
# both up on the worker, and a dict lookup costs a tenth of a call through `lru_cache`. A provider's
# name alone decides its spelling (the model only when no provider is named), so the model is no key.
_operation_names: dict[str, str] = {}
_provider_names: dict[str, str] = {}


def _remember(names: dict[str, str], given: str, spelled: str) -> str:
    if len(names) >= 4096:  # names made up per call: start over rather than grow
        names.clear()
    names[given] = spelled
    return spelled


def normalize_operation(operation: object) -> str:
    """The convention's spelling of an operation (`Chat` -> `chat`, `embedding` -> `embeddings`)."""
    if type(operation) is str:
        spelled = _operation_names.get(operation)
        return spelled if spelled is not None else _remember(_operation_names, operation, _normalize_operation(operation))
    try:
        return _normalize_operation(operation)
    except TypeError:  # unhashable (a list, a dict): named by its text, never a lost record
        return _normalize_operation(str(operation) if operation else None)


@functools.lru_cache(maxsize=4096)  # called once per record on the worker; few distinct inputs
def _normalize_provider(provider: object, model: object = None) -> str:
    if provider:
        text = str(provider)
        key = _key(text)
        return _provider_aliases().get(key, key)
    return infer_provider(model)


def normalize_provider(provider: object, model: object = None) -> str:
    """One name per provider; infer it from the model when `provider` is empty."""
    if type(provider) is str and provider:
        spelled = _provider_names.get(provider)
        return spelled if spelled is not None else _remember(_provider_names, provider, _normalize_provider(provider))
    try:
        return _normalize_provider(provider, model)
    except TypeError:  # unhashable (a list, a dict): named by its text, never a lost record
        return _normalize_provider(str(provider) if provider else None, str(model) if model else None)


# (pattern on the lower-cased model name, provider); first match wins.
_MODEL_RULES: tuple[tuple[str, str], ...] = (
    # Bedrock model ids: "anthropic.claude-…", "us.anthropic.claude-…", "amazon.nova-…", "meta.llama…"
    (r"^(?:(?:us|eu|apac|global)\.)?(?:anthropic|amazon|meta|cohere|ai21|mistral|deepseek|writer)\.[a-z0-9]", "aws.bedrock"),
    (r"^(?:gpt-|chatgpt-|o\d(?:-|$)|text-embedding-(?:ada|3)|dall-e|whisper-|tts-|davinci|babbage|"
     r"omni-moderation|text-moderation|computer-use-preview|codex-)", "openai"),
    (r"^claude", "anthropic"),
    (r"^(?:models/)?(?:gemini|gemma|text-embedding-004|embedding-001|imagen)", "gcp.gemini"),
    (r"^(?:command|embed-(?:english|multilingual|v\d)|rerank-|c4ai-aya|aya-)", "cohere"),
    (r"^(?:mistral|mixtral|codestral|pixtral|ministral|magistral|devstral|open-mistral|open-mixtral|voxtral)", "mistral_ai"),
    (r"^grok", "x_ai"),
    (r"^deepseek", "deepseek"),
    (r"^(?:sonar|pplx-|r1-1776)", "perplexity"),
    (r"^granite", "ibm.watsonx.ai"),
    (r"^accounts/fireworks/", "fireworks"),
    (r"^voyage-", "voyage"),
)
_MODEL_PATTERN = re.compile("|".join(f"(?P<r{i}>{pattern})" for i, (pattern, _) in enumerate(_MODEL_RULES)))


def infer_provider(model: object) -> str:
    """The provider a model name implies, or `unknown`.

    `provider/model` prefixes (as LiteLLM and OpenRouter write them) win; bare
    open-weight names such as `llama-3-70b` run on many providers, so they stay
    `unknown` rather than being guessed.
    """
    if not model:
        return UNKNOWN
    name = str(model).strip().lower()
    prefix, sep, rest = name.partition("/")
    if sep and prefix not in ("models", "accounts"):
        known = _provider_aliases().get(_key(prefix))
        if known:
            return known
        name = rest
    match = _MODEL_PATTERN.match(name)
    if match is None:
        return UNKNOWN
    return _MODEL_RULES[int(match.lastgroup[1:])][1]


# Hosts of OpenAI-compatible (and other) endpoints -> provider; a suffix match on the host.
_HOSTS = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("services.ai.azure.com", "azure.ai.inference"),
    ("api.anthropic.com", "anthropic"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.together.xyz", "together"),
    ("api.together.ai", "together"),
    ("openrouter.ai", "openrouter"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.fireworks.ai", "fireworks"),
    ("api.cerebras.ai", "cerebras"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("amazonaws.com", "aws.bedrock"),
    ("api.cohere.com", "cohere"),
    ("api.cohere.ai", "cohere"),
    ("inference.ai.azure.com", "azure.ai.inference"),
    ("api-inference.huggingface.co", "huggingface"),
    ("router.huggingface.co", "huggingface"),
    ("api.moonshot.ai", "moonshotai"),
)


_DEFAULT_PORTS = {"https": 443, "http": 80, "wss": 443, "ws": 80}


@functools.lru_cache(maxsize=1024)
def server_from_url(url: str) -> tuple[str, int | None] | None:
    """`(server.address, server.port)` of a base URL, the scheme's port when none is written
    (`https://api.openai.com/v1` -> `("api.openai.com", 443)`); None when it names no host."""
    from urllib.parse import urlsplit  # once per distinct URL (cached): not on the import path

    try:
        parts = urlsplit(url if "://" in url else "//" + url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port out of range, a bracket left open: no server to name
        return None
    if not host:
        return None
    return host, port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower())


@functools.lru_cache(maxsize=1024)
def provider_from_url(url: str, default: str = "openai") -> str:
    """The provider a base URL implies: its host (`api.groq.com` -> groq), Ollama's port 11434, else `default`."""
    rest = url.split("://", 1)[-1]
    hostport = rest.split("/", 1)[0].rsplit("@", 1)[-1].lower()
    host, _, port = hostport.partition(":")
    for suffix, provider in _HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    if port == "11434" or host == "ollama":
        return "ollama"
    return default
