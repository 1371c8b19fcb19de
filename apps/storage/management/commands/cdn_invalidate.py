"""``manage.py cdn_invalidate PATH...``: drop paths from CloudFront's edge caches, optionally waiting for it."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.storage.cdn import (
    InvalidationError,
    InvalidationStatus,
    caller_reference_for,
    cloudfront_client,
    invalidation_create,
    invalidation_paths_clean,
    invalidation_wait,
    paths_never_stale,
)


class Command(BaseCommand):
    help = (
        "Invalidate paths on the CloudFront distribution in front of the site (QQ_CLOUDFRONT_DISTRIBUTION_ID). "
        "Only unhashed paths ever need it: hashed static names and versioned exports change URL with content."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="+", metavar="PATH", help="Path to invalidate, e.g. /static/robots.txt or /static/img/*."
        )
        parser.add_argument(
            "--distribution-id", default="", help="CloudFront distribution ID (default: QQ_CLOUDFRONT_DISTRIBUTION_ID)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check and show the request without sending it.")
        parser.add_argument(
            "--wait", action="store_true", help="Wait until CloudFront reports the invalidation complete."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=900.0,
            help="With --wait: give up waiting after this many seconds (default 900).",
        )
        parser.add_argument(
            "--poll-interval", type=float, default=10.0, help="With --wait: seconds between status checks (default 10)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        distribution_id = (options["distribution_id"] or settings.QQ_CLOUDFRONT_DISTRIBUTION_ID).strip()
        if not distribution_id:
            raise CommandError(
                "No CloudFront distribution named: set QQ_CLOUDFRONT_DISTRIBUTION_ID or pass --distribution-id "
                "(the ID shown in the CloudFront console, e.g. E2QWRUHAPOMQZL)."
            )
        if options["timeout"] <= 0 or options["poll_interval"] < 0:
            raise CommandError("--timeout must be above 0 and --poll-interval at least 0 (seconds).")
        try:
            paths = invalidation_paths_clean(options["paths"])
        except InvalidationError as exc:
            raise CommandError(str(exc)) from None
        for path in paths_never_stale(paths):
            self.stdout.write(self.style.WARNING(f"{path} is content-hashed; a CDN never holds a stale copy of it."))

        listing = ", ".join(paths)
        if options["dry_run"]:
            self.stdout.write(f"Dry run: would invalidate {len(paths)} path(s) on {distribution_id}: {listing}")
            return
        try:
            self._invalidate(distribution_id, paths, options)
        except InvalidationError as exc:
            raise CommandError(str(exc)) from None

    def _invalidate(self, distribution_id: str, paths: list[str], options: dict[str, Any]) -> None:
        client = cloudfront_client()
        started = invalidation_create(
            client=client, distribution_id=distribution_id, paths=paths, caller_reference=caller_reference_for(paths)
        )
        self.stdout.write(
            f"Invalidation {started.invalidation_id} requested on {distribution_id} for {len(paths)} path(s): "
            f"{started.status}."
        )
        if not options["wait"]:
            if not started.completed:
                self.stdout.write(
                    f"Not waiting (pass --wait to). Check with: aws cloudfront get-invalidation "
                    f"--distribution-id {distribution_id} --id {started.invalidation_id}"
                )
            return
        finished = self._wait(client, started, options)
        self.stdout.write(
            self.style.SUCCESS(
                f"Invalidation {finished.invalidation_id} completed: {len(paths)} path(s) fresh on every edge."
            )
        )

    def _wait(self, client: Any, started: InvalidationStatus, options: dict[str, Any]) -> InvalidationStatus:
        stop = threading.Event()
        previous = self._catch_sigterm(stop)

        def pause(seconds: float) -> None:
            stop.wait(seconds)  # returns early on SIGTERM

        def report(status: InvalidationStatus, elapsed: float) -> None:
            if options["verbosity"] >= 1:
                left = max(options["timeout"] - elapsed, 0)
                self.stdout.write(
                    f"  [{elapsed:5.0f}s] {status.invalidation_id}: {status.status} (gives up in {left:.0f}s)"
                )

        try:
            return invalidation_wait(
                client=client,
                started=started,
                timeout=options["timeout"],
                poll_interval=options["poll_interval"],
                on_poll=report,
                should_stop=stop.is_set,
                sleep=pause,
            )
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    @staticmethod
    def _catch_sigterm(stop: threading.Event) -> Any:
        """SIGTERM ends the wait cleanly (the invalidation itself carries on at CloudFront)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: FrameType | None) -> None:
            stop.set()

        return signal.signal(signal.SIGTERM, handler)
