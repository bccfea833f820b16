"""The `groq` SDK (>= 0.9): every endpoint through `SyncAPIClient.request` / `AsyncAPIClient.request`.

Groq's SDK is generated from the same Stainless template as openai's and
speaks OpenAI's shapes under `/openai/v1/…`, so this adapter reuses the
openai adapter's readers and only adds what Groq does differently:

- chat completions (tools, `n>1`, streams): a stream's usage comes from the
  last chunk's `x_groq.usage`, which Groq always sends — no `stream_options`
  needed (a top-level `usage`, sent only with `include_usage`, wins when both
  are there; they carry the same counts);
- Groq's own request parameters (`reasoning_format`, `include_reasoning`) are
  recorded with the OpenAI ones;
- Groq's server-side timings (`usage.queue_time`, `prompt_time`,
  `completion_time`, seconds) are kept in metadata as `queue_time_ms`,
  `prompt_time_ms`, `completion_time_ms`;
- embeddings, audio transcriptions / translations (`verbose_json` reports the
  audio's `duration`: kept as `metadata["audio_seconds"]`; Groq bills audio by
  the hour, which the token price table cannot express, so these calls stay
  unpriced) and speech (`text_to_speech`, nothing to read in the audio bytes).

Files, batches and models pass through untouched. Provider: `groq`.
"""

from __future__ import annotations

from typing import Any

from ..semconv import provider_from_url
from ..shapes import pick
from . import openai
from .endpoint import Endpoint, params, usage_fields
from .request_point import stainless_call_of, stainless_patches

NAME = "groq"
DISTRIBUTION = "groq"
MIN_VERSION = (0, 9)
PATCHES = stainless_patches("groq")

_GROQ_PARAMS = ("reasoning_format", "include_reasoning")
_TIMINGS = (("queue_time", "queue_time_ms"), ("prompt_time", "prompt_time_ms"), ("completion_time", "completion_time_ms"))


def chat_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    fields, messages = openai.chat_request(body)
    extra = params(body, _GROQ_PARAMS)
    if extra:
        fields["request_params"] = {**(fields.get("request_params") or {}), **extra}
    return fields, messages


def timings(usage: Any) -> dict[str, Any]:
    """Groq's server-side timings (seconds on the wire) in ms.

    Returned as top-level names, which the core files under `metadata` (names
    that are not record fields go there): a `metadata` dict from a stream's
    reader would be dropped, since the core sets the stream's own metadata first.
    """
    return {name: round(value * 1000, 3) for key, name in _TIMINGS
            if isinstance(value := pick(usage, key), (int, float)) and not isinstance(value, bool)}


def chat_response(data: Any) -> tuple[dict[str, Any], Any]:
    fields, text = openai.chat_response(data)
    return {**fields, **timings(pick(data, "usage"))}, text


def chat_chunks(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    fields, text = openai.chat_chunks(chunks)
    usage = next((u for c in reversed(chunks) if (u := pick(c, "x_groq", "usage")) is not None), None)
    if usage is not None:
        fields = {**usage_fields(usage), **fields}  # a top-level usage (include_usage) is already in `fields`
        fields.update(timings(usage))
    return fields, text


def transcription_response(data: Any) -> tuple[dict[str, Any], Any]:
    fields, text = openai.transcription_response(data)
    seconds = pick(data, "duration")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and "metadata" not in fields:
        fields["metadata"] = {"audio_seconds": seconds}
    return fields, text


_PREFIX = "/openai/v1"
ENDPOINTS = {
    f"{_PREFIX}/chat/completions": Endpoint("chat", chat_request, chat_response, chat_chunks),
    f"{_PREFIX}/embeddings": openai.ENDPOINTS["/embeddings"],
    f"{_PREFIX}/audio/transcriptions": Endpoint("speech_to_text", openai.ENDPOINTS["/audio/transcriptions"].request, transcription_response),
    f"{_PREFIX}/audio/translations": Endpoint("speech_to_text", openai.ENDPOINTS["/audio/translations"].request, transcription_response),
    f"{_PREFIX}/audio/speech": openai.ENDPOINTS["/audio/speech"],
}


call_of = stainless_call_of(ENDPOINTS)


def provider_of(client: Any) -> str:
    return provider_from_url(str(getattr(client, "base_url", "")), default="groq")
