"""The seeded accounts simulated users log in as (``manage.py seed_load_users`` creates them).

Accounts are handed out round-robin from one pool per Locust environment, so
concurrent users get different accounts and, because the seeding places
account n on shard ``(n - 1) % shards``, every shard gets a share of the load.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from locust.env import Environment


@dataclass(frozen=True)
class Account:
    username: str
    password: str


class AccountPool:
    """Round-robin over ``{prefix}1 .. {prefix}{count}``, starting at ``offset``."""

    def __init__(self, *, prefix: str, count: int, password: str, offset: int = 0) -> None:
        if count < 1:
            raise ValueError(f"the account pool needs at least one account, got count={count}")
        self.prefix = prefix
        self.count = count
        self.password = password
        self._next = itertools.count(offset)

    def take(self) -> Account:
        n = next(self._next) % self.count + 1
        return Account(f"{self.prefix}{n}", self.password)


# One pool per Locust environment (tests create several environments in one process).
_pools: weakref.WeakKeyDictionary[Environment, AccountPool] = weakref.WeakKeyDictionary()


def pool_for(environment: Environment, *, prefix: str, count: int, password: str) -> AccountPool:
    """The environment's pool, created on first use; a distributed worker starts at its own offset."""
    pool = _pools.get(environment)
    if pool is None or (pool.prefix, pool.count) != (prefix, count):
        worker_index = getattr(environment.runner, "worker_index", 0) or 0
        # Spread workers over the pool so two workers do not start on the same accounts.
        offset = (worker_index * 7919) % count
        pool = AccountPool(prefix=prefix, count=count, password=password, offset=offset)
        _pools[environment] = pool
    return pool
