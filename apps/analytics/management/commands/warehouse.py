"""``manage.py warehouse``: the analytics warehouse (sync, status, report, rebuild). See docs/analytics.md."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.analytics.conf import get_config
from apps.analytics.errors import WarehouseError
from apps.analytics.reports import REPORTS, ReportResult, parse_day, run_report
from apps.analytics.selectors import warehouse_status
from apps.analytics.services import warehouse_rebuild
from apps.analytics.sync import CycleOutcome, Syncer
from migrations_tooling.progress import format_bytes, format_duration


class Command(BaseCommand):
    help = "The analytics warehouse: sync [--follow], status, report NAME, rebuild. See docs/analytics.md."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sync = sub.add_parser("sync", help="initial load of every source, then apply their changes")
        sync.add_argument("--follow", action="store_true", help="keep following changes until SIGINT/SIGTERM")
        status = sub.add_parser("status", help="position, lag and errors per source; changes nothing")
        status.add_argument("--format", choices=["table", "json"], default="table", help="output format")
        report = sub.add_parser("report", help="run a report on the warehouse")
        report.add_argument("name", help=f"one of: {', '.join(REPORTS)}")
        report.add_argument("--since", help="first day (YYYY-MM-DD, inclusive; default: 29 days before --until)")
        report.add_argument("--until", help="last day (YYYY-MM-DD, inclusive; default: today, UTC)")
        report.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
        rebuild = sub.add_parser("rebuild", help="drop the warehouse and the sources' slots; the next sync reloads")
        rebuild.add_argument("--dry-run", action="store_true", help="say what would be dropped; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        try:
            getattr(self, "handle_" + options["action"])(**options)
        except WarehouseError as exc:
            raise CommandError(str(exc)) from exc

    # --- sync -------------------------------------------------------------------------------------

    def handle_sync(self, *, follow: bool, **_: Any) -> None:
        config = get_config()
        stop = threading.Event()
        if follow and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        started = time.monotonic()
        syncer = Syncer(config, progress=self._progress)
        self.stdout.write(f"Warehouse: {config.label}")
        outcome = syncer.catch_up()
        self._summary(outcome, time.monotonic() - started)
        if follow:
            self.stdout.write("Following changes (Ctrl-C stops).")
            syncer.follow(stop.is_set, on_cycle=self._cycle_line, on_error=self._cycle_error)
            self.stdout.write("Stopped.")
        elif any(s.error for s in outcome.sources):
            raise CommandError("Some sources could not be synced (above); `warehouse sync` again once fixed.")

    _last_progress = 0.0
    _progress_started: dict[str, float] = {}

    def _progress(self, what: str, done: int, expected: int) -> None:
        now = time.monotonic()
        started = self._progress_started.setdefault(what, now)
        if self.verbosity < 1 or (now - self._last_progress < 1.0 and done < expected):
            return
        self._last_progress = now
        elapsed = max(now - started, 1e-6)
        rate = done / elapsed
        share = min(done / expected, 1.0) if expected else 1.0
        bar = "#" * int(share * 20)
        eta = (expected - done) / rate if rate > 0 and expected > done else 0.0
        self.stdout.write(
            f"  {what}: [{bar:<20}] {done:,}/{expected:,} rows, {rate:,.0f} rows/s, ETA {format_duration(eta)}"
        )

    def _summary(self, outcome: CycleOutcome, elapsed: float) -> None:
        for s in outcome.sources:
            if s.error:
                self.stdout.write(self.style.WARNING(f"{s.alias}: {s.error}"))
            else:
                loaded = f"loaded {s.loaded_rows:,} rows, " if s.loaded_rows else ""
                self.stdout.write(
                    f"{s.alias}: {loaded}{s.transactions:,} transaction(s), {s.changes:,} change(s) applied"
                )
        self.stdout.write(self.style.SUCCESS(f"Synced in {format_duration(elapsed)}."))

    def _cycle_line(self, outcome: CycleOutcome) -> None:
        changes = sum(s.changes for s in outcome.sources)
        if changes and self.verbosity >= 2:
            self.stdout.write(f"  applied {changes:,} change(s)")
        for s in outcome.sources:
            if s.error and self.verbosity >= 1:
                self.stdout.write(self.style.WARNING(f"  {s.alias}: {s.error}"))

    def _cycle_error(self, exc: Exception) -> None:
        self.stdout.write(self.style.ERROR(f"  sync cycle failed, retrying: {exc}"))

    # --- status ------------------------------------------------------------------------------------

    def handle_status(self, *, format: str, **_: Any) -> None:
        states = warehouse_status(get_config())
        if format == "json":
            self.stdout.write(json.dumps([s.as_json() for s in states], indent=2))
            return
        self.stdout.write(f"{'source':<10} {'loaded':<7} {'position':<14} {'lag':>9} {'WAL behind':>11}  last commit")
        for s in states:
            lag = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}s"
            behind = "unreachable" if s.behind_bytes is None else format_bytes(s.behind_bytes)
            self.stdout.write(
                f"{s.alias:<10} {'yes' if s.loaded else 'no':<7} {s.position:<14} {lag:>9} {behind:>11}  "
                f"{s.last_commit_at or '-'}"
            )
            if s.error:
                self.stdout.write(self.style.WARNING(f"  {s.error}"))
            for t in s.tables:
                if t.error:
                    self.stdout.write(self.style.ERROR(f"  {t.table} stopped at {t.position}: {t.error}"))

    # --- report ------------------------------------------------------------------------------------

    def handle_report(self, *, name: str, since: str | None, until: str | None, format: str, **_: Any) -> None:
        first: date | None = parse_day(since, option="--since") if since else None
        last: date | None = parse_day(until, option="--until") if until else None
        result = run_report(get_config(), name, since=first, until=last)
        if format == "json":
            payload = {"report": result.name, "since": str(result.since), "until": str(result.until)}
            self.stdout.write(json.dumps({**payload, "rows": result.as_dicts()}, default=str, indent=2))
        elif format == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(result.columns)
            writer.writerows(result.rows)
            self.stdout.write(out.getvalue(), ending="")
        else:
            self._table(result)

    def _table(self, result: ReportResult) -> None:
        def cell(value: Any) -> str:
            return (
                f"{value:,.1f}"
                if isinstance(value, float)
                else (f"{value:,}" if isinstance(value, int) else str(value))
            )

        cells = [[cell(v) for v in row] for row in result.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
        self.stdout.write(f"{result.title}, {result.since} to {result.until}")
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=False)))
        for row in cells:
            self.stdout.write(
                "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=False)))
            )
        if not cells:
            self.stdout.write("(no rows in this window)")

    # --- rebuild -----------------------------------------------------------------------------------

    def handle_rebuild(self, *, dry_run: bool, **_: Any) -> None:
        plan = warehouse_rebuild(get_config(), dry_run=dry_run)
        verb = "Would drop" if dry_run else "Dropped"
        rows = sum(plan.tables.values())
        self.stdout.write(f"{verb} {len(plan.tables)} warehouse table(s) holding {rows:,} row(s).")
        for alias, slot in plan.slots.items():
            self.stdout.write(f"{verb} change-capture slot {slot} and its publication on {alias}.")
        if dry_run:
            self.stdout.write("Dry run: nothing changed. Run without --dry-run, then `manage.py warehouse sync`.")
        else:
            self.stdout.write(self.style.SUCCESS("Done; `manage.py warehouse sync` loads the warehouse from scratch."))
