"""The scale-out topology: N shard servers, one shard database each, each server in a CPU-capped cgroup.

The default topology must stay exactly as it is (``make run`` and every other test rely on it); the
scale-out one starts real PostgreSQL servers and real cgroup v1 folders, and leaves neither behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench import bench_scaleout
from quantumquill.devstack import cgroups
from quantumquill.devstack.preflight import DevstackError
from quantumquill.devstack.stack import (
    DEFAULT_TOPOLOGY,
    EMBEDDED_SHARD_MAP,
    REPO_ROOT,
    STATE_ENV,
    Profile,
    Stack,
    Topology,
    scaleout_topology,
)


def test_the_default_topology_is_the_three_server_one_make_run_and_the_tests_use() -> None:
    stack = Stack(Profile("any", Path("/nonexistent"), durable=False))
    assert stack.topology == DEFAULT_TOPOLOGY
    assert stack.topology.servers == ("pg0", "pg1", "pg2")
    assert stack.topology.databases["shard3"] == ("pg1", "qq_shard3")
    assert stack.topology.shard_map == EMBEDDED_SHARD_MAP
    assert stack.cpu_cap is None


def test_a_scaleout_topology_puts_one_shard_database_on_each_server_and_everyone_on_shard1() -> None:
    topology = scaleout_topology(4)
    assert topology.servers == ("pg1", "pg2", "pg3", "pg4")
    assert [topology.databases[f"shard{i}"] for i in range(1, 5)] == [(f"pg{i}", f"qq_shard{i}") for i in range(1, 5)]


def test_a_scaleout_topology_keeps_the_control_database_beside_shard1_as_the_benchmark_measures_it() -> None:
    # One topology for the command and the benchmark: the platform on one server is one (capped) machine.
    for servers in (1, 2, 4):
        topology = scaleout_topology(servers)
        assert topology.control_server == topology.databases["shard1"][0] == "pg1"
        assert topology.shard_servers == topology.servers
    assert bench_scaleout.TOPOLOGY.databases["default"] == scaleout_topology(4).databases["default"]
    assert topology.shard_map == "0:MAX=shard1"
    with pytest.raises(DevstackError, match="between 1 and 16"):
        scaleout_topology(0)


def test_a_server_is_capped_when_it_holds_a_shard_database_even_with_the_control_database_beside_it() -> None:
    # The platform on one server (control + content) is one capped machine; a server with only the control
    # database is measured, never capped.
    assert scaleout_topology(2).shard_servers == ("pg1", "pg2")
    one_server = Topology({"default": ("pg1", "quantumquill"), "shard1": ("pg1", "qq_shard1")}, "0:MAX=default")
    assert one_server.servers == one_server.shard_servers == ("pg1",)
    assert DEFAULT_TOPOLOGY.shard_servers == ("pg1", "pg2")


def test_cpu_caps_say_plainly_when_the_cpu_controller_is_missing(tmp_path: Path) -> None:
    reason = cgroups.unavailable_reason(tmp_path)
    assert reason is not None and "not mounted" in reason
    with pytest.raises(cgroups.CgroupsUnavailable, match="CPU caps are not available"):
        cgroups.CpuCgroup("x", cpu_root=tmp_path).create(0.25)
    with pytest.raises(DevstackError, match="1 ms minimum quota"):
        cgroups.CpuCgroup("x", cpu_root=tmp_path).create(0.005)


def test_a_process_leaves_a_cgroup_for_the_root_one_and_the_cgroup_can_then_be_removed() -> None:
    group = cgroups.CpuCgroup(f"qq-test-leave-{os.getpid()}")
    if cgroups.unavailable_reason() is not None:
        with pytest.raises(cgroups.CgroupsUnavailable):
            group.create(0.5)
        return
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        group.create(0.5)
        group.add(sleeper.pid)
        assert group.pids() == [sleeper.pid]
        group.leave(sleeper.pid)
        assert group.pids() == []
        for folder in group.folders:  # back in the root cgroup of each hierarchy (cpu, and cpuacct when apart)
            assert str(sleeper.pid) in (folder.parent / "cgroup.procs").read_text().split()
        group.remove()
        assert not any(folder.exists() for folder in group.folders)
    finally:
        sleeper.kill()
        sleeper.wait()
        if group.exists():
            group.remove()


@pytest.fixture
def stack_folder() -> Iterator[Path]:
    """A folder the servers' unprivileged user can reach: next to this run's own test stack."""
    folder = Path(os.environ[STATE_ENV]).parent / "scaleout"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_four_shard_servers_start_each_with_its_database_in_a_capped_cgroup_and_leave_nothing_behind(
    stack_folder: Path,
) -> None:
    stack = Stack(
        Profile("scaleout", stack_folder, durable=False, fresh=True), topology=scaleout_topology(4), cpu_cap=0.25
    )
    if cgroups.unavailable_reason() is not None:
        # Where the controller is missing (no root, cgroup v2 only) the stack refuses before starting anything.
        with pytest.raises(cgroups.CgroupsUnavailable):
            stack.up()
        assert not stack.state_file.exists()
        return
    env = stack.up()
    try:
        urls = dict(part.split("=", 1) for part in env["SHARD_DATABASE_URLS"].split(","))
        assert sorted(urls) == ["shard1", "shard2", "shard3", "shard4"]
        ports = {stack.ports[f"pg{i}"] for i in range(1, 5)}
        assert len(ports) == 4, stack.ports  # four separate servers
        for index in range(1, 5):
            server = stack.postgres(f"pg{index}")
            with psycopg.connect(server.conninfo(f"qq_shard{index}"), autocommit=True) as conn:
                mine = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'qq_%'")]
                assert mine == [f"qq_shard{index}"]  # one shard database per server
                backend = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert backend is not None
                group = stack.cgroup(f"pg{index}")
                # The postmaster, its helpers and a backend forked after placement are all in the server's cgroup.
                assert server.postmaster_pid() in group.pids()
                assert backend[0] in group.pids()
                assert (group.folders[0] / "cpu.cfs_quota_us").read_text().strip() == "25000"
                assert (group.folders[0] / "cpu.shares").read_text().strip() == str(cgroups.HIGH_SHARES)
                before = group.usage_seconds()
                conn.execute("SELECT count(*) FROM generate_series(1, 300000)")
                assert group.usage_seconds() > before  # cpuacct counts the server's work
        # The control database shares pg1 with shard1, under pg1's cap.
        with psycopg.connect(stack.postgres("pg1").conninfo("quantumquill"), autocommit=True) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert backend is not None and backend[0] in stack.cgroup("pg1").pids()
        assert env["DATABASE_URL"] == stack.postgres("pg1").url("quantumquill")
    finally:
        stack.down()
    for name in stack.topology.servers:
        assert not stack.postgres(name).is_running()
        assert not any(folder.exists() for folder in stack.cgroup(name).folders)


@pytest.mark.slow
def test_the_control_server_is_capped_when_it_also_holds_the_shard_database(stack_folder: Path) -> None:
    topology = Topology({"default": ("pg1", "quantumquill"), "shard1": ("pg1", "qq_shard1")}, "0:MAX=default")
    stack = Stack(Profile("scaleout", stack_folder, durable=False, fresh=True), topology=topology, cpu_cap=0.25)
    if cgroups.unavailable_reason() is not None:
        with pytest.raises(cgroups.CgroupsUnavailable):
            stack.up()
        return
    stack.up()
    try:
        group = stack.cgroup("pg1")
        assert stack.postgres("pg1").postmaster_pid() in group.pids()
        assert (group.folders[0] / "cpu.cfs_quota_us").read_text().strip() == "25000"
    finally:
        stack.down()
    assert not any(folder.exists() for folder in stack.cgroup("pg1").folders)


@pytest.mark.slow
def test_devstack_exec_runs_a_command_against_n_shard_servers(stack_folder: Path) -> None:
    probe = "import os; print(os.environ['SHARD_DATABASE_URLS'].count('=')); print(os.environ['QQ_EMBEDDED_SHARD_MAP'])"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantumquill.devstack",
            "exec",
            "--shard-servers",
            "2",
            "--",
            sys.executable,
            "-c",
            probe,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "0:MAX=shard1"]
