"""``manage.py shardmove``: live data moves of user-ID ranges between databases.

A thin layer over ``migrations_tooling.services`` (writes) and
``migrations_tooling.selectors`` (reads); docs/data-moves.md is the runbook.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from migrations_tooling import phases, selectors, services, throttle
from migrations_tooling.conf import get_settings
from migrations_tooling.errors import MoveError
from migrations_tooling.progress import Reporter, format_bytes, format_duration
from shardrouter.errors import ShardRouterError
from shardrouter.keyspace import parse_key


class CommandReporter(Reporter):
    """Writes the engine's messages through the command's styled stdout; progress at most once a second."""

    def __init__(self, command: Command, verbosity: int) -> None:
        self.command = command
        self.verbosity = verbosity
        self.stop = threading.Event()
        self._last_progress = 0.0

    def info(self, message: str) -> None:
        if self.verbosity >= 1:
            self.command.stdout.write(message)

    def warning(self, message: str) -> None:
        self.command.stdout.write(self.command.style.WARNING(message))

    def progress(self, message: str) -> None:
        now = time.monotonic()
        if self.verbosity >= 1 and (now - self._last_progress >= 1.0 or self.verbosity >= 2):
            self._last_progress = now
            self.command.stdout.write(f"  {message}")

    def should_stop(self) -> bool:
        return self.stop.is_set()


def plan_next_steps(plan: services.MovePlan, start: str) -> list[str]:
    """What to run after a plan: follow the move that already covers the range, or start it."""
    if plan.existing:
        return [f"manage.py shardmove status {plan.existing.id}"]
    return [start]


def _key(text: str) -> int:
    try:
        return parse_key(text)
    except ShardRouterError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "Move a user-ID range between databases while the application keeps serving: plan, start, status, "
        "refresh, verify, switch-reads, switch-writes, rollback, cancel, complete (and list, every move; phases, the "
        "state diagram). "
        "See docs/data-moves.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        config = get_settings()
        sub = parser.add_subparsers(dest="action", required=True)

        def move_arg(p: CommandParser) -> None:
            p.add_argument("move", nargs="?", help="move ID (default: the only move in progress)")

        def throttle_args(p: CommandParser) -> None:
            p.add_argument("--batch-rows", type=int, default=config.delete_batch_rows, help="rows deleted per batch")
            p.add_argument("--pause", type=float, default=config.delete_pause, help="seconds to sleep between batches")

        def format_args(p: CommandParser) -> None:
            p.add_argument(
                "--format",
                choices=("text", "json"),
                default="text",
                help="output format; json fields are documented in docs/data-moves.md",
            )
            p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")

        def range_args(p: CommandParser) -> None:
            p.add_argument("lo", help="first user ID of the range (inclusive)")
            p.add_argument("hi", help="end of the range (exclusive), or MAX")
            p.add_argument("--to", dest="target", required=True, help="database alias that receives the range")

        plan = sub.add_parser("plan", help="validate a move and show what it would copy; changes nothing")
        range_args(plan)
        format_args(plan)

        start = sub.add_parser("start", help="set up change capture and start the copy (returns at once)")
        range_args(start)
        start.add_argument("--dry-run", action="store_true", help="only validate and show the plan")
        start.add_argument(
            "--wait", action="store_true", help="follow the copy until it is done (and steer its throttle)"
        )
        start.add_argument(
            "--max-source-latency",
            type=float,
            metavar="MS",
            help="hold the copy back while the p95 of a probe read on the source exceeds MS milliseconds "
            "(default: the p95 measured before the copy times SHARDMOVE['THROTTLE_LATENCY_FACTOR'])",
        )
        start.add_argument(
            "--max-source-active",
            type=int,
            metavar="N",
            help="hold the copy back while the source's server runs more than N active client backends",
        )
        start.add_argument(
            "--max-replica-lag",
            type=float,
            metavar="SECONDS",
            help="hold the copy back while a streaming replica of the source lags more than SECONDS "
            "(default: SHARDMOVE['THROTTLE_MAX_REPLICA_LAG_SECONDS'], else not watched)",
        )
        start.add_argument(
            "--no-throttle", action="store_true", help="copy at full speed, whatever it costs the source's users"
        )

        status = sub.add_parser("status", help="phase, copy progress, lag and traffic of moves (only reads)")
        move_arg(status)
        status.add_argument("--all", action="store_true", help="include finished and cancelled moves")
        format_args(status)
        status.add_argument("--watch", action="store_true", help="refresh until interrupted (Ctrl-C)")
        status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")

        listing = sub.add_parser("list", help="every move with its phase, age and lag (only reads)")
        listing.add_argument("--active", action="store_true", help="only moves in progress")
        format_args(listing)

        refresh = sub.add_parser(
            "refresh", help="record the copy progress the target reports (a finished copy becomes catching_up)"
        )
        move_arg(refresh)
        refresh.add_argument(
            "--watch", action="store_true", help="keep recording progress and lag (the console's chart) until Ctrl-C"
        )
        refresh.add_argument("--interval", type=float, default=2.0, help="seconds between records with --watch")

        diagram = sub.add_parser("phases", help="print the phase diagram (mermaid), drawn from the state machine")
        diagram.add_argument(
            "--update-doc", metavar="PATH", help="replace the generated diagram in this Markdown page instead"
        )

        verify = sub.add_parser("verify", help="compare counts and checksums of every chunk on both sides")
        move_arg(verify)
        verify.add_argument("--restart", action="store_true", help="start a new run instead of resuming")
        verify.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk (default from settings)")

        reads = sub.add_parser("switch-reads", help="route the range's reads to the target (writes stay)")
        move_arg(reads)
        reads.add_argument("--back", action="store_true", help="route reads back to the source")
        reads.add_argument("--max-lag", type=float, default=config.max_lag, help="refuse above this lag (seconds)")
        reads.add_argument("--dry-run", action="store_true", help="show what would change")
        reads.add_argument(
            "--force", action="store_true", help="switch even though mirrored reads found rows that differ"
        )

        for name, text in (
            ("switch-writes", "cut writes over to the target (short database-enforced freeze)"),
            ("rollback", "send reads and writes back to the source (same freeze protocol)"),
        ):
            p = sub.add_parser(name, help=text)
            move_arg(p)
            p.add_argument(
                "--max-freeze",
                type=float,
                default=config.max_freeze,
                help="longest write freeze in seconds (default 2)",
            )
            p.add_argument("--max-lag", type=float, default=config.max_lag, help="refuse above this lag (seconds)")
            p.add_argument("--attempts", type=int, default=3, help="freeze attempts before giving up")
            p.add_argument("--dry-run", action="store_true", help="check everything and show the plan; no freeze")

        cancel = sub.add_parser("cancel", help="abandon a move before writes switched; removes the copy")
        move_arg(cancel)
        cancel.add_argument("--dry-run", action="store_true", help="show what would be removed")
        throttle_args(cancel)

        complete = sub.add_parser("complete", help="drop replication and delete the moved rows from the source")
        move_arg(complete)
        complete.add_argument("--dry-run", action="store_true", help="show what would be deleted")
        throttle_args(complete)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        self.reporter = CommandReporter(self, options["verbosity"])
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread():
            for sig in previous:
                signal.signal(sig, self._stop)
        try:
            getattr(self, "handle_" + action.replace("-", "_"))(**options)
        except MoveError as exc:
            raise CommandError(str(exc)) from exc
        except ShardRouterError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: Any) -> None:
        if self.reporter.stop.is_set():
            raise KeyboardInterrupt
        self.reporter.stop.set()
        self.stderr.write("Stopping at the next safe point (again to abort at once) ...")

    # --- subcommands -------------------------------------------------------------------------------

    def handle_plan(self, *, lo: str, hi: str, target: str, format: str = "text", **_: Any) -> None:
        plan = services.move_plan(lo=_key(lo), hi=_key(hi), target=target)
        start = f"manage.py shardmove start {lo} {hi} --to {target} --wait"
        if format == "json":
            self._json(
                {
                    "lo": plan.lo,
                    "hi": plan.hi,
                    "source": plan.source,
                    "target": plan.target,
                    "existing_move": plan.existing.id if plan.existing else None,
                    "tables": [
                        {"table": t.name, "rows": s.rows, "bytes": s.bytes, "exact": s.exact} for t, s in plan.tables
                    ],
                    "checks": plan.checks,
                    "rows_total": sum(s.rows for _, s in plan.tables),
                    "bytes_total": sum(s.bytes for _, s in plan.tables),
                    "next_steps": plan_next_steps(plan, start),
                }
            )
            return
        self._print_plan(plan)
        if plan.existing:
            self.stdout.write(f"Move {plan.existing.id} already covers this ({plan.existing.phase}).")
        else:
            self.stdout.write(f"Nothing changed. Start it with `manage.py shardmove start {lo} {hi} --to {target}`.")

    def _print_plan(self, plan: services.MovePlan) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"Move {plan.label} from {plan.source} to {plan.target}"))
        width = max(len(t.name) for t, _ in plan.tables)
        self.stdout.write(f"  {'table':<{width}}  {'rows':>14}  {'bytes':>10}")
        for table, size in plan.tables:
            mark = "" if size.exact else "~"
            self.stdout.write(
                f"  {table.name:<{width}}  {mark + format(size.rows, ','):>14}  {format_bytes(size.bytes):>10}"
            )
        rows = sum(s.rows for _, s in plan.tables)
        total_bytes = sum(s.bytes for _, s in plan.tables)
        self.stdout.write(f"  {'total':<{width}}  {rows:>14,}  {format_bytes(total_bytes):>10}")
        for check in plan.checks:
            self.stdout.write("  " + self.style.SUCCESS("ok") + f" {check}")

    def handle_start(
        self,
        *,
        lo: str,
        hi: str,
        target: str,
        dry_run: bool,
        wait: bool,
        max_source_latency: float | None = None,
        max_source_active: int | None = None,
        max_replica_lag: float | None = None,
        no_throttle: bool = False,
        **_: Any,
    ) -> None:
        lo_key, hi_key = _key(lo), _key(hi)
        copy_throttle = throttle.requested(
            no_throttle=no_throttle,
            max_latency_ms=max_source_latency,
            max_active=max_source_active,
            max_replica_lag=max_replica_lag,
        )
        if dry_run:
            plan = services.move_plan(lo=lo_key, hi=hi_key, target=target)
            self._print_plan(plan)
            self.stdout.write("Dry run: nothing changed.")
            return
        move = services.move_start(
            lo=lo_key, hi=hi_key, target=target, reporter=self.reporter, copy_throttle=copy_throttle
        )
        self.stdout.write(self.style.SUCCESS(f"Move {move.id} started: {move.source} -> {move.target} ({move.phase})."))
        if wait:
            services.follow_copy(move, self.reporter)
        elif move.phase == "copying" and move.throttle.get("enabled"):
            self.stdout.write(
                f"The copy is throttled only while a command follows it: run `manage.py shardmove refresh {move.id} "
                "--watch` (or start with --wait)."
            )

    def handle_status(
        self, *, move: str | None, all: bool, format: str, watch: bool, interval: float, **_: Any
    ) -> None:
        json = format == "json"
        while True:
            moves = [selectors.move_get(move)] if move else selectors.moves_to_show(all_moves=all)
            statuses = [selectors.move_status(m) for m in moves]
            if json:
                self._json([s.to_json() for s in statuses] if not move else statuses[0].to_json())
            else:
                if not statuses:
                    self.stdout.write("No moves in progress (`--all` shows finished ones).")
                for status in statuses:
                    for line in status.lines():
                        self.stdout.write(line)
            if not watch or self.reporter.stop.wait(interval):
                return
            if not json:
                self.stdout.write("")

    def handle_list(self, *, active: bool, format: str, **_: Any) -> None:
        moves = selectors.move_list(active_only=active)
        if format == "json":
            self._json([m.to_json() for m in moves])
            return
        if not moves:
            self.stdout.write("No moves yet. Plan one with `manage.py shardmove plan LO HI --to ALIAS`.")
            return
        self.stdout.write(f"{'move':>5}  {'range':<24} {'from -> to':<22} {'phase':<16} {'age':>9}  {'lag':>18}  next")
        for m in moves:
            lag = "-"
            if m.lag_bytes is not None:
                seconds = f"{m.lag_seconds:.2f} s" if m.lag_seconds is not None else "? s"
                lag = f"{format_bytes(m.lag_bytes)} / {seconds}"
            route = f"{m.source} -> {m.target}"
            self.stdout.write(
                f"{m.id:>5}  {m.range:<24} {route:<22} {m.phase:<16} {format_duration(m.age_seconds):>9}  {lag:>18}  "
                f"{m.next_steps[0] if m.next_steps else '-'}"
            )

    def handle_refresh(self, *, move: str | None, watch: bool = False, interval: float = 2.0, **_: Any) -> None:
        if interval <= 0:
            raise CommandError(f"--interval must be above 0 seconds (got {interval}); for example --interval 2.")
        record = selectors.move_get(move)
        if watch and record.phase == "copying":
            record = services.follow_copy(record, self.reporter, poll=interval)  # steers a throttled copy too
        while True:
            record = services.move_refresh(record)
            self.stdout.write(selectors.move_status(record).copy_line())
            if not watch or record.phase in ("complete", "cancelled") or self.reporter.stop.wait(interval):
                return

    def handle_phases(self, *, update_doc: str | None, **_: Any) -> None:
        if not update_doc:
            self.stdout.write(phases.mermaid(), ending="")
            return
        path = Path(update_doc)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}. Pass the path of docs/data-moves.md.") from exc
        updated = phases.update_doc(text)
        if updated == text:
            self.stdout.write(f"{path}: the phase diagram is up to date.")
            return
        path.write_text(updated)
        self.stdout.write(self.style.SUCCESS(f"{path}: phase diagram updated."))

    def handle_verify(self, *, move: str | None, restart: bool, chunk_rows: int | None, **_: Any) -> None:
        if chunk_rows is not None and chunk_rows < 1:
            raise CommandError(
                f"--chunk-rows must be at least 1 (got {chunk_rows}); leave it out to use "
                f"SHARDMOVE['VERIFY_CHUNK_ROWS'] ({get_settings().verify_chunk_rows})."
            )
        run = services.move_verify(
            selectors.move_get(move), reporter=self.reporter, restart=restart, chunk_rows=chunk_rows
        )
        if run.mismatches:
            for item in run.mismatches[:100]:
                self.stdout.write(
                    self.style.ERROR(
                        f"  {item['table']} id={item['id']} user_id={item['shard_key']}: {item['problem']}"
                    )
                )
            raise CommandError(
                f"Verify run {run.id} found {len(run.mismatches)} mismatching row(s) (listed above). Writes must not be "
                "switched; investigate (replication errors in `shardmove status`, direct writes to the target), then "
                "`shardmove verify --restart`."
            )
        self.stdout.write(self.style.SUCCESS("Both sides hold the same rows."))

    def handle_switch_reads(
        self, *, move: str | None, back: bool, max_lag: float, dry_run: bool, force: bool = False, **_: Any
    ) -> None:
        record = selectors.move_get(move)
        if services.move_switch_reads(
            record, reporter=self.reporter, back=back, max_lag=max_lag, dry_run=dry_run, force=force
        ):
            self.stdout.write(self.style.SUCCESS("Done; processes pick up the new map within about a second."))

    def handle_switch_writes(self, **options: Any) -> None:
        self._cut_over(services.move_switch_writes, "Writes switched", **options)

    def handle_rollback(self, **options: Any) -> None:
        self._cut_over(services.move_rollback, "Rolled back", **options)

    def _cut_over(
        self,
        operation: Any,
        done: str,
        *,
        move: str | None,
        max_freeze: float,
        max_lag: float,
        attempts: int,
        dry_run: bool,
        **_: Any,
    ) -> None:
        result = operation(
            selectors.move_get(move),
            reporter=self.reporter,
            max_freeze=max_freeze,
            max_lag=max_lag,
            dry_run=dry_run,
            attempts=attempts,
        )
        if result:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{done}: freeze {result.freeze * 1000:.0f} ms (limit {max_freeze * 1000:.0f} ms), "
                    f"{result.verified_rows} changed row(s) verified, attempt {result.attempts}."
                )
            )

    def handle_cancel(self, *, move: str | None, dry_run: bool, batch_rows: int, pause: float, **_: Any) -> None:
        throttle = self._throttle(batch_rows, pause)
        if services.move_cancel(selectors.move_get(move), reporter=self.reporter, dry_run=dry_run, throttle=throttle):
            self.stdout.write(self.style.SUCCESS("Cancelled; the source serves the range as before the move."))

    def handle_complete(self, *, move: str | None, dry_run: bool, batch_rows: int, pause: float, **_: Any) -> None:
        throttle = self._throttle(batch_rows, pause)
        if services.move_complete(selectors.move_get(move), reporter=self.reporter, dry_run=dry_run, throttle=throttle):
            self.stdout.write(self.style.SUCCESS("Complete."))

    def _throttle(self, batch_rows: int, pause: float) -> services.Throttle:
        if batch_rows < 1 or pause < 0:
            raise CommandError("--batch-rows must be at least 1 and --pause at least 0.")
        return services.Throttle(batch_rows, pause)

    def _json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, default=str))
