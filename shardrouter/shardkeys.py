"""Which models are sharded, and by which attribute: the shard-key helpers every layer uses.

A small module of its own so that the managers (imported by the models) need not import the router, which
imports the shard map: the import graph of ``shardrouter`` stays acyclic.
"""

from __future__ import annotations

from django.apps import apps
from django.db import models

from .errors import ShardRoutingError


def shard_key_attname(model: type[models.Model]) -> str | None:
    """The attribute holding a model's shard key, or None if the model is not sharded."""
    key = getattr(model, "shard_key", None)
    return key if isinstance(key, str) else None


def require_shard_key(model: type[models.Model]) -> str:
    """The shard key attribute of a sharded model (raises ShardRoutingError for any other model)."""
    attname = shard_key_attname(model)
    if attname is None:
        raise ShardRoutingError(f"{model._meta.label} is not sharded (it has no shard_key).")
    return attname


def sharded_models() -> list[type[models.Model]]:
    """Every installed model that carries a shard key."""
    return [m for m in apps.get_models() if shard_key_attname(m) is not None]
