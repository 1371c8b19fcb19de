"""``manage.py copy_sessions_to_redis``: carry database sessions over, so switching the engine logs nobody out."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisClusterException, RedisError

from apps.platform.selectors import db_session_batches, db_session_count
from apps.platform.services import SessionCopyTally, sessions_copy_batch


class Command(BaseCommand):
    help = (
        "Copy the valid sessions of the django_session table (control database) into the Redis session store "
        "with their expiry. Safe to re-run: sessions copied before, or already in Redis, are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be copied; write nothing.")
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Sessions read and written per round trip (default 1000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        dry_run: bool = options["dry_run"]
        self.verbosity: int = options["verbosity"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        alias = settings.SESSION_CACHE_ALIAS
        if alias not in settings.CACHES:
            raise CommandError(
                f"There is no {alias!r} cache to copy into: set SESSION_REDIS_URL (or SESSION_REDIS_SENTINELS, or SESSION_REDIS_CLUSTER_NODES) "
                "to the session store's Redis and run again."
            )
        self.stopping = False
        # Finish the current batch on SIGTERM (a deploy stopping the job), then report; main thread only.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._stop) if in_main_thread else None
        try:
            tally, total, elapsed = self._copy(alias=alias, batch_size=batch_size, dry_run=dry_run)
        except (RedisError, RedisClusterException, ConnectionInterrupted) as exc:
            raise CommandError(
                f"The session store did not answer ({exc}). Check SESSION_REDIS_URL / SESSION_REDIS_SENTINELS / SESSION_REDIS_CLUSTER_NODES and "
                "that Redis is up, then run again: sessions copied so far are skipped."
            ) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(f"Reading django_session failed ({exc}). Check DATABASE_URL and run again.") from exc
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        self._summary(tally, total, elapsed, dry_run)
        if self.stopping:
            raise CommandError("Stopped by SIGTERM before the end; run again to copy the rest.")

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _copy(self, *, alias: str, batch_size: int, dry_run: bool) -> tuple[SessionCopyTally, int, float]:
        now = timezone.now()
        total = db_session_count(now=now)
        started = time.monotonic()
        tally = SessionCopyTally()
        if self.verbosity >= 1:
            verb = "Checking" if dry_run else "Copying"
            self.stdout.write(f"{verb} {total:,} valid database sessions into cache {alias!r} ...")
        for batch in db_session_batches(now=now, batch_size=batch_size):
            tally.add(sessions_copy_batch(sessions=batch, now=now, cache_alias=alias, dry_run=dry_run))
            self._progress(tally.seen, total, time.monotonic() - started)
            if self.stopping:
                break
        return tally, total, time.monotonic() - started

    def _progress(self, done: int, total: int, elapsed: float) -> None:
        if self.verbosity < 1:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = max(total - done, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        self.stdout.write(f"  {done:,}/{total:,} sessions  {rate:,.0f}/s  elapsed {elapsed:.1f}s  ETA {eta}")

    def _summary(self, tally: SessionCopyTally, total: int, elapsed: float, dry_run: bool) -> None:
        copied = "would be copied" if dry_run else "copied"
        lines = [
            f"{tally.copied:,} {copied}",
            f"{tally.copied_before:,} copied by an earlier run (left alone, so a logout since then holds)",
            f"{tally.already_in_redis:,} already in Redis (kept: the Redis copy is the newer one)",
            f"{tally.unreadable:,} unreadable (bad signature or corrupt data) skipped",
            f"{tally.expired:,} expired during the run skipped",
        ]
        self.stdout.write(
            self.style.SUCCESS(f"{'Dry run: ' if dry_run else ''}{tally.seen:,}/{total:,} sessions in {elapsed:.1f}s")
        )
        for line in lines:
            self.stdout.write(f"  {line}")
