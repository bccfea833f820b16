"""tokentrail's adapter for `fakestainless`, on the request point (how groq's would look)."""

from __future__ import annotations

from typing import Any

from tokentrail.instrument.endpoint import Endpoint, params, usage_fields
from tokentrail.instrument.request_point import stainless_call_of, stainless_patches

NAME = "fakestainless"
DISTRIBUTION = "fakestainless"
MIN_VERSION = (1, 0)
PATCHES = stainless_patches("fakestainless")


def chat_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return {"request_params": params(body, ("temperature", "stream"))}, body.get("messages")


def chat_response(data: Any) -> tuple[dict[str, Any], Any]:
    return {"response_id": data.get("id"), "response_model": data.get("model"), **usage_fields(data.get("usage"))}, data.get("text")


def chat_chunks(events: list[Any]) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {"response_id": events[0].get("id") if events else None}
    for event in events:
        fields.update(usage_fields(event.get("usage")))
    return fields, "".join(e.get("delta", "") for e in events) or None


call_of = stainless_call_of({"/chat": Endpoint("chat", chat_request, chat_response, chat_chunks)})


def provider_of(client: Any) -> str:
    return "fakeprovider"
