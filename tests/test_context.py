import asyncio
import contextvars
import threading

import pytest

import tokentrail
from tokentrail.context import current_attributes


def test_nested_attributes_merge_and_inner_wins():
    with tokentrail.attributes(user_id="u1", customer_id="acme", tags=["a"], team="x") as outer:
        assert outer["user_id"] == "u1"
        with tokentrail.attributes(user_id="u2", feature="search", tags="b", region="eu"):
            attrs = current_attributes()
            assert attrs["user_id"] == "u2"
            assert attrs["customer_id"] == "acme"
            assert attrs["feature"] == "search"
            assert attrs["tags"] == ("a", "b")
            assert attrs["metadata"] == {"team": "x", "region": "eu"}
        assert current_attributes()["user_id"] == "u1"
    assert current_attributes() == {}


def test_non_string_ids_become_strings():
    with tokentrail.attributes(user_id=42):
        assert current_attributes()["user_id"] == "42"


def test_asyncio_tasks_keep_their_own_attribution():
    async def one(user):
        with tokentrail.attributes(user_id=user):
            await asyncio.sleep(0.01)
            return current_attributes()["user_id"]

    async def main():
        return await asyncio.gather(*(one(f"u{i}") for i in range(5)))

    assert asyncio.run(main()) == [f"u{i}" for i in range(5)]


def test_threads_see_attribution_only_in_a_copied_context():
    seen = {}
    with tokentrail.attributes(user_id="u1"):
        ctx = contextvars.copy_context()
        plain = threading.Thread(target=lambda: seen.update(plain=current_attributes().get("user_id")))
        copied = threading.Thread(target=lambda: ctx.run(lambda: seen.update(copied=current_attributes().get("user_id"))))
        plain.start(), copied.start()
        plain.join(), copied.join()
    assert seen == {"plain": None, "copied": "u1"}


def test_attributes_as_decorator_sync_and_async():
    @tokentrail.attributes(feature="summarize")
    def sync():
        return current_attributes()["feature"]

    @tokentrail.attributes(feature="translate")
    async def coro():
        return current_attributes()["feature"]

    assert sync() == "summarize"
    assert asyncio.run(coro()) == "translate"
    assert current_attributes() == {}


def test_same_attributes_object_reentered():
    block = tokentrail.attributes(user_id="u1")
    with block:
        with block:
            assert current_attributes()["user_id"] == "u1"
        assert current_attributes()["user_id"] == "u1"
    assert current_attributes() == {}


def test_workflow_name_is_required():
    with pytest.raises(ValueError, match="non-empty name"):
        tokentrail.workflow("")


def test_decorated_generator_finished_in_another_context_does_not_raise():
    @tokentrail.attributes(user_id="u-gen")
    def numbers():
        yield current_attributes()["user_id"]
        yield 2

    gen = numbers()
    assert next(gen) == "u-gen"  # the block is entered here...
    assert contextvars.copy_context().run(lambda: list(gen)) == [2]  # ...and left in another context
