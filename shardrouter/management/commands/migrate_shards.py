"""``manage.py migrate_shards``: migrate the control database and every shard, concurrently."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

_APPLYING = re.compile(r"Applying (\S+)\.\.\.")


@dataclass
class DatabaseOutcome:
    alias: str
    planned: int
    applied: int = 0
    seconds: float = 0.0
    error: str = ""


class _ProgressWriter:
    """Receives one database's migrate output and turns it into progress lines."""

    def __init__(self, command: Command, outcome: DatabaseOutcome, started: float) -> None:
        self.command = command
        self.outcome = outcome
        self.started = started

    def write(self, text: str) -> None:
        match = _APPLYING.search(text)
        if match:
            self.outcome.applied += 1
            elapsed = time.monotonic() - self.started
            self.command.progress(
                f"[{self.outcome.alias}] {self.outcome.applied}/{self.outcome.planned} {match.group(1)} ({elapsed:.1f}s)"
            )

    def flush(self) -> None:
        pass


class Command(BaseCommand):
    help = (
        "Apply migrations to every database at once: global apps on the control database, sharded apps on "
        "every shard. Safe to re-run: databases that are up to date are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            help="migrate only this alias (repeatable; default: every alias in DATABASES)",
        )
        parser.add_argument(
            "--plan", action="store_true", help="show how many migrations each database needs; change nothing"
        )
        parser.add_argument("--parallel", type=int, default=4, help="databases migrated at the same time (default 4)")

    def progress(self, line: str) -> None:
        with self._lock:
            self.stdout.write(line)

    def handle(self, *args: Any, databases: list[str] | None, plan: bool, parallel: int, **options: Any) -> None:
        self._lock = threading.Lock()
        aliases = databases or list(settings.DATABASES)
        unknown = sorted(set(aliases) - set(settings.DATABASES))
        if unknown:
            raise CommandError(
                f"Unknown database alias(es): {', '.join(unknown)}. Configured: {', '.join(settings.DATABASES)}."
            )
        if parallel < 1:
            raise CommandError("--parallel must be at least 1.")
        outcomes = {alias: DatabaseOutcome(alias, self._pending(alias)) for alias in aliases}
        if plan:
            for outcome in outcomes.values():
                self.stdout.write(f"  {outcome.alias}: {outcome.planned} migration(s) to apply")
            return
        # Build the recorder's model class once, before threads race to create it.
        MigrationRecorder(connections["default"]).Migration  # noqa: B018
        started = time.monotonic()
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"Migrating {len(aliases)} database(s), {min(parallel, len(aliases))} at a time")
        )
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="migrate") as pool:
            for future in [pool.submit(self._migrate, outcomes[alias], started) for alias in aliases]:
                future.result()
        self._summary(outcomes, time.monotonic() - started)

    def _pending(self, alias: str) -> int:
        try:
            executor = MigrationExecutor(connections[alias])
            return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
        except Exception as exc:
            raise CommandError(f"Cannot read the migration state of {alias!r}: {exc}") from exc
        finally:
            connections[alias].close()

    def _migrate(self, outcome: DatabaseOutcome, started: float) -> None:
        t0 = time.monotonic()
        try:
            if outcome.planned:
                call_command(
                    "migrate",
                    database=outcome.alias,
                    interactive=False,
                    verbosity=1,
                    skip_checks=True,
                    stdout=_ProgressWriter(self, outcome, started),
                )
        except Exception as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            self.progress(self.style.ERROR(f"[{outcome.alias}] failed: {outcome.error}"))
        finally:
            outcome.seconds = time.monotonic() - t0
            connections[outcome.alias].close()

    def _summary(self, outcomes: dict[str, DatabaseOutcome], total: float) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING("Summary"))
        for outcome in outcomes.values():
            if outcome.error:
                status = self.style.ERROR("FAILED")
            elif outcome.planned == 0:
                status = "up to date"
            else:
                status = self.style.SUCCESS(f"applied {outcome.applied}")
            self.stdout.write(f"  {outcome.alias:<12} {status:<20} {outcome.seconds:6.1f}s")
        failed = [o.alias for o in outcomes.values() if o.error]
        if failed:
            raise CommandError(
                f"Migration failed on {', '.join(failed)}; fix the error above and re-run (finished databases are kept)."
            )
        self.stdout.write(self.style.SUCCESS(f"All {len(outcomes)} database(s) migrated in {total:.1f}s."))
