"""``manage.py shardaudit report|reset``: what the sharding-readiness audit found, worst first, with the fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shardrouter.audit import KINDS, Finding, count_stored_findings, recorder, reset_stored_findings, stored_findings


class Command(BaseCommand):
    help = "Report or reset what the sharding-readiness audit (SHARDROUTER['AUDIT'] = True) recorded."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        report = sub.add_parser("report", help="findings from every process, worst first, with the fix for each kind")
        report.add_argument(
            "--format", choices=["table", "json"], default="table", help="table for people, json for tools"
        )
        report.add_argument("--kind", choices=sorted(KINDS), help="only findings of this kind")
        reset = sub.add_parser("reset", help="forget every stored finding (start a new audit window)")
        reset.add_argument("--dry-run", action="store_true", help="say how many findings would be removed")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        try:
            getattr(self, f"handle_{options['action']}")(**options)
        except CommandError:
            raise
        except Exception as exc:
            raise CommandError(
                f"Could not read the audit's findings: {exc}. Run `manage.py migrate shardrouter` on the control "
                "database (it creates shardrouter_auditfinding) and check that the database answers."
            ) from exc

    def handle_report(self, *, format: str, kind: str | None, **_: Any) -> None:
        recorder.flush()
        findings = [f for f in stored_findings() if kind is None or f.kind == kind]
        if format == "json":
            self.stdout.write(json.dumps({"findings": [f.to_json() for f in findings]}, indent=2))
            return
        if not findings:
            self.stdout.write(self.style.SUCCESS("No findings: nothing the audit saw would break under sharding."))
            return
        total = sum(f.count for f in findings)
        self.stdout.write(self.style.MIGRATE_HEADING(f"{len(findings)} finding(s), {total} query(ies), worst first:"))
        current = ""
        for finding in findings:
            if finding.kind != current:
                current = finding.kind
                meta = KINDS[current]
                self.stdout.write("")
                self.stdout.write(self.style.WARNING(f"{current}: {meta.meaning}"))
                self.stdout.write(f"  fix: {meta.fix}")
            self._write_finding(finding)

    def _write_finding(self, finding: Finding) -> None:
        seen = datetime.fromtimestamp(finding.last_seen, tz=UTC).strftime("%Y-%m-%d %H:%M") if finding.last_seen else ""
        self.stdout.write(f"  {finding.count:>8}x  {finding.model:<28} {finding.call_site}  (last {seen})")
        if self.verbosity >= 1 and finding.example:
            self.stdout.write(f"             e.g. {finding.example[:200]}")

    def handle_reset(self, *, dry_run: bool, **_: Any) -> None:
        if dry_run:
            self.stdout.write(f"Dry run: {count_stored_findings()} finding(s) would be removed.")
            return
        removed = reset_stored_findings()
        self.stdout.write(self.style.SUCCESS(f"Removed {removed} finding(s); the audit starts counting afresh."))
