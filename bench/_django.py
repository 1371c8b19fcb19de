"""Shared set-up for benchmarks that need the Django project and a migrated stack."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_django(*, migrate: bool = True) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")
    import django

    django.setup()
    if migrate:
        from io import StringIO

        from django.core.management import call_command

        call_command("migrate_shards", stdout=StringIO())


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.machine()}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)
