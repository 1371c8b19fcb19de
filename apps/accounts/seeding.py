"""Load-test accounts: seeded users on every shard, with history and (when the API is installed) API tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.apps import apps
from django.contrib.auth.models import User

from apps.content.models import Generation
from apps.content.seeding import generations_seed_history

from .services import seed_targets, users_seed_iter

TOKENS_APP = "apps.security"
LOAD_TOKEN_NAME = "load test"


@dataclass(frozen=True)
class SeededLoadUser:
    username: str
    user_id: int
    alias: str
    user_created: bool
    generations_created: int
    token_created: bool


@dataclass(frozen=True)
class LoadSeedPlan:
    users_existing: int
    users_missing: int
    new_users_by_alias: dict[str, int]
    generations_missing: int


def load_users_plan(*, prefix: str, count: int, generations_per_user: int) -> LoadSeedPlan:
    """What ``load_users_seed`` would create, without changing anything (for ``--dry-run``)."""
    targets = seed_targets()
    existing = dict(User.objects.filter(username__startswith=prefix).values_list("username", "id"))
    new_by_alias: dict[str, int] = {}
    generations_missing = 0
    found = 0
    for n in range(1, count + 1):
        user_id = existing.get(f"{prefix}{n}")
        if user_id is None:
            alias = targets[(n - 1) % len(targets)][0]
            new_by_alias[alias] = new_by_alias.get(alias, 0) + 1
            generations_missing += generations_per_user
            continue
        found += 1
        have = Generation.objects.for_user(user_id).count()
        generations_missing += max(generations_per_user - have, 0)
    return LoadSeedPlan(
        users_existing=found,
        users_missing=count - found,
        new_users_by_alias=new_by_alias,
        generations_missing=generations_missing,
    )


def api_tokens_available() -> bool:
    """Whether the API token app is installed in this deployment (checked at run time, not assumed)."""
    return apps.is_installed(TOKENS_APP)


def api_token_ensure(*, user: User) -> bool:
    """Give ``user`` an active API token named "load test" if they have none; True when one was created.

    Only a hash is stored, so the key is not kept: load tests get their keys from ``POST /api/v1/auth/token/``.
    """
    from apps.security.tokens import api_token_create, api_tokens_of

    if api_tokens_of(user_id=user.pk).filter(name=LOAD_TOKEN_NAME).exists():
        return False
    api_token_create(user_id=user.pk, name=LOAD_TOKEN_NAME)
    return True


def load_users_seed(
    *, prefix: str, count: int, password: str, generations_per_user: int, tokens: bool
) -> Iterator[SeededLoadUser]:
    """Ensure ``count`` load-test users ``{prefix}1..{prefix}{count}`` exist, one at a time.

    Users are spread round-robin over the shard map's write databases (see
    ``users_seed_iter``); each gets ``generations_per_user`` finished
    generations and, with ``tokens``, an API token. Everything is topped up,
    never duplicated, so re-running is safe and fast.
    """
    for seeded in users_seed_iter(prefix=prefix, count=count, password=password):
        created_generations = generations_seed_history(user_id=seeded.user.id, count=generations_per_user)
        token_created = api_token_ensure(user=seeded.user) if tokens else False
        yield SeededLoadUser(
            username=seeded.user.username,
            user_id=seeded.user.id,
            alias=seeded.alias,
            user_created=seeded.created,
            generations_created=created_generations,
            token_created=token_created,
        )
