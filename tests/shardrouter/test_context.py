"""The shard context never leaks: not across threads, asyncio tasks, requests or Celery tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shardrouter.context import clear_shard_context, current_shard_key, shard_for


def test_the_context_is_reset_when_the_block_ends_even_on_error() -> None:
    with pytest.raises(RuntimeError):
        with shard_for(7):
            assert current_shard_key() == 7
            raise RuntimeError("boom")
    assert current_shard_key() is None


def test_nested_contexts_restore_the_outer_one() -> None:
    with shard_for(1):
        with shard_for(2):
            assert current_shard_key() == 2
        assert current_shard_key() == 1


def test_a_context_set_in_one_thread_is_invisible_to_another() -> None:
    seen: dict[str, int | None] = {}
    inside = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with shard_for(111):
            inside.set()
            release.wait(5)
            seen["holder"] = current_shard_key()

    def observer() -> None:
        inside.wait(5)
        seen["observer"] = current_shard_key()
        release.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=observer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {"holder": 111, "observer": None}
    assert current_shard_key() is None


def test_concurrent_asyncio_tasks_each_keep_their_own_context() -> None:
    async def task(user_id: int, results: dict[int, list[int | None]]) -> None:
        with shard_for(user_id):
            for _ in range(5):
                await asyncio.sleep(0)  # interleave with the other tasks
                results[user_id].append(current_shard_key())
        results[user_id].append(current_shard_key())

    async def main() -> dict[int, list[int | None]]:
        results: dict[int, list[int | None]] = {1: [], 2: [], 3: []}
        await asyncio.gather(*(task(uid, results) for uid in results))
        return results

    results = asyncio.run(main())
    for user_id, keys in results.items():
        assert keys == [user_id] * 5 + [None]


def test_a_child_task_does_not_change_its_parents_context() -> None:
    async def child() -> None:
        with shard_for(2):
            await asyncio.sleep(0)

    async def parent() -> int | None:
        with shard_for(1):
            await asyncio.create_task(child())
            return current_shard_key()

    assert asyncio.run(parent()) == 1


def test_clearing_forgets_a_context_left_behind_by_a_task() -> None:
    from shardrouter.context import _current_key

    _current_key.set(99)  # what a buggy task might leave behind without a with-block
    clear_shard_context()
    assert current_shard_key() is None
