"""Reads about the shard map's balance (the advisor); nothing here writes."""

from __future__ import annotations

from .advisor import Advice, advise, choose_databases
from .conf import get_settings
from .mapstore import load_map_from_database
from .stats import user_weights


def shardmap_advise(*, shards: int | None, by: str, window_seconds: float = 3600) -> Advice:
    """Moves that would even the load by ``by`` over ``shards`` databases; reads only, changes nothing."""
    base = load_map_from_database()
    config = get_settings()
    databases = choose_databases(base.ranges, sorted(config.shard_databases), shards, control=config.control_database)
    weights = user_weights(base.ranges, by=by, window_seconds=window_seconds)
    return advise(ranges=base.ranges, weights=weights, databases=databases, by=by)
