"""The web-tier scale-out benchmark's isolation holds: CPU cgroups and network namespaces really contain gunicorn.

Invariants: an app server started with ``cgroup_procs`` has its master and every worker inside the cgroup (so the
CPU cap covers all of it, not only the process that was started); one started in a network namespace answers at
its namespace address and not on the root namespace's loopback; removing the groups and namespaces leaves nothing
behind. Needs root and cgroup v1 (the benchmark's own requirement).
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from bench._webhosts import NetnsHosts
from quantumquill.devstack.cgroups import CpuCgroup, unavailable_reason
from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer
from tests.conftest import child_env
from tests.support import wait_until

PROBLEM = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROBLEM is not None, reason=f"benchmark isolation: {PROBLEM}")]


def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(line) for line in found.stdout.split()}


def test_a_capped_namespaced_app_server_runs_wholly_inside_its_cgroup_and_namespace(tmp_path: Path) -> None:
    group = CpuCgroup(f"qq-test-isolation-{os.getpid()}")
    hosts = NetnsHosts(["app1"], delay_ms=0, prefix="qqt", subnet="10.78.0")
    address = hosts.address("app1")
    server = GunicornServer(
        "app1",
        free_port(),
        child_env(DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS=f"127.0.0.1,{address}"),
        tmp_path,
        workers=2,
        threads=1,
        host=address,
        netns=hosts.netns("app1"),
        cgroup_procs=group.procs_files,
    )
    try:
        group.create(0.5)
        hosts.create()
        server.start()
        assert server.process is not None
        master = server.process.pid
        wait_until(lambda: len(_children(master)) == 2, what="gunicorn's two workers")
        assert {master, *_children(master)} <= set(group.pids())

        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as answer:
            assert answer.status == 200
        assert group.usage_seconds() > 0
        with socket.socket() as loopback:  # the root namespace's loopback has nothing on that port
            assert loopback.connect_ex(("127.0.0.1", server.port)) != 0
    finally:
        server.stop(timeout=5)
        hosts.remove()
        group.remove()

    assert not any(folder.exists() for folder in group.folders)
    assert hosts.netns("app1") not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", hosts.bridge], capture_output=True).returncode != 0
