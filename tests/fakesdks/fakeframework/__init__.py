"""A minimal framework that reports its runs through callbacks (like LangChain or LiteLLM).

`LLM(model).invoke(prompt)` asks `backend(prompt)` for an answer — a function that may call a real
SDK — and tells every handler in `callbacks` when the run starts, ends or fails; `Chain` wraps runs.
"""

import uuid

callbacks = []


def _emit(event, *args):
    for handler in list(callbacks):
        getattr(handler, event)(*args)


class LLM:
    def __init__(self, model, backend=None):
        self.model, self.backend = model, backend

    def invoke(self, prompt, parent=None):
        run = uuid.uuid4().hex
        _emit("on_llm_start", run, parent, self.model, prompt)
        try:
            answer = self.backend(prompt) if self.backend else {"id": f"fw-{run[:8]}", "text": "ok",
                                                                  "usage": {"input_tokens": 7, "output_tokens": 2}}
        except Exception as exc:
            _emit("on_llm_error", run, exc)
            raise
        _emit("on_llm_end", run, answer)
        return answer


class Chain:
    def __init__(self, name, llm):
        self.name, self.llm = name, llm

    def run(self, prompt):
        run = uuid.uuid4().hex
        _emit("on_chain_start", run, self.name)
        try:
            return self.llm.invoke(prompt, parent=run)
        finally:
            _emit("on_chain_end", run)
