"""System checks (``manage.py check``): IDs shardrouter.E001... with a hint each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import models

from .conf import get_settings
from .errors import ShardMapError
from .keyspace import validate_ranges
from .mapstore import load_map_from_database

ROUTER_PATH = "shardrouter.router.ShardRouter"
MIDDLEWARE_PATH = "shardrouter.middleware.ShardContextMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register()
def check_configuration(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    config = get_settings()
    routers = [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__name__}" for r in settings.DATABASE_ROUTERS
    ]
    if ROUTER_PATH not in routers:
        errors.append(
            Error(
                "The shard router is not installed, so sharded models would all land in 'default'.",
                hint=f"Add {ROUTER_PATH!r} to DATABASE_ROUTERS.",
                id="shardrouter.E001",
            )
        )
    if config.control_database not in settings.DATABASES:
        errors.append(
            Error(
                f"SHARDROUTER['CONTROL_DATABASE'] is {config.control_database!r}, which is not in DATABASES.",
                hint="Name the alias of the database that holds users and the shard map (usually 'default').",
                id="shardrouter.E002",
            )
        )
    unknown = sorted(config.shard_databases - set(settings.DATABASES))
    if unknown:
        errors.append(
            Error(
                f"SHARDROUTER['SHARD_DATABASES'] names unknown aliases: {', '.join(unknown)}.",
                hint="List only aliases defined in DATABASES (or leave the setting out to use all of them).",
                id="shardrouter.E003",
            )
        )
    labels = {cfg.label for cfg in apps.get_app_configs()}
    for label in sorted(config.sharded_apps - labels):
        errors.append(
            Error(
                f"SHARDROUTER['SHARDED_APPS'] names {label!r}, which is not an installed app label.",
                hint="Use the app label (the last part of the app's name), for example 'content'.",
                id="shardrouter.E004",
            )
        )
    middleware = list(settings.MIDDLEWARE)
    if MIDDLEWARE_PATH in middleware and AUTH_MIDDLEWARE in middleware:
        if middleware.index(MIDDLEWARE_PATH) < middleware.index(AUTH_MIDDLEWARE):
            errors.append(
                Error(
                    "ShardContextMiddleware runs before AuthenticationMiddleware, so it never sees the user.",
                    hint=f"Move {MIDDLEWARE_PATH!r} after {AUTH_MIDDLEWARE!r} in MIDDLEWARE.",
                    id="shardrouter.E005",
                )
            )
    if config.refresh_interval > 5:
        errors.append(
            Warning(
                f"Shard map refresh interval is {config.refresh_interval}s; processes may route on a stale map that long.",
                hint="Keep SHARDROUTER['REFRESH_INTERVAL'] at a few seconds or less (default 1).",
                id="shardrouter.W001",
            )
        )
    return errors


@register()
def check_models(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    config = get_settings()
    for model in apps.get_models():
        if model._meta.app_label not in config.sharded_apps:
            if getattr(model, "shard_key", None):
                errors.append(
                    Error(
                        f"{model._meta.label} has a shard key but its app is not in SHARDROUTER['SHARDED_APPS'], "
                        "so its table would be created only in the control database.",
                        hint=f"Add {model._meta.app_label!r} to SHARDROUTER['SHARDED_APPS'].",
                        obj=model,
                        id="shardrouter.E010",
                    )
                )
            continue
        errors.extend(_check_sharded_model(model))
    return errors


def _check_sharded_model(model: type[models.Model]) -> list[CheckMessage]:
    label = model._meta.label
    attname = getattr(model, "shard_key", None)
    if not isinstance(attname, str):
        return [
            Error(
                f"{label} is in a sharded app but has no shard key, so it cannot be routed.",
                hint="Subclass shardrouter.models.ShardedModel (or set shard_key = 'user_id' on the model).",
                obj=model,
                id="shardrouter.E011",
            )
        ]
    errors: list[CheckMessage] = []
    fields = {f.attname: f for f in model._meta.concrete_fields}
    field = fields.get(attname)
    if (
        field is None
        or not isinstance(field, (models.BigIntegerField, models.IntegerField))
        or isinstance(field, models.AutoField)
    ):
        errors.append(
            Error(
                f"{label}.shard_key is {attname!r}, which is not an integer field of the model.",
                hint="Store the owner's user ID in a BigIntegerField (not a ForeignKey) and name it in shard_key.",
                obj=model,
                id="shardrouter.E012",
            )
        )
    pk = model._meta.pk
    if isinstance(pk, models.AutoField) or pk is None or not callable(getattr(pk, "default", None)):
        errors.append(
            Error(
                f"{label}'s primary key comes from a per-database sequence; rows would collide when they move between shards.",
                hint="Use shardrouter.models.ShardedModel's id (BigIntegerField with default=shardrouter.ids.new_id).",
                obj=model,
                id="shardrouter.E013",
            )
        )
    for rel in model._meta.get_fields():
        related = getattr(rel, "related_model", None)
        if (
            rel.is_relation
            and isinstance(related, type)
            and issubclass(related, models.Model)
            and getattr(related, "shard_key", None) is None
            and getattr(rel, "concrete", False)
        ):
            errors.append(
                Error(
                    f"{label}.{rel.name} is a foreign key to {related._meta.label}, which lives in the control database; "
                    "PostgreSQL cannot enforce a key across databases.",
                    hint=f"Replace it with a plain integer field (for example {rel.name}_id = BigIntegerField()).",
                    obj=model,
                    id="shardrouter.E014",
                )
            )
    if field is not None and pk is not None and not _has_identity_constraint(model, pk.name, field.name):
        errors.append(
            Error(
                f"{label} has no unique constraint on ({pk.name}, {field.name}); live moves need it as the replica identity.",
                hint="Keep ShardedModel's Meta.constraints, or add UniqueConstraint(fields=[pk, shard key]).",
                obj=model,
                id="shardrouter.E015",
            )
        )
    return errors


def _has_identity_constraint(model: type[models.Model], pk_name: str, key_name: str) -> bool:
    wanted = {pk_name, key_name}
    for constraint in model._meta.constraints:
        if (
            isinstance(constraint, models.UniqueConstraint)
            and set(constraint.fields) == wanted
            and constraint.condition is None
        ):
            return True
    return any(set(together) == wanted for together in model._meta.unique_together)


@register(Tags.database)
def check_shard_map(
    app_configs: Iterable[Any] | None = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Runs with ``manage.py check --database default``: the stored map is valid and names known aliases."""
    config = get_settings()
    if not databases or config.control_database not in databases:
        return []
    try:
        shard_map = load_map_from_database()
        validate_ranges(shard_map.ranges, settings.DATABASES)
    except ShardMapError as exc:
        return [
            Error(
                str(exc),
                hint="Inspect it with `manage.py shardmap show` and repair it with `manage.py shardmap assign LO HI ALIAS --apply`.",
                id="shardrouter.E020",
            )
        ]
    except Exception as exc:
        return [
            Warning(
                f"The shard map could not be read: {exc}",
                hint="Run `manage.py migrate_shards` first.",
                id="shardrouter.W020",
            )
        ]
    return []


@register()
def check_audit(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Audit mode (SHARDROUTER['AUDIT']): say where the findings go, and what keeps the audit from working."""
    from .audit import audit_settings, audited_models

    config = audit_settings()
    if not config.enabled:
        return []
    messages: list[CheckMessage] = [
        Warning(
            "The sharding-readiness audit is on: queries that sharding would break are recorded by call site.",
            hint="Run `manage.py shardaudit report` to see them (worst first, with the fix for each), "
            "`manage.py shardaudit reset` to start a new window; set SHARDROUTER['AUDIT'] = False when done.",
            id="shardrouter.W030",
        )
    ]
    if config.map_error:
        messages.append(
            Error(
                f"SHARDROUTER['AUDIT_MAP'] is not a shard map: {config.map_error}",
                hint="Give the candidate map as 'LO:HI=ALIAS,...', for example '0:100000=shard1,100000:MAX=shard2'.",
                id="shardrouter.E031",
            )
        )
    elif config.candidate_map is None:
        messages.append(
            Warning(
                "SHARDROUTER['AUDIT_MAP'] is not set, so queries that would span several ranges cannot be found.",
                hint="Set it to the map you plan, for example '0:100000=shard1,100000:MAX=shard2'.",
                id="shardrouter.W031",
            )
        )
    if not config.sharded_apps and not config.shard_keys:
        messages.append(
            Error(
                "The audit is on but names no app or model that would be sharded.",
                hint="Set SHARDROUTER['AUDIT_SHARDED_APPS'] (app labels) or SHARDROUTER['AUDIT_SHARD_KEYS'] "
                "({'app.Model': 'owner_id'}).",
                id="shardrouter.E033",
            )
        )
    for model, key in audited_models():
        if key is None:
            messages.append(
                Warning(
                    f"{model._meta.label} would be sharded but has no user key the audit can find.",
                    hint=f"Add SHARDROUTER['AUDIT_SHARD_KEYS'] = {{{model._meta.label!r}: '<user id attribute>'}}, "
                    "or give the model a user_id field (sharded rows must carry their owner's ID).",
                    obj=model,
                    id="shardrouter.W032",
                )
            )
    return messages
