"""``manage.py shardmap show|validate|assign``: inspect and edit the shard map."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from shardrouter.errors import ShardMapError
from shardrouter.keyspace import format_key, parse_key, validate_ranges
from shardrouter.mapstore import load_map_from_database
from shardrouter.selectors import shardmap_advise
from shardrouter.services import count_rows_in_range, shardmap_apply_edit, shardmap_plan_assign
from shardrouter.stats import WEIGHTS


class Command(BaseCommand):
    help = "Show, validate, edit or plan the balance of the range-based shard map stored in the control database."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="print the map in force: ranges, databases, version")
        show.add_argument("--rows", action="store_true", help="also count the rows of each range (slower)")
        validate = sub.add_parser("validate", help="check coverage, overlaps, aliases and that every database answers")
        advise = sub.add_parser(
            "advise",
            help="propose moves that even the load over the databases (prints shardmove commands; changes nothing)",
        )
        advise.add_argument(
            "--shards", type=int, default=None, help="databases to spread over (default: all configured)"
        )
        advise.add_argument("--by", choices=WEIGHTS, default="rows", help="what to even: rows, bytes or recent writes")
        advise.add_argument(
            "--window", type=float, default=3600, help="seconds of inserts that count as recent writes (--by writes)"
        )
        for p in (show, validate, advise):
            p.add_argument(
                "--format", choices=("text", "json"), default="text", help="output format (fields: docs/data-moves.md)"
            )
        assign = sub.add_parser("assign", help="route user IDs [LO, HI) to ALIAS; prints the diff, --apply writes it")
        assign.add_argument("lo", help="first user ID of the range (inclusive)")
        assign.add_argument("hi", help="end of the range (exclusive), or MAX")
        assign.add_argument("alias", help="database alias that will own the range")
        assign.add_argument("--apply", action="store_true", help="write the new map (default: only show the diff)")
        assign.add_argument("--reason", default="", help="note stored with the new version")
        assign.add_argument(
            "--allow-stranded-rows",
            action="store_true",
            help="apply even though rows of the range exist in the old database (they become unreachable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"handle_{options['action']}")(**options)
        except ShardMapError as exc:
            raise CommandError(str(exc)) from exc

    def handle_show(self, *, rows: bool = False, format: str = "text", **_: Any) -> None:
        shard_map = load_map_from_database()
        if format == "json":
            self.stdout.write(
                json.dumps(
                    {
                        "version": shard_map.version,
                        "ranges": [
                            item.to_json()
                            | {
                                "label": item.label(),
                                "rows": count_rows_in_range(item.alias, item.lo, item.hi) if rows else None,
                            }
                            for item in shard_map.ranges
                        ],
                        "databases": sorted(shard_map.aliases()),
                        "next_steps": ["manage.py shardmap validate", "manage.py shardmap advise"],
                    }
                )
            )
            return
        self.stdout.write(self.style.MIGRATE_HEADING(f"Shard map v{shard_map.version}"))
        width = max(len(r.label()) for r in shard_map.ranges)
        for item in shard_map.ranges:
            reads = f"  (reads: {item.read_alias})" if item.reads_switched else ""
            count = f"  {count_rows_in_range(item.alias, item.lo, item.hi):>10} rows" if rows else ""
            self.stdout.write(f"  {item.label():<{width}}  -> {item.alias}{reads}{count}")

    def handle_validate(self, *, format: str = "text", **_: Any) -> None:
        shard_map = load_map_from_database()
        problems: list[str] = []
        try:
            validate_ranges(shard_map.ranges, settings.DATABASES)
        except ShardMapError as exc:
            if format != "json":
                raise
            problems.append(str(exc))
        failures = []
        reachable: dict[str, bool] = {}
        for alias in sorted(shard_map.aliases() & set(settings.DATABASES)):
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT 1")
                reachable[alias] = True
                if format != "json":
                    self.stdout.write(f"  {alias}: reachable")
            except Exception as exc:
                reachable[alias] = False
                failures.append(f"{alias}: {exc}")
        if format == "json":
            valid = not problems and not failures
            self.stdout.write(
                json.dumps(
                    {
                        "version": shard_map.version,
                        "valid": valid,
                        "ranges": len(shard_map.ranges),
                        "problems": problems,
                        "databases": reachable,
                        "unreachable": failures,
                        "next_steps": ["manage.py shardmap show"]
                        if valid
                        else ["manage.py shardmap show", "manage.py shardmap assign LO HI ALIAS"],
                    }
                )
            )
            if not valid:
                raise CommandError("The shard map is not valid or a database does not answer (see the JSON above).")
            return
        if failures:
            raise CommandError("Unreachable databases: " + "; ".join(failures))
        self.stdout.write(
            self.style.SUCCESS(
                f"Shard map v{shard_map.version} is valid: {len(shard_map.ranges)} ranges cover [0, MAX)."
            )
        )

    def handle_advise(self, *, shards: int | None, by: str, window: float, format: str = "text", **_: Any) -> None:
        if window <= 0:
            raise CommandError(f"--window must be a positive number of seconds (got {window}).")
        advice = shardmap_advise(shards=shards, by=by, window_seconds=window)
        if format == "json":
            self.stdout.write(json.dumps(advice.to_json()))
            return
        self.stdout.write(self.style.MIGRATE_HEADING(f"Load by {by} over {', '.join(advice.databases)}"))
        self.stdout.write(f"  {'database':<16} {'now':>14} {'after':>14}")
        for alias in advice.databases:
            self.stdout.write(f"  {alias:<16} {advice.loads_before[alias]:>14,.0f} {advice.loads_after[alias]:>14,.0f}")
        self.stdout.write(
            f"  heaviest / even share: {advice.imbalance(advice.loads_before):.2f} now, "
            f"{advice.imbalance(advice.loads_after):.2f} after"
        )
        if not advice.moves:
            self.stdout.write("The load is as even as moves of whole users make it; nothing to do.")
            return
        for n, move in enumerate(advice.moves, 1):
            what = f"isolate user {move.isolates_user}" if move.isolates_user is not None else f"{move.users} user(s)"
            self.stdout.write(
                self.style.MIGRATE_LABEL(
                    f"{n}. move {move.label} {move.source} -> {move.target} ({what}, {move.weight:,.0f} {by})"
                )
            )
            for command in move.commands():
                self.stdout.write(f"     {command}")
        self.stdout.write("Nothing changed. Run the moves one after another, in this order.")

    def handle_assign(
        self, *, lo: str, hi: str, alias: str, apply: bool, reason: str, allow_stranded_rows: bool, **_: Any
    ) -> None:
        lo_key, hi_key = parse_key(lo), parse_key(hi)
        edit = shardmap_plan_assign(lo=lo_key, hi=hi_key, alias=alias)
        if not edit.changes_anything:
            self.stdout.write(f"[{format_key(lo_key)}, {format_key(hi_key)}) already routes to {alias}; nothing to do.")
            return
        self.stdout.write(self.style.MIGRATE_HEADING(f"Changes to shard map v{edit.base.version}:"))
        for line in edit.diff:
            style = self.style.ERROR if line.startswith("-") else self.style.SUCCESS
            self.stdout.write("  " + style(line))
        for where, count in edit.stranded_rows.items():
            self.stdout.write(self.style.WARNING(f"  ! {count} rows in {where} would no longer be routed to"))
        if not apply:
            self.stdout.write("Dry run: nothing changed. Re-run with --apply to write this map.")
            return
        new_map = shardmap_apply_edit(
            edit=edit, reason=reason or f"assign {lo} {hi} {alias}", allow_stranded_rows=allow_stranded_rows
        )
        self.stdout.write(
            self.style.SUCCESS(f"Shard map v{new_map.version} applied; processes pick it up within about a second.")
        )
