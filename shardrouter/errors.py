"""Exceptions raised by shardrouter; each message says what to do next."""

from __future__ import annotations


class ShardRouterError(Exception):
    """Base class for shardrouter errors."""


class ShardRoutingError(ShardRouterError):
    """A query on a sharded model had nothing to route it: no .using(), instance, for_user() or context."""


class ShardMapError(ShardRouterError):
    """A shard map is invalid (gap, overlap, unknown alias) or could not be loaded."""


class ShardMapConflict(ShardMapError):
    """The map changed between reading it and writing the new version."""


class ShardWriteUnavailable(ShardRouterError):
    """A write stayed refused (range frozen or moved) for longer than the write buffer allows."""


class ClockMovedBackwardsError(ShardRouterError):
    """The system clock went backwards; issuing IDs now could repeat or misorder them."""


class ScatterGatherError(ShardRouterError):
    """One or more shards failed during a cross-shard read."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        detail = "; ".join(f"{alias}: {error}" for alias, error in sorted(failures.items()))
        super().__init__(
            f"Cross-shard read failed on {len(failures)} database(s): {detail}. "
            "Retry, or pass allow_partial=True to accept results from the shards that answered."
        )


class MigrationRefused(ShardRouterError):
    """``migrate_shards`` will not apply these migrations now (for example while a live move needs the tables)."""
