"""System checks catch a mis-wired shard setup before it serves a request."""

from __future__ import annotations

import pytest
from django.core.checks import Error
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps

from shardrouter.checks import _check_sharded_model, check_configuration, check_models, check_shard_map
from shardrouter.ids import new_id
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.models import ShardedModel
from tests.conftest import ALL_DATABASES, write_map


def ids(messages: list[object]) -> set[str]:
    return {m.id for m in messages}  # type: ignore[attr-defined]


def test_the_project_as_configured_passes_every_check() -> None:
    assert check_configuration() == []
    assert check_models() == []


def test_a_missing_router_is_an_error() -> None:
    with override_settings(DATABASE_ROUTERS=[]):
        assert "shardrouter.E001" in ids(check_configuration())


def test_an_unknown_sharded_app_is_an_error() -> None:
    with override_settings(SHARDROUTER={"SHARDED_APPS": ["content", "nosuchapp"]}):
        messages = check_configuration()
    assert "shardrouter.E004" in ids(messages)
    assert any("nosuchapp" in m.msg for m in messages)


def test_context_middleware_before_authentication_is_an_error() -> None:
    from django.conf import settings

    middleware = [m for m in settings.MIDDLEWARE if "ShardContext" not in m]
    middleware.insert(0, "shardrouter.middleware.ShardContextMiddleware")
    with override_settings(MIDDLEWARE=middleware):
        assert "shardrouter.E005" in ids(check_configuration())


def test_a_long_refresh_interval_is_a_warning() -> None:
    with override_settings(SHARDROUTER={"SHARDED_APPS": ["content"], "REFRESH_INTERVAL": 60}):
        assert "shardrouter.W001" in ids(check_configuration())


@isolate_apps("apps.content")
def test_a_model_in_a_sharded_app_without_a_shard_key_is_an_error() -> None:
    class Orphan(models.Model):
        class Meta:
            app_label = "content"

    assert ids(_check_sharded_model(Orphan)) == {"shardrouter.E011"}


@isolate_apps("apps.content")
def test_a_sharded_model_with_a_sequence_key_or_a_foreign_key_is_an_error() -> None:
    from django.contrib.auth.models import User

    class Bad(models.Model):
        shard_key = "user_id"
        user = models.ForeignKey(User, on_delete=models.CASCADE)

        class Meta:
            app_label = "content"

    found = ids(_check_sharded_model(Bad))
    # user_id is a ForeignKey column (E014), the pk is an AutoField (E013), no identity constraint (E015).
    assert {"shardrouter.E013", "shardrouter.E014", "shardrouter.E015"} <= found


@isolate_apps("apps.content")
def test_a_sharded_model_whose_shard_key_is_not_an_integer_is_an_error() -> None:
    class Textual(models.Model):
        shard_key = "owner"
        id = models.BigIntegerField(primary_key=True, default=new_id)
        owner = models.CharField(max_length=10)

        class Meta:
            app_label = "content"

    assert "shardrouter.E012" in ids(_check_sharded_model(Textual))


@isolate_apps("apps.content")
def test_a_proper_sharded_model_passes() -> None:
    class Good(ShardedModel):
        class Meta(ShardedModel.Meta):
            app_label = "content"

    assert _check_sharded_model(Good) == []


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_a_stored_map_naming_an_unknown_database_is_an_error() -> None:
    assert check_shard_map(databases=["default"]) == []
    write_map([ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard9")])
    messages = check_shard_map(databases=["default"])
    assert ids(messages) == {"shardrouter.E020"}
    assert isinstance(messages[0], Error) and "shard9" in messages[0].msg
