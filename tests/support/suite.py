"""The whole suite, as ``make test`` runs it: most of it in parallel, then the tests that must run alone.

Most of the suite's time is spent waiting on its own processes (servers starting and stopping, workers
retrying, leases expiring), so two or three tests at a time fit on two cores. Parallel workers
(pytest-xdist) each get a private stack of their own (``tests/support/parallel.py``) and take whole files
(``--dist loadfile``), so a module's expensive fixtures are built once; the longest files are handed out
first (``tests/support/ordering.py``), so the run does not end on one long file started late. Tests marked
``serial`` judge latency against fixed thresholds (the Locust CI gate's baseline): they run afterwards,
alone, on the stack of ``devstack exec``.

    python -m tests.support.suite [pytest arguments]     # TEST_WORKERS=N (default 3; 0 or 1: all in one process)

Exit status: pytest's, the worse of the two parts ("no tests collected" in one part is not a failure when the
other part ran tests, as when the arguments select a folder without serial tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

NO_TESTS_COLLECTED = 5
DEFAULT_WORKERS = 3  # on 2 cores: 416 s for the parallel part against 748 s with 2 (docs/testing.md)


def workers_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    raw = environ.get("TEST_WORKERS", str(DEFAULT_WORKERS)).strip()
    if not raw.isdigit():
        raise SystemExit(f"TEST_WORKERS={raw!r} is not a number of workers: use 0 (one process) or 2, 3, ...")
    return int(raw)


def parts(workers: int, args: list[str]) -> list[tuple[str, list[str]]]:
    """The pytest command lines to run, in order, each with a name for the summary."""
    pytest = [sys.executable, "-m", "pytest"]
    if workers <= 1:
        return [("whole suite", [*pytest, *args])]
    return [
        (
            f"parallel, {workers} workers",
            [*pytest, "-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder", "-m", "not serial", *args],
        ),
        ("serial", [*pytest, "-m", "serial", *args]),
    ]


def combined_status(statuses: list[int]) -> int:
    ran = [status for status in statuses if status != NO_TESTS_COLLECTED]
    if not ran:
        return NO_TESTS_COLLECTED
    return max(ran)


def main(args: list[str]) -> int:
    statuses, timings = [], []
    for name, command in parts(workers_from_env(), args):
        print(f"\n=== tests: {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        statuses.append(subprocess.call(command))
        timings.append(f"{name} {time.monotonic() - started:.0f} s (exit {statuses[-1]})")
    print(f"\n=== tests: {'; '.join(timings)}", flush=True)
    return combined_status(statuses)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
