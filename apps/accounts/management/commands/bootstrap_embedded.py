"""``manage.py bootstrap_embedded``: the embedded stack's first-start data (shard map and demo users)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser

from apps.accounts.services import users_seed
from apps.content.services import generation_create
from shardrouter.keyspace import parse_map_text
from shardrouter.mapstore import apply_map, load_map_from_database

DEMO_PASSWORD = "quantumquill-demo"
DEMO_PROMPTS = [
    "Write a short product description for a solar-powered kettle.",
    "Summarise why databases are sharded by user ID.",
]


class Command(BaseCommand):
    help = (
        "Prepare a fresh embedded stack: spread the shard map over the embedded shards (only while the map is "
        "still the initial monolith map and no user exists) and seed demo users. Safe to re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=4, help="demo users to create (default 4)")
        parser.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")

    def handle(self, *args: Any, users: int, dry_run: bool, **options: Any) -> None:
        wanted = os.environ.get("QQ_EMBEDDED_SHARD_MAP", "")
        current = load_map_from_database()
        if wanted and current.version == 1 and not User.objects.exists():
            ranges = parse_map_text(wanted)
            self.stdout.write(f"Shard map v1 (monolith) -> {wanted}")
            if not dry_run:
                apply_map(ranges, expected_version=1, reason="embedded stack: initial shard map")
        else:
            self.stdout.write(f"Shard map v{current.version} kept: {current.to_text()}")
        if dry_run:
            self.stdout.write(f"Dry run: would ensure {users} demo users (demo1..demo{users}).")
            return
        for seeded in users_seed(prefix="demo", count=users, password=DEMO_PASSWORD):
            if seeded.created:
                for prompt in DEMO_PROMPTS:
                    generation_create(user_id=seeded.user.id, prompt=prompt)
            state = "created" if seeded.created else "exists"
            self.stdout.write(f"  {seeded.user.username:<8} id={seeded.user.id:<6} shard={seeded.alias:<8} {state}")
        self.stdout.write(self.style.SUCCESS(f"Demo users ready; log in as demo1 / {DEMO_PASSWORD}."))
