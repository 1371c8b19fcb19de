"""The current shard context: which user's shard unqualified queries on sharded models use.

It is a ``contextvars.ContextVar``, so it is private to each thread and each
asyncio task (a new task starts with a copy of its creator's context; changes
inside never flow back), and it is reset on exit from every ``with`` block,
request and Celery task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current_key: ContextVar[int | None] = ContextVar("shardrouter_current_key", default=None)
# True inside shard_for(): code that named its user on purpose (the sharding audit trusts it; the
# request middleware's context alone is not proof that a query means only that user's rows).
_named_explicitly: ContextVar[bool] = ContextVar("shardrouter_named_explicitly", default=False)
# (shard key, alias): inside run_sharded_write every query for that key uses the alias
# chosen for the transaction, even if the map is refreshed halfway through.
_write_override: ContextVar[tuple[int, str] | None] = ContextVar("shardrouter_write_override", default=None)


def validate_shard_key(value: object) -> int:
    """Coerce a user ID to int, refusing booleans, negatives and non-numbers with a clear error."""
    key: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        key = value
    elif isinstance(value, str) and value.strip().isdigit():
        key = int(value)
    if key is None:
        raise ValueError(f"A shard key must be a user ID (a non-negative integer), not {value!r}.")
    if key < 0:
        raise ValueError(f"A shard key must be a non-negative user ID, not {key}.")
    return key


def current_shard_key() -> int | None:
    """The user ID of the current context, or None outside any context."""
    return _current_key.get()


@contextmanager
def shard_for(user_id: int) -> Iterator[int]:
    """Route unqualified queries on sharded models to ``user_id``'s shard inside the block.

    Use it in tasks, commands and scripts::

        with shard_for(user_id):
            Generation.objects.filter(status="queued").count()
    """
    key = validate_shard_key(user_id)
    token = _current_key.set(key)
    explicit = _named_explicitly.set(True)
    try:
        yield key
    finally:
        _named_explicitly.reset(explicit)
        _current_key.reset(token)


def named_explicitly() -> bool:
    """True inside ``shard_for()`` (not merely inside a request the middleware gave a context)."""
    return _named_explicitly.get() and _current_key.get() is not None


@contextmanager
def no_shard_context() -> Iterator[None]:
    """Clear the context inside the block (for code that must not inherit a user's shard)."""
    token = _current_key.set(None)
    explicit = _named_explicitly.set(False)
    try:
        yield
    finally:
        _named_explicitly.reset(explicit)
        _current_key.reset(token)


def clear_shard_context() -> None:
    """Forget any context left in this thread (Celery calls it before and after every task)."""
    _current_key.set(None)
    _named_explicitly.set(False)
    _write_override.set(None)


def write_override_for(key: int) -> str | None:
    override = _write_override.get()
    if override is not None and override[0] == key:
        return override[1]
    return None


@contextmanager
def pinned_write_alias(key: int, alias: str) -> Iterator[None]:
    token = _write_override.set((key, alias))
    try:
        yield
    finally:
        _write_override.reset(token)
