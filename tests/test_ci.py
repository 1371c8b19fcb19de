"""CI enforces the tools: `.ci/run` lints, checks formatting and types, then runs `make test`, as `make check` does.

The Makefile is read with ``make -n`` (print, don't run) in a copy of the files it depends on, so these tests
see exactly the commands CI and a newcomer would run, without installing or starting anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support import suite

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-embedded.txt")
TYPED = ("quantumquill", "shardrouter", "apps", "migrations_tooling", "contentgen_service", "locustfiles")


def planned(target: str, folder: Path = REPO) -> list[str]:
    """The commands ``make TARGET`` would run from scratch (every prerequisite rebuilt)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "-C", str(folder), target],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def makefile_copy(tmp_path: Path) -> Path:
    for name in ("Makefile", *REQUIREMENTS):
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def test_ci_lints_and_type_checks_then_runs_the_readmes_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text().splitlines()
    commands = [line for line in script if line.strip() and not line.startswith("#")]
    assert commands[-3:] == ["make lint", "make typecheck", "make test"]
    readme = (REPO / "README.md").read_text()
    assert "make test   #" in readme.split("```")[1]  # the README's own test command


def test_make_check_lints_checks_formatting_and_types_then_runs_the_whole_suite() -> None:
    commands = planned("check")
    ruff_check = commands.index(".venv/bin/ruff check .")
    ruff_format = commands.index(".venv/bin/ruff format --check .")
    mypy = next(i for i, c in enumerate(commands) if "/mypy " in c)
    suite = next(i for i, c in enumerate(commands) if "-m tests.support.suite" in c)
    assert ruff_check < ruff_format < mypy < suite
    assert commands[mypy].split("/mypy ")[1].split() == list(TYPED)
    assert commands[suite].split("-m tests.support.suite", 1)[1].strip() == ""  # no selection: the whole suite


def test_the_two_parts_of_make_test_together_select_every_test() -> None:
    (_, parallel), (_, serial) = suite.parts(2, [])
    assert parallel[:3] == serial[:3] == [sys.executable, "-m", "pytest"]
    assert parallel[parallel.index("-m", 3) + 1] == "not serial" and "-n" in parallel
    assert serial[serial.index("-m", 3) + 1] == "serial" and "-n" not in serial
    assert [command[1:] for _, command in suite.parts(0, ["tests/moves"])] == [["-m", "pytest", "tests/moves"]]


def test_make_test_fails_when_either_part_fails_and_not_for_a_part_with_nothing_to_run() -> None:
    assert suite.combined_status([0, 0]) == 0
    assert suite.combined_status([1, 0]) == suite.combined_status([0, 1]) == 1
    assert suite.combined_status([0, suite.NO_TESTS_COLLECTED]) == 0  # a folder without serial tests
    assert suite.combined_status([1, suite.NO_TESTS_COLLECTED]) == 1
    assert suite.combined_status([suite.NO_TESTS_COLLECTED] * 2) == suite.NO_TESTS_COLLECTED


def test_a_bad_worker_count_is_refused_with_the_fix() -> None:
    assert suite.workers_from_env({"TEST_WORKERS": "2"}) == 2 and suite.workers_from_env({}) == 3
    with pytest.raises(SystemExit, match="TEST_WORKERS='two' is not a number of workers: use 0"):
        suite.workers_from_env({"TEST_WORKERS": "two"})


def test_make_test_fast_leaves_out_the_slow_tests() -> None:
    command = next(c for c in planned("test-fast") if "-m pytest" in c)
    assert command.split("-m pytest", 1)[1].strip().startswith('-m "not slow"')


def test_make_run_and_make_test_install_the_embedded_servers_wheels() -> None:
    for target in ("run", "test", "test-fast"):
        install = next(c for c in planned(target) if "pip install" in c and " -r " in c)
        assert "-r requirements-dev.txt" in install and "-r requirements-embedded.txt" in install, target


def test_the_install_stamp_changes_with_the_embedded_requirements(tmp_path: Path) -> None:
    folder = makefile_copy(tmp_path)

    def stamp() -> str:
        return next(c for c in planned("test", folder) if c.startswith("touch .venv/.installed-"))

    before = stamp()
    with (folder / "requirements-embedded.txt").open("a") as file:
        file.write("# a changed pin\n")
    assert stamp() != before


def test_mypy_reports_unused_ignores_and_checks_the_service_and_the_load_tests() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["warn_unused_ignores"] is True
    excluded = " ".join(config["exclude"])
    assert "locustfiles" not in excluded and "contentgen_service/gen/" in excluded


def test_the_pre_commit_hooks_run_the_same_tools_as_ci() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks["ruff-check"]["entry"].startswith(".venv/bin/ruff check")
    assert hooks["ruff-format"]["entry"].startswith(".venv/bin/ruff format --check")
    assert hooks["mypy"]["entry"] == "make typecheck" and hooks["mypy"]["pass_filenames"] is False
    for hook in hooks.values():
        assert hook["language"] == "system"
        tool = hook["entry"].split()[0]
        assert tool == "make" or (REPO / tool).exists(), f"{hook['id']}: {tool} is missing"
