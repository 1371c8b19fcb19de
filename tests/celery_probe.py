"""Tasks a real Celery worker runs in the context-isolation test (loaded with ``worker -I``)."""

from __future__ import annotations

from django.core.cache import cache

from quantumquill.celery import app
from shardrouter.context import _current_key, current_shard_key


@app.task(name="tests.leave_context_behind")
def leave_context_behind(user_id: int) -> None:
    # What a buggy task does: set the context and never reset it.
    _current_key.set(user_id)
    cache.set("probe:left", current_shard_key(), 60)


@app.task(name="tests.report_context")
def report_context(tag: str) -> None:
    cache.set(f"probe:{tag}", repr(current_shard_key()), 60)
