"""``manage.py shardmap show|validate|assign``: inspect and edit the shard map."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from shardrouter.errors import ShardMapError
from shardrouter.keyspace import format_key, parse_key, validate_ranges
from shardrouter.mapstore import load_map_from_database
from shardrouter.services import count_rows_in_range, shardmap_apply_edit, shardmap_plan_assign


class Command(BaseCommand):
    help = "Show, validate or edit the range-based shard map stored in the control database."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="print the map in force: ranges, databases, version")
        show.add_argument("--rows", action="store_true", help="also count the rows of each range (slower)")
        sub.add_parser("validate", help="check coverage, overlaps, aliases and that every database answers")
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

    def handle_show(self, *, rows: bool = False, **_: Any) -> None:
        shard_map = load_map_from_database()
        self.stdout.write(self.style.MIGRATE_HEADING(f"Shard map v{shard_map.version}"))
        width = max(len(r.label()) for r in shard_map.ranges)
        for item in shard_map.ranges:
            reads = f"  (reads: {item.read_alias})" if item.reads_switched else ""
            count = f"  {count_rows_in_range(item.alias, item.lo, item.hi):>10} rows" if rows else ""
            self.stdout.write(f"  {item.label():<{width}}  -> {item.alias}{reads}{count}")

    def handle_validate(self, **_: Any) -> None:
        shard_map = load_map_from_database()
        validate_ranges(shard_map.ranges, settings.DATABASES)
        failures = []
        for alias in sorted(shard_map.aliases()):
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT 1")
                self.stdout.write(f"  {alias}: reachable")
            except Exception as exc:
                failures.append(f"{alias}: {exc}")
        if failures:
            raise CommandError("Unreachable databases: " + "; ".join(failures))
        self.stdout.write(
            self.style.SUCCESS(
                f"Shard map v{shard_map.version} is valid: {len(shard_map.ranges)} ranges cover [0, MAX)."
            )
        )

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
