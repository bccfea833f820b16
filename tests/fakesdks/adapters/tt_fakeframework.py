"""tokentrail's adapter for `fakeframework`, on the callback point (how LangChain's would look)."""

from __future__ import annotations

from typing import Any

from tokentrail.instrument.callback_point import Runs
from tokentrail.instrument.patch import Hook

NAME = "fakeframework"
DISTRIBUTION = "fakeframework"
MIN_VERSION = (1, 0)


class Handler:
    """Turns the framework's callbacks into tokentrail runs, keyed by the framework's run ids."""

    def __init__(self) -> None:
        self.runs = Runs("fakeframework")

    def on_chain_start(self, run: str, name: str) -> None:
        self.runs.start_span(run, name)

    def on_chain_end(self, run: str) -> None:
        self.runs.end_span(run)

    def on_llm_start(self, run: str, parent: str | None, model: str, prompt: str) -> None:
        self.runs.start_call(run, provider="fakeprovider", model=model, parent=parent, labels={"framework_run": run})

    def on_llm_end(self, run: str, answer: dict[str, Any]) -> None:
        self.runs.end_call(run, usage=answer.get("usage"), output=answer.get("text"), response_id=answer.get("id"))

    def on_llm_error(self, run: str, error: BaseException) -> None:
        self.runs.end_call(run, error=error)


def install(adapter: Any) -> Any:
    import fakeframework

    handler = Handler()
    fakeframework.callbacks.append(handler)
    return lambda: fakeframework.callbacks.remove(handler)


PATCHES = (Hook("fakeframework", install),)
