import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import tokentrail
from tokentrail.sinks.memory import InMemorySink


def record_one(model="gpt-4o"):
    with tokentrail.track_llm_call("openai", model) as span:
        span.set_tokens(input=1, output=1)


def stored(url):
    return tokentrail.open_store(url).calls(limit=None)


def test_init_records_to_the_store_and_returns_tracker(db_url):
    tracker = tokentrail.init(db_url)
    assert isinstance(tracker, tokentrail.Tracker) and tokentrail.is_tracking()
    record_one()
    assert tokentrail.flush(5)
    assert len(stored(db_url)) == 1
    assert tracker.stats()["written"] == 1 and tracker.stats()["dropped"] == 0
    assert tokentrail.get_active_sink() is tracker.store


def test_default_store_is_tokentrail_db_in_the_working_directory(tmp_path):
    tokentrail.init()
    record_one()
    assert tokentrail.flush(5)
    assert (tmp_path / "tokentrail.db").exists()


def test_untrack_makes_calls_pass_through_and_track_resumes(db_url):
    tokentrail.init(db_url)
    tokentrail.untrack()
    assert not tokentrail.is_tracking()
    record_one()
    tokentrail.track()
    record_one("gpt-4o-mini")
    assert tokentrail.flush(5)
    assert [c.request_model for c in stored(db_url)] == ["gpt-4o-mini"]


def test_track_sink_replaces_the_store_until_untrack(db_url):
    tokentrail.init(db_url)
    sink = InMemorySink()
    tokentrail.track(sink)
    assert tokentrail.get_active_sink() is sink
    record_one()
    assert tokentrail.flush(5)
    assert len(sink.calls) == 1 and stored(db_url) == []
    with pytest.raises(TypeError, match="export"):
        tokentrail.track(object())


def test_tracking_sink_replaces_store_only_inside_the_block(db_url):
    tokentrail.init(db_url)
    sink = InMemorySink()
    with tokentrail.tracking(sink) as log:
        assert tokentrail.get_active_sink() is sink
        record_one()
    record_one("outside")
    assert tokentrail.flush(5)
    assert len(log.calls) == 1 and len(sink.calls) == 1
    assert [c.request_model for c in stored(db_url)] == ["outside"]


def test_tracking_without_sink_also_writes_the_store(db_url):
    tokentrail.init(db_url)
    with tokentrail.tracking() as log:
        record_one()
    assert len(log.calls) == 1
    assert tokentrail.flush(5) and len(stored(db_url)) == 1


def test_tracking_records_even_after_untrack_and_nested_logs_see_inner_calls():
    tokentrail.untrack()
    with tokentrail.tracking() as outer:
        record_one("a")
        with tokentrail.tracking() as inner:
            record_one("b")
    assert [c.request_model for c in inner.calls] == ["b"]
    assert sorted(c.request_model for c in outer.calls) == ["a", "b"]
    assert not tokentrail.is_tracking()


def test_call_log_totals():
    with tokentrail.tracking() as log:
        for n in (1, 2):
            with tokentrail.track_llm_call("openai", "gpt-4o") as span:
                span.set_tokens(input=10 * n, output=n)
    assert (log.input_tokens, log.output_tokens, log.total_tokens, len(log)) == (30, 3, 33, 2)
    expected = tokentrail.cost("openai", "gpt-4o", input_tokens=30, output_tokens=3).total_usd
    assert log.total_cost_usd == pytest.approx(expected) and log.unpriced_calls == 0
    assert log.errors == []


def test_call_log_total_is_unknown_when_a_call_has_no_price():
    with tokentrail.tracking() as log:
        with tokentrail.track_llm_call("openai", "gpt-4o") as span:
            span.set_tokens(input=10, output=1)
        with tokentrail.track_llm_call("in-house", "my-model") as span:
            span.set_tokens(input=10, output=1)
    assert log.total_cost_usd is None  # unknown, not a silent 0
    assert log.unpriced_calls == 1
    assert log.priced_cost_usd == pytest.approx(tokentrail.cost("openai", "gpt-4o", input_tokens=10, output_tokens=1).total_usd)


def test_tracking_is_per_task():
    async def job(name, ms):
        with tokentrail.tracking() as log:
            await asyncio.sleep(ms / 1000)
            record_one(name)
            await asyncio.sleep(ms / 1000)
        return [c.request_model for c in log.calls]

    async def main():
        return await asyncio.gather(job("a", 5), job("b", 1))

    assert asyncio.run(main()) == [["a"], ["b"]]


def test_init_again_replaces_the_tracker(tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    tokentrail.init(first)
    record_one()
    tokentrail.init(second)
    record_one()
    assert tokentrail.flush(5)
    assert len(stored(first)) == 1 and len(stored(second)) == 1


def test_disabled_sets_nothing_up_but_returns_a_usable_tracker(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENTRAIL_ENABLED", "false")
    tracker = tokentrail.init()
    assert tracker is not None and tracker.enabled is False  # apps that use the Tracker keep working
    assert tracker.store is None and tracker.sinks == []
    assert tracker.flush(1) and tracker.stats()["written"] == 0 and tracker.shutdown(1)
    assert not tokentrail.is_tracking()
    with tokentrail.track_llm_call("openai", "gpt-4o"):
        pass
    assert not (tmp_path / "tokentrail.db").exists()


def test_an_empty_environment_variable_counts_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENTRAIL_STORE", "")
    monkeypatch.setenv("TOKENTRAIL_QUEUE_SIZE", " ")
    tracker = tokentrail.init(instrument=False)
    assert tracker.settings.store == "sqlite:///tokentrail.db" and tracker.settings.sources["store"] == "default"
    assert tracker.settings.queue_size == 100_000


def test_a_budget_limit_that_is_not_a_number_is_a_config_error():
    with pytest.raises(tokentrail.ConfigError, match=r"limit_usd must be a number > 0, not '5'"):
        tokentrail.init(store="none", budgets=[{"limit_usd": "5"}])
    with pytest.raises(tokentrail.ConfigError, match="limit_tokens"):
        tokentrail.Budget(limit_tokens="lots")


def test_exporters_jsonl_and_custom_object(db_url, tmp_path):
    custom = InMemorySink()
    tokentrail.init(db_url, exporters=[f"jsonl:{tmp_path / 'out.jsonl'}", custom])
    record_one()
    assert tokentrail.flush(5)
    assert len(custom.calls) == 1 and len(stored(db_url)) == 1
    assert '"type":"llm_call"' in (tmp_path / "out.jsonl").read_text()


def run_script(code, cwd):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_exit_without_flush_still_writes(tmp_path):
    result = run_script(
        """
        import tokentrail
        tokentrail.init()
        for _ in range(100):
            with tokentrail.track_llm_call("openai", "gpt-4o"):
                pass
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(tokentrail.open_store(f"sqlite:///{tmp_path / 'tokentrail.db'}").calls(limit=None)) == 100


def test_exit_with_a_hanging_sink_is_bounded(tmp_path):
    result = run_script(
        """
        import threading, time, tokentrail
        class Hang:
            def export(self, records):
                threading.Event().wait(60)
        tokentrail.init(store="none", exporters=[Hang()], shutdown_timeout=0.5)
        with tokentrail.track_llm_call("openai", "gpt-4o"):
            pass
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_a_fresh_worker(tmp_path):
    result = run_script(
        """
        import os, tokentrail
        tokentrail.init()
        with tokentrail.track_llm_call("openai", "parent-before"):
            pass
        tokentrail.flush(5)
        pid = os.fork()
        if pid == 0:
            with tokentrail.track_llm_call("openai", "child"):
                pass
            ok = tokentrail.flush(5)
            os._exit(0 if ok else 3)
        with tokentrail.track_llm_call("openai", "parent-after"):
            pass
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    models = sorted(c.request_model for c in tokentrail.open_store(f"sqlite:///{tmp_path / 'tokentrail.db'}").calls(limit=None))
    assert models == ["child", "parent-after", "parent-before"]


def test_out_of_range_counts_and_lone_surrogates_never_lose_a_batch(db_url, tt_warnings):
    """A count >= 2**63 or a lone surrogate made SQLite reject the whole batch, and nothing said so."""
    tracker = tokentrail.init(db_url, instrument=False)
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 2**70, "output_tokens": 5})
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"prompt_tokens": 1e25, "completion_tokens": 3})
    with tokentrail.attributes(user_id="u\ud800", feature="search"):
        with tokentrail.track_llm_call("openai", "gpt-4o\udfff") as span:
            span.set_content(output="bad \ud83d text")
            span.set_tokens(input=10, output=2)
    assert tokentrail.flush(5)
    stats = tracker.stats()
    assert stats["written"] == 3 and stats["lost"] == 0 and stats["dropped"] == 0
    calls = sorted(tokentrail.open_store(db_url).calls(limit=None), key=lambda c: c.output_tokens)
    assert [(c.input_tokens, c.output_tokens) for c in calls] == [(10, 2), (None, 3), (None, 5)]
    assert calls[0].user_id == "u\ufffd" and calls[0].request_model == "gpt-4o\ufffd"
    assert sum("2**63-1" in m for m in tt_warnings()) >= 1


def test_stats_count_per_sink(db_url):
    class Failing:
        def export(self, records):
            raise OSError("no")

    tracker = tokentrail.init(db_url, exporters=[Failing()], flush_interval=0.01, instrument=False)
    record_one()
    assert tokentrail.flush(5) is False  # lost to the failing exporter
    sinks = tracker.stats()["sinks"]
    assert sinks[db_url]["written"] == 1 and sinks["Failing"]["failed"] == 1 and sinks["Failing"]["errors"] == 3
    assert tracker.stats()["lost"] == 1


def test_sigterm_is_handled_from_init_and_given_back_at_shutdown():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    tokentrail.init(store="none", instrument=False)
    ours = signal.getsignal(signal.SIGTERM)
    assert ours is not before and getattr(ours, "__module__", "") == "tokentrail.runtime"
    tokentrail.init(store="none", instrument=False)  # again: not wrapped twice
    assert signal.getsignal(signal.SIGTERM) is ours
    tokentrail.shutdown()
    assert signal.getsignal(signal.SIGTERM) == before
