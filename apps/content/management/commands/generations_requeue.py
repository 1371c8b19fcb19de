"""``manage.py generations_requeue``: send jobs again for generations that nothing will run by itself."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.content.claims import claim_lease
from apps.content.selectors import generations_stalled
from apps.content.services import generation_requeue
from shardrouter.errors import ScatterGatherError

PROGRESS_EVERY = 500


class Command(BaseCommand):
    help = (
        "Send a job again for each generation stuck queued (its job was lost, e.g. the broker was down when it "
        "was created) or running under an expired claim (its worker was killed). Safe to re-run and to run "
        "from cron: a job claims its generation before it works, so an extra job does nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queued-for",
            type=float,
            default=300.0,
            help="seconds a generation must have been queued untouched to count as stalled (default 300)",
        )
        parser.add_argument("--limit", type=int, default=10_000, help="at most this many generations (default 10000)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be queued; send nothing")

    def handle(self, *args: Any, queued_for: float, limit: int, dry_run: bool, **options: Any) -> None:
        if queued_for < 0 or limit < 1:
            raise CommandError("--queued-for must be at least 0 and --limit at least 1.")
        try:
            stalled = generations_stalled(
                queued_for=timedelta(seconds=queued_for), claim_lease=claim_lease(), limit=limit
            )
        except ScatterGatherError as exc:
            raise CommandError(f"Could not read every shard ({exc}); fix the database and run again.") from exc
        verbose = options["verbosity"] >= 2
        self.stdout.write(
            f"{len(stalled)} stalled generation(s) (queued > {queued_for:g} s, "
            f"or claims older than {settings.CONTENTGEN['CLAIM_LEASE_SECONDS']} s)."
        )
        started = time.monotonic()
        for done, item in enumerate(stalled, start=1):
            if verbose or dry_run:
                self.stdout.write(f"  {item.generation_id} user={item.user_id} {item.status}")
            if not dry_run:
                generation_requeue(user_id=item.user_id, generation_id=item.generation_id)
            if done % PROGRESS_EVERY == 0:
                rate = done / max(time.monotonic() - started, 1e-6)
                self.stdout.write(f"  {done}/{len(stalled)} at {rate:.0f}/s, ETA {(len(stalled) - done) / rate:.0f} s")
        if dry_run:
            self.stdout.write(self.style.WARNING(f"Dry run: would queue {len(stalled)} job(s)."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Queued {len(stalled)} job(s)."))
