"""A parallel run hands out the longest files first, by the per-file times checked in next to the suite."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.support import ordering, suite

REPO = Path(__file__).resolve().parent.parent


def items(*nodeids: str) -> list[Any]:
    return [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]


def test_files_come_longest_first_and_keep_the_order_of_their_tests() -> None:
    collected = items("tests/a/test_x.py::one", "tests/b/test_y.py::one", "tests/a/test_x.py::two", "tests/c.py::t")
    times = {"tests/a/test_x.py": 5.0, "tests/b/test_y.py": 50.0, "tests/c.py": 0.5}

    ordered = ordering.longest_first(collected, times)

    assert [item.nodeid for item in ordered] == [
        "tests/b/test_y.py::one",
        "tests/a/test_x.py::one",
        "tests/a/test_x.py::two",
        "tests/c.py::t",
    ]


def test_a_file_missing_from_the_table_goes_before_the_short_ones() -> None:
    collected = items("tests/short.py::t", "tests/new.py::t", "tests/long.py::t")
    times = {"tests/short.py": 1.0, "tests/long.py": ordering.UNKNOWN_FILE_SECONDS + 1}

    ordered = [item.nodeid for item in ordering.longest_first(collected, times)]

    assert ordered == ["tests/long.py::t", "tests/new.py::t", "tests/short.py::t"]


def test_files_that_share_a_costly_fixture_are_one_unit_placed_by_their_summed_time() -> None:
    collected = items("tests/a.py::t", "tests/b.py::t", "tests/c.py::t", "tests/d.py::t")
    times = {"tests/a.py": 30.0, "tests/b.py": 20.0, "tests/c.py": 40.0, "tests/d.py": 1.0}
    groups = (("tests/b.py", "tests/d.py"),)

    ordered = [item.nodeid for item in ordering.longest_first(collected, times, groups)]

    assert ordered == ["tests/c.py::t", "tests/a.py::t", "tests/b.py::t", "tests/d.py::t"]
    assert ordering.unit_of("tests/d.py", groups) == ordering.unit_of("tests/b.py", groups) == "tests/b.py"
    assert ordering.unit_of("tests/a.py", groups) == "tests/a.py"


def test_the_files_grouped_on_one_worker_exist_and_share_the_platform() -> None:
    for group in ordering.SAME_WORKER:
        for path in group:
            assert "platform: LocalPlatform" in (REPO / path).read_text(), f"{path} does not use the platform"


def test_the_table_is_read_from_a_junit_report_summed_per_file(tmp_path: Path) -> None:
    report = tmp_path / "suite.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.moves.test_fence" name="a" time="1.25"/>'
        '<testcase classname="tests.moves.test_fence.TestGroup" name="b" time="2.5"/>'
        '<testcase classname="tests.test_ci" name="c" time="0.5"/>'
        "</testsuite></testsuites>"
    )

    assert ordering.times_from_junit(report) == {"tests/moves/test_fence.py": 3.8, "tests/test_ci.py": 0.5}


def test_every_file_in_the_checked_in_table_exists() -> None:
    times = ordering.file_times()
    assert times, f"{ordering.TABLE} is empty or missing"
    assert [path for path in times if not (REPO / path).is_file()] == []


def test_the_parallel_part_keeps_the_collection_order_of_the_files() -> None:
    (_, parallel), _ = suite.parts(2, [])
    assert "--no-loadscope-reorder" in parallel and parallel[parallel.index("--dist") + 1] == "loadfile"
