"""Load-test fixtures: the launcher as a subprocess, and a private platform for the CI gate.

The platform is the one ``make loadtest`` starts (``locustfiles.localplatform``),
on a throwaway embedded stack of its own (three PostgreSQL servers and Redis on
free ports under ``var/loadtest-ci-<worker>``), so the gate measures gunicorn, Celery and
the generation service as deployed, and never touches the test databases of
the rest of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from locustfiles.localplatform import LocalPlatform, PlatformSettings

REPO = Path(__file__).resolve().parents[2]
SEEDED_USERS = 40


@dataclass(frozen=True)
class LauncherRun:
    code: int
    output: str


def launch(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> LauncherRun:
    """Run ``python -m locustfiles.run ARGS`` and return its exit status and combined output."""
    done = subprocess.run(
        [sys.executable, "-m", "locustfiles.run", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return LauncherRun(done.returncode, done.stdout)


@pytest.fixture(scope="session")
def platform() -> Iterator[LocalPlatform]:
    """gunicorn + Celery + contentgen on a private stack, seeded with load users; stopped at the end.

    One per session (a parallel worker's, or the serial part's): starting it is most of a file's time, and
    the tests only add load to the seeded users, each judging its own run's report.
    """
    # One folder per parallel worker (tests/support/suite.py): two workers' platforms never share a stack.
    root = REPO / "var" / f"loadtest-ci-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    settings = PlatformSettings(
        http_port=0,
        stack_dir=root / "stack",
        log_dir=root / "logs",
        seed_users=SEEDED_USERS,
        generations_per_user=3,
    )
    started = LocalPlatform(settings, say=lambda _message: None)
    try:
        started.start()
        yield started
    finally:
        children = [child.process for child in started.children]
        started.stop()
        assert all(process.poll() is not None for process in children), "every platform process was stopped"


def run_against(platform: LocalPlatform, *args: str, timeout: float = 300) -> LauncherRun:
    """A headless run against the private platform, GrpcUser included."""
    return launch(
        "--headless",
        "--host",
        platform.url,
        "--no-start",
        "--seed-users",
        str(SEEDED_USERS),
        "--contentgen-target",
        platform.contentgen_target,
        *args,
        env={"CONTENTGEN_TOKEN": platform.contentgen_token},
        timeout=timeout,
    )


def summary_of(output: str) -> dict:  # type: ignore[type-arg]
    """The summary.json of the run whose launcher output this is."""
    report_dir = Path(output.rsplit("Reports: ", 1)[1].split()[0])
    return json.loads((report_dir / "summary.json").read_text())
