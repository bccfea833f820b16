import logging
from datetime import datetime, timedelta, timezone

import pytest

import tokentrail
from tokentrail.budget import BudgetBook
from tokentrail.errors import ConfigError
from tokentrail.record import LLMCall


class Clock:
    def __init__(self, when):
        self.now = when

    def __call__(self):
        return self.now.timestamp()


def spend(book, when, usd, tokens=10, **fields):
    book.account(LLMCall(id=f"{when.isoformat()}-{usd}-{sorted(fields.items())}", started_at=when, cost_usd=usd,
                         input_tokens=tokens, output_tokens=0, provider="openai", request_model="gpt-4o", **fields))


def blocked(book, **fields):
    try:
        book.check(fields)
    except tokentrail.BudgetExceeded:
        return True
    return False


T = datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "period, later, still_same",
    [
        ("hour", T + timedelta(minutes=29), T + timedelta(minutes=31)),
        ("day", T + timedelta(minutes=29), T + timedelta(minutes=31)),
        ("month", T + timedelta(minutes=29), T + timedelta(minutes=31)),
    ],
)
def test_calendar_period_rollover_in_utc(period, later, still_same):
    clock = Clock(T)
    book = BudgetBook([tokentrail.Budget(limit_usd=1.0, period=period, action="raise")], clock=clock)
    spend(book, T, 1.5)
    assert blocked(book)
    clock.now = later  # still inside the hour / day / month
    assert blocked(book)
    clock.now = still_same  # 2026-12-01T00:01: a new hour, day and month
    assert not blocked(book)


def test_total_period_never_rolls_over():
    clock = Clock(T)
    book = BudgetBook([tokentrail.Budget(limit_tokens=100, period="total", action="raise")], clock=clock)
    spend(book, T, 0.0, tokens=60)
    assert not blocked(book)
    spend(book, T + timedelta(days=40), 0.0, tokens=60)
    clock.now = T + timedelta(days=400)
    assert blocked(book)


def test_call_period_warns_per_call(caplog):
    events = []
    book = BudgetBook([tokentrail.Budget(limit_usd=0.5, period="call", on_exceed=events.append)])
    spend(book, T, 0.4)
    spend(book, T, 0.6)
    spend(book, T, 0.7)
    assert [round(e.spent_usd, 2) for e in events] == [0.6, 0.7]


def test_scopes_fixed_and_per_value():
    clock = Clock(T)
    acme = tokentrail.Budget(limit_usd=1, scope={"customer_id": "acme"}, action="raise")
    each = tokentrail.Budget(limit_usd=2, scope={"customer_id": "*"}, action="raise")
    book = BudgetBook([acme, each], clock=clock)
    spend(book, T, 1.2, customer_id="acme")
    spend(book, T, 1.9, customer_id="globex")
    assert blocked(book, customer_id="acme")
    assert not blocked(book, customer_id="globex")
    assert not blocked(book, customer_id="initech")
    assert not blocked(book)  # a call for no customer is in neither scope
    spend(book, T, 0.2, customer_id="globex")
    assert blocked(book, customer_id="globex")


def test_warn_logs_budget_spend_and_limit_once_per_period(caplog):
    caplog.set_level(logging.WARNING, logger="tokentrail")
    events = []
    book = BudgetBook([tokentrail.Budget(limit_usd=1, period="day", name="daily", on_exceed=events.append)], clock=Clock(T))
    for _ in range(4):
        spend(book, T, 0.4)
    messages = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert len(messages) == 1
    assert "daily" in messages[0] and "$1.2000" in messages[0] and "$1" in messages[0]
    assert len(events) == 1 and events[0].period == "2026-11-30" and events[0].spent_usd == pytest.approx(1.2)
    spend(book, T + timedelta(hours=1), 5.0)  # next day: warned again
    assert len(events) == 2


def test_on_exceed_that_raises_does_not_break_accounting(caplog):
    def boom(event):
        raise RuntimeError("callback bug")

    book = BudgetBook([tokentrail.Budget(limit_usd=1, on_exceed=boom)], clock=Clock(T))
    spend(book, T, 2.0)
    assert any("on_exceed" in r.getMessage() for r in caplog.records)


def test_raise_stops_the_call_before_the_provider_and_records_it(db_url):
    tracker = tokentrail.init(db_url, budgets=[tokentrail.Budget(limit_usd=0.001, period="day", action="raise",
                                                                 scope={"customer_id": "acme"})])
    provider_called = []
    with tokentrail.attributes(customer_id="acme"):
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:  # allowed: nothing spent yet
            provider_called.append(1)
            span.set_tokens(input=10_000, output=1000)
        assert tokentrail.flush(10)
        with pytest.raises(tokentrail.BudgetExceeded, match="used up"):
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                provider_called.append(2)

        @tokentrail.llm_instrumented(provider="openai", model="gpt-4o")
        def ask():
            provider_called.append(3)

        with pytest.raises(tokentrail.BudgetExceeded):
            ask()
    with tokentrail.track_llm_call("openai", "gpt-4o", customer_id="globex"):  # another customer: fine
        provider_called.append(4)
    assert provider_called == [1, 4]
    assert tokentrail.flush(10)
    refused = tokentrail.open_store(db_url).calls(where={"error_category": "budget"})
    assert len(refused) == 2 and all(c.cost_usd == 0.0 and c.error_type == "BudgetExceeded" for c in refused)
    assert tracker.budgets.counters  # kept by the worker


def test_counters_are_seeded_from_the_store_on_restart(db_url):
    budget = tokentrail.Budget(limit_usd=0.01, period="month", action="raise", scope={"customer_id": "*"})
    tokentrail.init(db_url, budgets=[budget])
    with tokentrail.track_llm_call("openai", "gpt-4o", customer_id="acme") as span:
        span.set_tokens(input=100_000, output=0)  # $0.25
    assert tokentrail.flush(10)
    tokentrail.shutdown()
    tokentrail.init(db_url, budgets=[budget])  # a new process would do the same
    with pytest.raises(tokentrail.BudgetExceeded):
        with tokentrail.track_llm_call("openai", "gpt-4o", customer_id="acme"):
            pass
    with tokentrail.track_llm_call("openai", "gpt-4o", customer_id="globex"):
        pass


def test_budgets_from_the_config_file(tmp_path):
    (tmp_path / "tokentrail.toml").write_text(
        '[[budgets]]\nname = "acme"\nlimit_usd = 5\nperiod = "month"\nscope = { customer_id = "acme" }\naction = "raise"\n'
        '[[budgets]]\nlimit_tokens = 1000000\n'
    )
    tracker = tokentrail.init()
    first, second = tracker.budgets.budgets
    assert (first.name, first.limit_usd, first.period, first.scope, first.action) == ("acme", 5, "month", {"customer_id": "acme"}, "raise")
    assert (second.limit_tokens, second.period, second.action) == (1_000_000, "day", "warn")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "limit_usd and/or limit_tokens"),
        ({"limit_usd": -1}, "limit_usd must be a number > 0"),
        ({"limit_usd": 1, "period": "week"}, "period must be one of call, hour, day, month, total"),
        ({"limit_usd": 1, "action": "block"}, "action must be one of warn, raise"),
        ({"limit_usd": 1, "period": "call", "action": "raise"}, "per-call budget"),
        ({"limit_usd": 1, "scope": {"team": "x"}}, "unknown scope field"),
    ],
)
def test_bad_budgets_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tokentrail.Budget(**kwargs)


def test_bad_budget_in_file_names_the_entry(tmp_path):
    (tmp_path / "tokentrail.toml").write_text('[[budgets]]\nlimit_usd = 5\nperiod = "fortnight"\n')
    with pytest.raises(ConfigError, match=r"period.*entry 0.*tokentrail.toml"):
        tokentrail.init()


def test_a_raising_budget_lets_at_most_one_call_over_even_before_the_worker_runs(db_url):
    """$0.0001 a day, calls of $0.00005, no latency, the worker asleep (flush_interval 5 s): the third call
    is refused. Counting on the worker alone let 14-20 calls through (10x the limit)."""
    tokentrail.init(db_url, flush_interval=5, prices={"tiny-model": {"input": 5, "output": 0}},
                    budgets=[tokentrail.Budget(limit_usd=0.0001, period="day", action="raise")])
    allowed = refused = 0
    for _ in range(20):
        try:
            with tokentrail.track_llm_call("openai", "tiny-model") as span:
                span.set_tokens(input=10, output=0)
            allowed += 1
        except tokentrail.BudgetExceeded:
            refused += 1
    assert (allowed, refused) == (2, 18)
    assert tokentrail.flush(5)
    stored = tokentrail.open_store(db_url).calls(limit=None)
    assert sum(1 for c in stored if c.error_category == "budget") == 18
    assert sum(c.cost_usd for c in stored) == pytest.approx(0.0001)  # each allowed call counted once


def test_calls_outside_a_blocking_budgets_scope_are_left_to_the_worker(db_url):
    tokentrail.init(db_url, flush_interval=5, prices={"tiny-model": {"input": 5, "output": 0}},
                    budgets=[tokentrail.Budget(limit_usd=0.0001, scope={"customer_id": "acme"}, action="raise")])
    for _ in range(5):  # no customer: out of scope, never refused
        with tokentrail.track_llm_call("openai", "tiny-model") as span:
            span.set_tokens(input=10, output=0)
    with tokentrail.attributes(customer_id="acme"):
        outcomes = []
        for _ in range(4):
            try:
                with tokentrail.track_llm_call("openai", "tiny-model") as span:
                    span.set_tokens(input=10, output=0)
                outcomes.append("ok")
            except tokentrail.BudgetExceeded:
                outcomes.append("refused")
    assert outcomes == ["ok", "ok", "refused", "refused"]
