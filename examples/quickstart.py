"""Record a few LLM calls by hand and print them back from the store.

    python examples/quickstart.py

No provider, no key, no network: the calls are made up, the records are real
(written to ./tokentrail.db and read back with open_store).
"""

import time

import tokentrail

tokentrail.init()  # SQLite store ./tokentrail.db

with tokentrail.attributes(user_id="u-42", customer_id="acme", feature="support-bot"):
    with tokentrail.workflow("answer-ticket") as run:
        with tokentrail.track_llm_call("openai", "gpt-4o-mini") as span:
            time.sleep(0.05)  # your call to the model goes here
            span.set_tokens(input=812, output=64, cache_read=512)
            span.set_finish_reason("stop")

        with tokentrail.track_tool_call("search_kb", tool_call_id="call_1"):
            time.sleep(0.01)

        with tokentrail.track_llm_call("anthropic", "claude-3-5-haiku-latest") as span:
            time.sleep(0.03)
            span.set_usage({"input_tokens": 120, "output_tokens": 80, "cache_read_input_tokens": 900})

        run.emit_outcome("ticket_resolved", value=1)

try:
    with tokentrail.track_llm_call("openai", "gpt-4o", user_id="u-7"):
        raise TimeoutError("the provider took too long")
except TimeoutError:
    pass

tokentrail.log_llm_call(provider="mistral", model="mistral-small-latest",
                        usage={"prompt_tokens": 300, "completion_tokens": 40}, duration_ms=420, customer_id="globex")

tokentrail.flush()
store = tokentrail.open_store("sqlite:///tokentrail.db")
print(f"{'provider':<10} {'model':<26} {'in':>6} {'out':>5} {'cached':>6} {'ms':>7}  who              error")
for call in store.calls(limit=5):
    who = f"{call.customer_id or '-'}/{call.user_id or '-'}"
    print(f"{call.provider:<10} {call.model:<26} {call.input_tokens or 0:>6} {call.output_tokens or 0:>5} "
          f"{call.cache_read_tokens or 0:>6} {call.duration_ms:>7.1f}  {who:<16} {call.error_category or ''}")
print()
for row in store.summary(group_by=("customer",)):
    print(f"customer {row['customer'] or '-':<8} calls={row['calls']} tokens={row['total_tokens']} "
          f"errors={row['errors']} p50={row['p50_ms']:.1f} ms")
