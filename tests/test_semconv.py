import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g

from tokentrail.semconv import infer_provider, normalize_operation, normalize_provider, operations, providers


def test_operations_and_providers_come_from_the_convention():
    assert {op.value for op in g.GenAiOperationNameValues} <= operations()
    assert {p.value for p in g.GenAiProviderNameValues} == providers()
    assert {"image_generation", "moderation", "speech_to_text", "text_to_speech", "rerank"} <= operations()


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("azure_openai", "azure.ai.openai"),
        ("Azure-OpenAI", "azure.ai.openai"),
        ("azure.ai.openai", "azure.ai.openai"),
        ("bedrock", "aws.bedrock"),
        ("AWS Bedrock", "aws.bedrock"),
        ("vertex", "gcp.vertex_ai"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("gemini", "gcp.gemini"),
        ("mistralai", "mistral_ai"),
        ("Mistral", "mistral_ai"),
        ("togetherai", "together"),
        ("claude", "anthropic"),
        ("xai", "x_ai"),
        ("watsonx", "ibm.watsonx.ai"),
        ("Groq", "groq"),
        ("deepseek", "deepseek"),
        ("Ollama", "ollama"),
        ("MyInHouseLLM", "myinhousellm"),
    ],
)
def test_provider_aliases_normalize(alias, expected):
    assert normalize_provider(alias) == expected


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gpt-4o", "openai"),
        ("gpt-4o-2024-08-06", "openai"),
        ("o1-preview", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini", "openai"),
        ("o3", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-3-5-sonnet-20241022", "anthropic"),
        ("gemini-1.5-pro", "gcp.gemini"),
        ("models/gemini-2.0-flash", "gcp.gemini"),
        ("command-r-plus", "cohere"),
        ("mistral-large-latest", "mistral_ai"),
        ("mixtral-8x7b", "mistral_ai"),
        ("codestral-latest", "mistral_ai"),
        ("grok-2", "x_ai"),
        ("deepseek-chat", "deepseek"),
        ("llama-3.1-70b", "unknown"),
        ("llama3", "unknown"),
        ("openai/gpt-4o", "openai"),
        ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", "aws.bedrock"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "aws.bedrock"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock"),
        ("groq/llama-3.1-8b-instant", "groq"),
        ("meta-llama/Llama-3-8b", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_provider_inferred_from_model(model, expected):
    assert infer_provider(model) == expected
    assert normalize_provider(None, model) == expected


@pytest.mark.parametrize(
    "alias, expected",
    [("chat", "chat"), ("Chat", "chat"), ("embedding", "embeddings"), ("completion", "text_completion"),
     ("images", "image_generation"), ("tts", "text_to_speech"), ("transcription", "speech_to_text"),
     ("rerank", "rerank"), ("execute_tool", "execute_tool"), (None, "chat"), ("Something New", "something_new")],
)
def test_operation_names(alias, expected):
    assert normalize_operation(alias) == expected


def test_server_from_url_gives_host_and_port_the_scheme_implies():
    from tokentrail.semconv import server_from_url

    assert server_from_url("https://api.openai.com/v1") == ("api.openai.com", 443)
    assert server_from_url("http://127.0.0.1:11434") == ("127.0.0.1", 11434)
    assert server_from_url("https://[::1]:8080/x") == ("::1", 8080)
    assert server_from_url("bedrock-runtime.us-east-1.amazonaws.com") == ("bedrock-runtime.us-east-1.amazonaws.com", None)
    assert server_from_url("") is None and server_from_url("http://h:99999") is None  # no host, a port out of range
