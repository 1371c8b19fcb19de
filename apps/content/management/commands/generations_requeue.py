"""``manage.py generations_requeue``: one pass of the generation sweeper, by hand."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.content.sweeper import generations_sweep
from shardrouter.errors import ScatterGatherError


class Command(BaseCommand):
    help = (
        "Send a job again for each generation that nothing will run by itself: queued with its job overdue "
        "(the message was lost: broker down or restarted) or running under an expired claim (its worker was "
        "killed). Every Celery worker already does this every CONTENTGEN_SWEEP_INTERVAL_SECONDS; the defaults "
        "here are the sweeper's. Safe to re-run: a job claims its generation before it works."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        default = float(settings.CONTENTGEN["SWEEP_OVERDUE_SECONDS"])
        parser.add_argument(
            "--queued-for",
            type=float,
            default=default,
            help=f"seconds a queued generation's job must be overdue to count as stalled (default {default:g}, "
            "CONTENTGEN_SWEEP_OVERDUE_SECONDS, as the sweeper)",
        )
        parser.add_argument("--limit", type=int, default=10_000, help="at most this many generations (default 10000)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be queued; send nothing")
        parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")

    def handle(self, *args: Any, queued_for: float, limit: int, dry_run: bool, format: str, **options: Any) -> None:
        if queued_for < 0 or limit < 1:
            raise CommandError("--queued-for must be at least 0 and --limit at least 1.")
        started = time.monotonic()
        try:
            report = generations_sweep(
                overdue_for=timedelta(seconds=queued_for), limit=limit, dry_run=dry_run, allow_partial=False
            )
        except ScatterGatherError as exc:
            raise CommandError(f"Could not read every shard ({exc}); fix the database and run again.") from exc
        elapsed = time.monotonic() - started
        if format == "json":
            self.stdout.write(
                json.dumps(
                    {
                        "stalled": [
                            {"id": str(item.generation_id), "user_id": item.user_id, "status": item.status}
                            for item in report.stalled
                        ],
                        "queued": report.redispatched,
                        "dry_run": dry_run,
                        "elapsed_seconds": round(elapsed, 3),
                    }
                )
            )
            return
        self.stdout.write(
            f"{len(report.stalled)} stalled generation(s) (queued with a job overdue by > {queued_for:g} s, "
            f"or claims older than {settings.CONTENTGEN['CLAIM_LEASE_SECONDS']} s)."
        )
        if dry_run or options["verbosity"] >= 2:
            for item in report.stalled:
                self.stdout.write(f"  {item.generation_id} user={item.user_id} {item.status}")
        if dry_run:
            self.stdout.write(self.style.WARNING(f"Dry run: would queue {len(report.stalled)} job(s)."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Queued {report.redispatched} job(s) in {elapsed:.1f} s."))
