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
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder

from shardrouter.errors import MigrationRefused
from shardrouter.migrating import ON_DDL_CHOICES, MigrationSchedule, migration_coordinator

_APPLYING = re.compile(r"Applying (\S+)\.\.\.")


@dataclass
class DatabaseOutcome:
    alias: str
    planned: int
    applied: int = 0
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False  # not started: an earlier wave failed


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
        parser.add_argument(
            "--on-ddl",
            choices=ON_DDL_CHOICES,
            default="refuse",
            help="what to do when a migration would break a live data move: refuse (default: change nothing and "
            "say why) or stop (pause the move at a safe point, migrate, then restart its copy)",
        )

    def progress(self, line: str) -> None:
        with self._lock:
            self.stdout.write(line)

    def handle(
        self, *args: Any, databases: list[str] | None, plan: bool, parallel: int, on_ddl: str, **options: Any
    ) -> None:
        self._lock = threading.Lock()
        aliases = databases or list(settings.DATABASES)
        unknown = sorted(set(aliases) - set(settings.DATABASES))
        if unknown:
            raise CommandError(
                f"Unknown database alias(es): {', '.join(unknown)}. Configured: {', '.join(settings.DATABASES)}."
            )
        if parallel < 1:
            raise CommandError("--parallel must be at least 1.")
        plans = {alias: self._plan(alias) for alias in aliases}
        outcomes = {alias: DatabaseOutcome(alias, len(steps)) for alias, steps in plans.items()}
        try:
            schedule = migration_coordinator()(plans, on_ddl=on_ddl, dry_run=plan, say=self.progress)
        except MigrationRefused as exc:
            raise CommandError(str(exc)) from exc
        for note in schedule.notes:
            self.stdout.write(note)
        if plan:
            for outcome in outcomes.values():
                self.stdout.write(f"  {outcome.alias}: {outcome.planned} migration(s) to apply")
            return
        # Build the recorder's model class once, before threads race to create it.
        MigrationRecorder(connections["default"]).Migration  # noqa: B018
        started = time.monotonic()
        self._run(schedule, outcomes, parallel, started)
        self._summary(outcomes, time.monotonic() - started)
        try:
            schedule.finish()
        except MigrationRefused as exc:
            raise CommandError(str(exc)) from exc

    def _run(
        self, schedule: MigrationSchedule, outcomes: dict[str, DatabaseOutcome], parallel: int, started: float
    ) -> None:
        """Migrate the databases wave by wave; a failed wave leaves the later ones untouched."""
        try:
            schedule.prepare()
        except MigrationRefused as exc:
            raise CommandError(str(exc)) from exc
        waves = [[alias for alias in wave if alias in outcomes] for wave in schedule.waves]
        waves = [wave for wave in waves if wave]
        total = sum(len(wave) for wave in waves)
        self.stdout.write(
            self.style.MIGRATE_HEADING(
                f"Migrating {total} database(s), {min(parallel, total)} at a time"
                + (f", in {len(waves)} waves" if len(waves) > 1 else "")
            )
        )
        for number, wave in enumerate(waves, start=1):
            if any(o.error for o in outcomes.values()):
                for alias in wave:
                    outcomes[alias].skipped = True
                continue
            if len(waves) > 1:
                self.progress(f"Wave {number}/{len(waves)}: {', '.join(wave)}")
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="migrate") as pool:
                for future in [pool.submit(self._migrate, outcomes[alias], started) for alias in wave]:
                    future.result()

    def _plan(self, alias: str) -> list[tuple[Migration, bool]]:
        try:
            executor = MigrationExecutor(connections[alias])
            return executor.migration_plan(executor.loader.graph.leaf_nodes())
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
            elif outcome.skipped:
                status = self.style.WARNING("not started")
            elif outcome.planned == 0:
                status = "up to date"
            else:
                status = self.style.SUCCESS(f"applied {outcome.applied}")
            self.stdout.write(f"  {outcome.alias:<12} {status:<20} {outcome.seconds:6.1f}s")
        failed = [o.alias for o in outcomes.values() if o.error]
        if failed:
            skipped = [o.alias for o in outcomes.values() if o.skipped]
            later = f" ({', '.join(skipped)} not started: they come after it)" if skipped else ""
            raise CommandError(
                f"Migration failed on {', '.join(failed)}{later}; fix the error above and re-run (finished databases "
                "are kept)."
            )
        self.stdout.write(self.style.SUCCESS(f"All {len(outcomes)} database(s) migrated in {total:.1f}s."))
