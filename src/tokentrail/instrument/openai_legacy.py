"""The `openai` SDK before 1.0 (0.27, 0.28): the openai adapter's patch table when such a release is installed.

Not an adapter of its own: `tokentrail.instrument.openai` picks this table at
import when the installed openai is a 0.x release, so the library keeps its one
name (`tokentrail.instrument("openai")`, `available()`, `instrumented()`) and
the same endpoint readers (the openai adapter's `ENDPOINTS`) serve both majors.

Recorded: `openai.ChatCompletion.create`, `openai.Completion.create`,
`openai.Embedding.create` and their `acreate`, streamed or not, plus
`Moderation`, `Image.create` and `Audio.transcribe` / `translate` (the same
endpoints as 1.x). Files, fine-tunes, models, … pass through untouched.

- Choke point: every call goes through
  `openai.api_requestor.APIRequestor.request(method, url, params, headers, files,
  stream, …)` (`arequest` for `acreate`): the URL path names the endpoint, the
  params dict is the request body, and it returns `(response, got_stream,
  api_key)` where `response.data` is the parsed JSON — or, for a stream, a
  generator (an async generator from `arequest`) of such responses, one per SSE
  event. Only `.data` (plain dicts) is kept for the worker, never the tuple,
  which holds the API key.
- Paths: `/chat/completions`, `/engines/{engine}/completions`, Azure's
  `/openai/deployments/{deployment}/embeddings?api-version=…`. The model is the
  request's `model`, else the engine / deployment named in the path (Azure calls
  name only the deployment, as in 1.x's `AzureOpenAI`).
- Streams: the stream is followed through the core's stream proxy (the SDK
  wraps it in its own generator of `OpenAIObject`s, which the app reads). 0.x
  streams report no usage: their tokens are estimated and flagged
  (`metadata["tokens_estimated"]`), as for any stream without usage. A stream
  asked for but answered with one JSON body is recorded as that response.
- Errors: `openai.error.*`, whose `http_status` gives the status code; an error
  event inside a stream raises `openai.error.APIError` while the app reads it.
  `ChatCompletion`/`Embedding` repeat a request the server answered 409
  (`TryAgain`, a model still loading): each request is its own record.
- Provider: `azure.ai.openai` for `api_type="azure"` / `"azure_ad"`, else the
  one `api_base` implies (`openai` when unknown).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote_plus

from ..semconv import provider_from_url
from .endpoint import Call, Endpoint
from .method_point import method, proxy_stream
from .sdkcall import SDKCall

__all__ = ["legacy_patches", "legacy_call_of", "provider_of"]

_AZURE = ("AZURE", "AZURE_AD")  # names of `openai.util.ApiType` members that mean Azure


def _data(response: Any) -> Any:
    """The parsed JSON of one `OpenAIResponse` (a stream event, or a whole body)."""
    return getattr(response, "data", None)


def _kept(result: Any) -> Any:
    """What the worker reads of `(response, got_stream, api_key)`: the response's JSON, not the key."""
    return _data(result[0]) if type(result) is tuple and result else None


def follow_result(call: SDKCall, result: Any) -> Any:
    """`on_stream`: the stream in `(stream, got_stream, api_key)` replaced by a recording proxy."""
    response, got_stream, api_key = result
    if got_stream:
        return proxy_stream(call, response), got_stream, api_key
    call.result = _data(response)  # asked for a stream, answered with one JSON body
    call.finish()
    return result


def legacy_patches() -> tuple[Any, ...]:
    return (
        method("openai.api_requestor", "APIRequestor", "request", "sync", on_stream=follow_result),
        method("openai.api_requestor", "APIRequestor", "arequest", "async", on_stream=follow_result),
    )


def split_path(url: str) -> tuple[str, str | None]:
    """`/openai/deployments/dep/chat/completions?api-version=…` -> (`/chat/completions`, `dep`)."""
    path = url.partition("?")[0]
    for marker in ("/deployments/", "/engines/"):
        head, found, tail = path.partition(marker)
        if found:
            name, _, rest = tail.partition("/")
            return "/" + rest, unquote_plus(name) or None
    return path, None


def legacy_call_of(endpoints: dict[str, Endpoint]) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Call | None]:
    """`call_of` for `APIRequestor.request(method, url, params, headers, files, stream, …)`, reading the
    openai adapter's endpoints: the same readers, told to keep the JSON of what the requestor returns."""
    table = {path: Endpoint(e.operation, e.request, e.response, e.chunks, keep=_kept, chunk=_data)
             for path, e in endpoints.items()}

    def call_of(requestor: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        verb = args[0] if args else kwargs.get("method")
        url = args[1] if len(args) > 1 else kwargs.get("url")
        if type(url) is not str or type(verb) is not str or verb.lower() != "post":
            return None
        path, deployment = split_path(url)
        endpoint = table.get(path)
        if endpoint is None:
            return None
        body = args[2] if len(args) > 2 else kwargs.get("params")
        stream = args[5] if len(args) > 5 else kwargs.get("stream", False)
        model = body.get("model") if type(body) is dict else None
        return Call(endpoint, body, model or deployment, bool(stream))

    return call_of


def provider_of(requestor: Any) -> str:
    if getattr(getattr(requestor, "api_type", None), "name", None) in _AZURE:
        return "azure.ai.openai"
    return provider_from_url(str(base_url_of(requestor) or ""))


def base_url_of(requestor: Any) -> Any:
    return getattr(requestor, "api_base", None)
