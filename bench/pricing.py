"""What pricing and budgets cost.

    python bench/pricing.py

1. Cost per call: `PriceBook.price(record)` as the worker runs it (cached rates,
   float arithmetic), against `genai_prices.calc_price` on the same usage.
2. Budget check on the calling thread: `track_llm_call` blocks with a blocking
   budget in force (scoped per customer) against blocks with none, alternating
   short blocks, calling-thread CPU (`time.thread_time`), median of the
   differences per call.
"""

from __future__ import annotations

import statistics
import sys
import time

import tokentrail
from tokentrail.budget import BudgetBook
from tokentrail.pricing import PriceBook
from tokentrail.record import LLMCall
from tokentrail.tracker import _State

N = 20_000
MODELS = [("openai", "gpt-4o-2024-08-06"), ("anthropic", "claude-3-5-sonnet-latest"), ("gcp.gemini", "gemini-1.5-pro"),
          ("aws.bedrock", "anthropic.claude-3-haiku-20240307-v1:0"), ("mistral_ai", "mistral-large-latest")]


def per_call_us(fn, n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - start) / n * 1e6


def cost_per_call() -> tuple[float, float]:
    book = PriceBook()
    records = [LLMCall(id=str(i), provider=p, request_model=m, input_tokens=1200 + i, output_tokens=300,
                       cache_read_tokens=1000, started_at=None) for i, (p, m) in enumerate(MODELS)]
    for r in records:  # resolve once, as the first call of each model does
        book.price(r)

    def price_all():
        for r in records:
            r.cost_usd = None
            book.price(r)

    ours = statistics.median(per_call_us(price_all, N // len(records)) / len(records) for _ in range(7))

    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)
    theirs = statistics.median(per_call_us(lambda: calc_price(usage, "gpt-4o-2024-08-06", provider_id="openai"), 500) for _ in range(5))
    return ours, theirs


def block(n: int) -> None:
    for _ in range(n):
        with tokentrail.track_llm_call("openai", "gpt-4o-mini"):
            pass


def budget_check_overhead() -> tuple[float, float]:
    budget = tokentrail.Budget(limit_usd=1000, period="day", scope={"customer_id": "*"}, action="raise")
    tracker = tokentrail.init(store="none", budgets=[budget])
    book = tracker.budgets
    diffs = []
    with tokentrail.attributes(customer_id="acme"):
        for i in range(300):
            _State.budgets = None
            without = per_call_us(lambda: block(200), 1) / 200
            _State.budgets = book
            with_budget = per_call_us(lambda: block(200), 1) / 200
            diffs.append(with_budget - without)
            if i % 20 == 0:
                tokentrail.flush(10)
    direct = BudgetBook([budget])
    fields = {"customer_id": "acme"}
    check = statistics.median(per_call_us(lambda: direct.check(fields), 20_000) for _ in range(5))
    tokentrail.shutdown()
    return statistics.median(diffs), check


def main() -> None:
    ours, theirs = cost_per_call()
    print(f"cost per call (worker): {ours:.2f} us with cached rates; genai_prices.calc_price: {theirs:.1f} us")
    added, check = budget_check_overhead()
    print(f"budget check on the calling thread: {added:.2f} us added per track_llm_call (median); "
          f"BudgetBook.check alone {check:.2f} us")
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
