"""The built-in demo app behind `tokentrail demo`: a small support product making a realistic mix of calls.

Real `openai` and `anthropic` clients talk over HTTP to tokentrail.testing's
fake provider on 127.0.0.1: several models and both providers, streams, tool
calls, a workflow with outcomes, a few failures, several users, customers and
features. Nothing leaves the machine; no keys are needed.

Where the calls go (decided here, shown in `tokentrail demo --help`): by
default a store of their own, `tokentrail-demo.db` in the working directory,
recreated on each run (`reset`) so a second run shows the same report rather
than double counts. Fake calls in the real store would show in its reports
and count against its budgets (budgets are seeded from the store). Every demo
call, tool call and outcome also carries the tag `demo`, so calls recorded
into another store with `--store` can still be told apart. The demo
records to its store only: configured exporters and budgets are not used.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import tokentrail
from tokentrail import report
from tokentrail.errors import StoreError
from tokentrail.testing import FakeProvider

CUSTOMERS = {"acme": ["u-ana", "u-ben"], "globex": ["u-cho"], "initech": ["u-dee", "u-eli"]}


def _ask(messages: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a concise support assistant."}, {"role": "user", "content": messages}]


def _support_ticket(gpt: Any, claude: Any, customer: str, user: str, rng: random.Random) -> None:
    """One run of the `support-ticket` workflow: triage, a tool call, an answer, an outcome."""
    with tokentrail.workflow("support-ticket", customer_id=customer, user_id=user, feature="support") as run:
        gpt.chat.completions.create(model="gpt-4o-mini", messages=_ask("Triage: my invoice is wrong."),
                                    tools=[{"type": "function", "function": {"name": "lookup_invoice", "parameters": {"type": "object", "properties": {}}}}])
        with tokentrail.track_tool_call("lookup_invoice", arguments={"customer": customer}) as tool:
            tool.set_result({"amount": 120})
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=300,
                                    messages=[{"role": "user", "content": "Write the reply to the customer."}]) as stream:
            for _ in stream.text_stream:
                pass
        resolved = rng.random() < 0.8
        run.emit_outcome("ticket_resolved" if resolved else "ticket_escalated", value=1, success=resolved)


def reset(store: str) -> None:
    """Remove the demo store at `store` so the next run starts empty — only if it holds nothing but demo calls.

    A missing store is fine; a store with other calls raises `StoreError` and is left alone.
    """
    path = report.store_path(store)
    if path is None or path == ":memory:" or not Path(path).exists():
        return
    opened = report.open_existing(store)
    try:
        if not report.only_demo_calls(opened):
            raise StoreError(f"{path} holds calls that are not from the demo; it was left alone — "
                             "move it away, or pass --store to record the demo elsewhere")
    finally:
        opened.close()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def run(store: str, seed: int = 7) -> int:
    """Make the calls, record them into `store` (tagged `demo`); returns how many LLM calls were made."""
    import anthropic
    import openai

    rng = random.Random(seed)
    fake = FakeProvider(latency=0.005, frame_delay=0.001, cache_read_tokens=0)
    made = 0
    tokentrail.init(store, instrument=True, exporters=(), budgets=(), enabled=True)
    try:
        with fake.serve() as url, tokentrail.attributes(tags=[report.DEMO_TAG]):
            gpt = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-demo", max_retries=0)
            claude = anthropic.Anthropic(base_url=url, api_key="sk-ant-demo", max_retries=0)
            for customer, users in CUSTOMERS.items():
                for user in users:
                    with tokentrail.attributes(customer_id=customer, user_id=user):
                        with tokentrail.attributes(feature="search"):
                            gpt.embeddings.create(model="text-embedding-3-small", input=["refund policy", "invoice"])
                            gpt.chat.completions.create(model="gpt-4o", messages=_ask("Summarize the refund policy."))
                            made += 2
                        with tokentrail.attributes(feature="chat"):
                            stream = gpt.chat.completions.create(model="gpt-4o-mini", messages=_ask("Hello!"), stream=True,
                                                                 stream_options={"include_usage": True})
                            for _ in stream:
                                pass
                            fake.settings.cache_read_tokens = 900
                            claude.messages.create(model="claude-haiku-4-5", max_tokens=200,
                                                   messages=[{"role": "user", "content": "Suggest a follow-up question."}])
                            fake.settings.cache_read_tokens = 0
                            gpt.responses.create(model="o4-mini", input="Plan the answer step by step.")
                            made += 3
                        _support_ticket(gpt, claude, customer, user, rng)
                        made += 2
            with tokentrail.attributes(customer_id="globex", user_id="u-cho", feature="chat"):
                for status in (429, 500):  # a rate limit and a server error
                    try:
                        gpt.chat.completions.create(model="gpt-4o", messages=_ask("again"), extra_headers={"x-fake-error": str(status)})
                    except openai.APIStatusError:
                        pass
                    made += 1
                try:
                    claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"x-fake-error": "529"})
                except anthropic.APIStatusError:
                    pass
                made += 1
            # A call through a client tokentrail has no adapter for, logged by hand.
            tokentrail.log_llm_call(provider="mistral", model="mistral-small-latest", customer_id="initech", feature="search",
                                    usage={"prompt_tokens": 420, "completion_tokens": 60}, duration_ms=380)
            made += 1
        tokentrail.flush(30)
    finally:
        tokentrail.shutdown()
        tokentrail.uninstrument()
    return made
