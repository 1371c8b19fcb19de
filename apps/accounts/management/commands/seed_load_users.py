"""``manage.py seed_load_users``: the accounts the load tests log in as, spread over every shard."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from apps.accounts.seeding import api_tokens_available, load_users_plan, load_users_seed
from shardrouter.errors import ShardRouterError

# Well known on purpose: the load generator logs in with it. Shared environments set QQ_LOAD_PASSWORD.
DEFAULT_LOAD_PASSWORD = "quantumquill-load"
PASSWORD_ENV = "QQ_LOAD_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create (or top up) N load-test users named PREFIX1..PREFIXN, placed round-robin on every shard of the "
        "current map, each with finished generations to list and open, and an API token when "
        "the API token app is installed. Safe to re-run: existing users and data are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=200, help="how many users (default 200)")
        parser.add_argument("--prefix", default="load", help="username prefix (default 'load': load1, load2, ...)")
        parser.add_argument(
            "--generations-per-user",
            type=int,
            default=5,
            help="finished generations each user should have (default 5; existing ones count)",
        )
        parser.add_argument(
            "--password",
            default=None,
            help=f"password of new users (default: ${PASSWORD_ENV}, else '{DEFAULT_LOAD_PASSWORD}')",
        )
        parser.add_argument("--dry-run", action="store_true", help="show what would be created; change nothing")

    def handle(self, *args: Any, users: int, prefix: str, generations_per_user: int, **options: Any) -> None:
        if users < 1 or generations_per_user < 0:
            raise CommandError("--users must be at least 1 and --generations-per-user at least 0.")
        if not prefix.isidentifier():
            raise CommandError(f"--prefix {prefix!r} must be letters, digits and underscores (e.g. 'load').")
        password = options["password"] or os.environ.get(PASSWORD_ENV) or DEFAULT_LOAD_PASSWORD
        tokens = api_tokens_available()
        try:
            if options["dry_run"]:
                self._dry_run(prefix, users, generations_per_user, tokens)
            else:
                self._seed(prefix, users, password, generations_per_user, tokens, options["verbosity"])
        except (DatabaseError, ShardRouterError) as exc:
            raise CommandError(
                f"Seeding failed: {exc}. Check that every database in the shard map is up "
                "(`manage.py shardmap show`; with the embedded stack, `make run` or `python -m quantumquill.devstack up`)."
            ) from exc
        except ValueError as exc:
            raise CommandError(f"{exc} Use another --prefix or fewer --users.") from exc

    def _dry_run(self, prefix: str, users: int, generations: int, tokens: bool) -> None:
        plan = load_users_plan(prefix=prefix, count=users, generations_per_user=generations)
        placement = ", ".join(f"{alias}: {n}" for alias, n in sorted(plan.new_users_by_alias.items())) or "none"
        self.stdout.write(
            f"Dry run: {plan.users_existing} of {users} users exist; would create {plan.users_missing} "
            f"(per shard: {placement}) and {plan.generations_missing} generations."
        )
        self.stdout.write(
            "API tokens: would be ensured for every user."
            if tokens
            else "API tokens: the API token app (apps.security) is not installed; none would be created."
        )

    def _seed(self, prefix: str, users: int, password: str, generations: int, tokens: bool, verbosity: int) -> None:
        if password == DEFAULT_LOAD_PASSWORD and verbosity >= 1:
            self.stdout.write(
                self.style.WARNING(
                    f"New users get the well-known load-test password; set ${PASSWORD_ENV} on shared environments."
                )
            )
        started = time.monotonic()
        last_report = started
        per_alias: Counter[str] = Counter()
        created_users = created_generations = created_tokens = 0
        seeded = load_users_seed(
            prefix=prefix, count=users, password=password, generations_per_user=generations, tokens=tokens
        )
        for done, item in enumerate(seeded, start=1):
            per_alias[item.alias] += 1
            created_users += item.user_created
            created_generations += item.generations_created
            created_tokens += item.token_created
            now = time.monotonic()
            if verbosity >= 1 and (now - last_report >= 1.0 or done == users):
                last_report = now
                self.stdout.write(self._progress(done, users, now - started))
        placement = ", ".join(f"{alias}: {n}" for alias, n in sorted(per_alias.items()))
        token_note = f"{created_tokens} API tokens created" if tokens else "no API tokens (token app not installed)"
        self.stdout.write(
            self.style.SUCCESS(
                f"{users} load users ready ({created_users} created, {users - created_users} existing; "
                f"{placement}); {created_generations} generations created; {token_note}; "
                f"{time.monotonic() - started:.1f}s."
            )
        )

    @staticmethod
    def _progress(done: int, total: int, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        return f"  {done}/{total} users ({100 * done // total}%)  {rate:.1f} users/s  ETA {eta:.0f}s"
