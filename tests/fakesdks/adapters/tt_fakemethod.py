"""tokentrail's adapter for `fakemethod`, on the method point (how ollama's would look)."""

from __future__ import annotations

from typing import Any

from tokentrail.instrument.endpoint import Call, Endpoint, usage_fields
from tokentrail.instrument.method_point import method

NAME = "fakemethod"
DISTRIBUTION = "fakemethod"
MIN_VERSION = (1, 0)
PATCHES = (
    method("fakemethod", "Client", "send", "sync"),
    method("fakemethod", "AsyncClient", "send", "async"),
)


def generate_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {}, body.get("prompt")


def generate_response(data: Any) -> tuple[dict[str, Any], Any]:
    return {"response_id": data.get("id"), **usage_fields(data.get("usage"))}, data.get("text")


def generate_chunks(items: list[Any]) -> tuple[dict[str, Any], Any]:
    fields, text = generate_response(items[-1]) if items else ({}, None)
    return fields, "".join(i.get("text") or "" for i in items) or text


GENERATE = Endpoint("text_completion", generate_request, generate_response, generate_chunks)


def call_of(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    operation, payload = (list(args) + [kwargs.get("operation"), kwargs.get("payload")])[:2]
    if operation != "generate" or not isinstance(payload, dict):
        return None
    stream = kwargs.get("stream", args[2] if len(args) > 2 else False)
    return Call(GENERATE, payload, payload.get("model"), bool(stream))


def provider_of(client: Any) -> str:
    return "fakeprovider"
