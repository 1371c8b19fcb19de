"""Longest files first in a parallel run, so the last file to finish is a short one.

With ``--dist loadfile`` pytest-xdist hands whole files to the workers in collection order (``suite.py``
passes ``--no-loadscope-reorder``, else xdist orders them by their number of tests, which says little about
their time: one adoption test outlasts a hundred unit tests). A long file handed out last keeps one worker busy
while the other has nothing left, so the files are collected longest first, by the per-file times in
``file_times.json`` (seconds, setup + call + teardown, from a parallel run's JUnit report). Tests keep their
order within a file. Serial runs keep the plain collection order.

Files that share a session fixture too costly to build twice (``SAME_WORKER``: the load-test platform,
40-75 s to start on a busy machine) are one unit of work for the scheduler, so one worker runs them, one
after the other, and builds the fixture once; the unit's time is the sum of its files'.

A file missing from the table (a new one) counts as ``UNKNOWN_FILE_SECONDS``: early enough not to be the
straggler if it is long. Refresh the table after a large change in the suite's shape:

    pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" --junitxml=suite.xml   # then:
    python -m tests.support.ordering suite.xml                                                # rewrites file_times.json
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

TABLE = Path(__file__).with_name("file_times.json")
UNKNOWN_FILE_SECONDS = 30.0
# Files run by one worker, in this order, as one unit: they share the session's load-test platform.
SAME_WORKER = (("tests/loadtest/test_distributed.py", "tests/loadtest/test_gate_outcomes.py"),)


def unit_of(path: str, groups: tuple[tuple[str, ...], ...] = SAME_WORKER) -> str:
    """The unit of work a test file belongs to: its group's first file, or itself."""
    return next((group[0] for group in groups if path in group), path)


def file_times(table: Path = TABLE) -> dict[str, float]:
    """The table: test file path (relative to the repository, ``tests/...``) -> seconds."""
    if not table.exists():
        return {}
    return {str(path): float(seconds) for path, seconds in json.loads(table.read_text()).items()}


def longest_first(
    items: list[pytest.Item], times: dict[str, float], groups: tuple[tuple[str, ...], ...] = SAME_WORKER
) -> list[pytest.Item]:
    """``items`` grouped by unit of work (a file, or a group of files), the longest units first.

    Ties, the files of a group and the tests within a file keep their collection order.
    """
    by_unit: dict[str, list[pytest.Item]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    files: set[str] = set()
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        by_unit[unit_of(path, groups)].append(item)
        if path not in files:
            files.add(path)
            seconds[unit_of(path, groups)] += times.get(path, UNKNOWN_FILE_SECONDS)
    units = sorted(by_unit, key=lambda unit: -seconds[unit])
    return [item for unit in units for item in by_unit[unit]]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = longest_first(items, file_times())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with each ``SAME_WORKER`` group of files handed out as one unit."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(super()._split_scope(nodeid))

    return FileGroupScheduling(config, log)


def times_from_junit(report: Path) -> dict[str, float]:
    """Per-file seconds from a JUnit report (pytest's ``--junitxml``: a test case's time includes its fixtures)."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).iter("testcase"):
        parts = (case.get("classname") or "").split(".")
        module = next((i for i, part in enumerate(parts) if part.startswith("test_")), None)
        if module is None:
            continue
        totals["/".join(parts[: module + 1]) + ".py"] += float(case.get("time") or 0)
    return {path: round(seconds, 1) for path, seconds in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(args: list[str]) -> int:
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m tests.support.ordering SUITE.xml (a JUnit report of the whole suite)", file=sys.stderr)
        return 2
    times = times_from_junit(Path(args[0]))
    TABLE.write_text(json.dumps(times, indent=1) + "\n")
    print(f"{TABLE}: {len(times)} files, {sum(times.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
