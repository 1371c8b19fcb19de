"""CPU-capped cgroups and network-namespace "hosts" for the web-tier scale-out benchmark (root only).

Why caps: on one 2-core machine, two app servers would otherwise share the same
cores as one does, so "add a server" would add nothing but contention. Giving
every app server the same fixed CPU quota (cgroup v1 ``cpu.cfs_quota_us``)
makes each one a small machine of its own; a high ``cpu.shares`` makes sure it
gets that quota even while other work runs on the machine.

Why namespaces: on loopback a request never crosses a network. Each app server
in a network namespace of its own, joined to the others by veth pairs on a
bridge with ``tc netem`` delay, pays a real hop (and the kernel's packet path)
to nginx and to PostgreSQL and Redis, as on separate hosts.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
PERIOD_US = 100_000


def cgroup_problem() -> str | None:
    """None when cgroup v1 cpu and cpuacct controllers can be used here, else what is missing and what to do."""
    if os.geteuid() != 0:
        return "the CPU caps need root (cgroup v1 folders under /sys/fs/cgroup/cpu are root's): run as root"
    for root, needed in ((CPU_ROOT, "cpu.cfs_quota_us"), (CPUACCT_ROOT, "cpuacct.usage")):
        if not (root / needed).exists():
            return (
                f"no cgroup v1 controller at {root} ({needed} missing): this host runs cgroup v2 or does not mount "
                "it, so servers cannot get equal CPU caps; run on a cgroup v1 host (or mount the cpu,cpuacct "
                "controllers there)"
            )
        if not os.access(root, os.W_OK):
            return f"{root} is read-only here (a container without cgroup write access?): the CPU caps cannot be set"
    return None


@dataclass
class CpuGroup:
    """One cgroup in the cpu and cpuacct hierarchies: an optional CPU cap, a high share, a CPU-time counter."""

    name: str
    cpus: float | None  # cores of quota; None: uncapped
    shares: int = 8192
    _dirs: list[Path] = field(default_factory=list)

    def create(self) -> None:
        for root in dict.fromkeys((CPU_ROOT, CPUACCT_ROOT)):  # one folder when both share a mount
            folder = root / self.name
            folder.mkdir(exist_ok=True)
            self._dirs.append(folder)
        cpu = CPU_ROOT / self.name
        (cpu / "cpu.shares").write_text(str(self.shares))
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(int(self.cpus * PERIOD_US)) if self.cpus else "-1")

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Write a PID into each to move that process (and the children it forks later) into the group."""
        return tuple(root / self.name / "cgroup.procs" for root in dict.fromkeys((CPU_ROOT, CPUACCT_ROOT)))

    def join(self, pid: int = 0) -> None:
        for procs in self.procs_files:
            procs.write_text(str(pid or os.getpid()))

    def cpu_seconds(self) -> float:
        return int((CPUACCT_ROOT / self.name / "cpuacct.usage").read_text()) / 1e9

    def throttled_seconds(self) -> float:
        for line in (CPU_ROOT / self.name / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":
                return int(value) / 1e9
        return 0.0

    def remove(self) -> None:
        """Move any process left back to the root group, then remove the folders."""
        for folder in reversed(self._dirs):
            # A server in the group may fork while we move it out (a PostgreSQL backend): repeat until empty.
            for _ in range(50):
                if not folder.exists():
                    break
                for pid in (folder / "cgroup.procs").read_text().split():
                    try:
                        (folder.parent / "cgroup.procs").write_text(pid)
                    except OSError:
                        pass  # it exited meanwhile
                try:
                    folder.rmdir()
                except OSError:
                    time.sleep(0.1)
        self._dirs.clear()


def _ip(*args: str, netns: str = "") -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)


@dataclass
class NetnsHosts:
    """A bridge in the root namespace and one namespace per app server, with ``delay_ms`` on each side.

    Each namespace reaches the root namespace's loopback servers (PostgreSQL, Redis listen on 127.0.0.1) through
    a route to 127.0.0.1 via the bridge: ``route_localnet`` lets the kernels route loopback addresses over the
    veth pair, so the servers need no new listen address, only a pg_hba line for the subnet.
    """

    names: list[str]
    delay_ms: float = 0.25  # each way: 0.5 ms round trip
    prefix: str = "qqw"
    subnet: str = "10.77.0"
    # Why no delay could be added (tc netem missing from the kernel), else "": the hop is then veth + bridge only.
    delay_problem: str = ""
    created_netns: list[str] = field(default_factory=list)
    created_links: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br0"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    @property
    def cidr(self) -> str:
        return f"{self.subnet}.0/24"

    def address(self, name: str) -> str:
        return f"{self.subnet}.{11 + self.names.index(name)}"

    def netns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def create(self) -> None:
        _ip("ip", "link", "add", self.bridge, "type", "bridge")
        self.created_links.append(self.bridge)
        _ip("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("ip", "link", "set", self.bridge, "up")
        _ip("sysctl", "-qw", f"net.ipv4.conf.{self.bridge}.route_localnet=1")
        for index, name in enumerate(self.names):
            ns, host_end, ns_end = self.netns(name), f"{self.prefix}{index}h", f"{self.prefix}{index}n"
            _ip("ip", "netns", "add", ns)
            self.created_netns.append(ns)
            _ip("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self.created_links.append(host_end)
            _ip("ip", "link", "set", ns_end, "netns", ns)
            _ip("ip", "link", "set", host_end, "master", self.bridge, "up")
            self._delay(host_end)
            _ip("ip", "addr", "add", f"{self.address(name)}/24", "dev", ns_end, netns=ns)
            _ip("ip", "link", "set", ns_end, "up", netns=ns)
            _ip("sysctl", "-qw", f"net.ipv4.conf.{ns_end}.route_localnet=1", netns=ns)
            self._delay(ns_end, netns=ns)
            # The namespace's own loopback stays down, so 127.0.0.1 means the root namespace's servers.
            _ip("ip", "route", "add", "127.0.0.1/32", "via", self.gateway, "src", self.address(name), netns=ns)

    def _delay(self, link: str, *, netns: str = "") -> None:
        if self.delay_problem or not self.delay_ms:
            return
        try:
            _ip("tc", "qdisc", "add", "dev", link, "root", "netem", "delay", f"{self.delay_ms}ms", netns=netns)
        except subprocess.CalledProcessError as exc:
            self.delay_problem = (
                f"tc netem failed ({exc.stderr.strip() or exc.returncode}): this kernel has no sch_netem "
                "(modprobe sch_netem, or a kernel built with CONFIG_NET_SCH_NETEM), so the hop carries no added delay"
            )

    def remove(self) -> None:
        """Delete every namespace and link created (their veth peers and qdiscs go with them); safe to repeat."""
        for ns in reversed(self.created_netns):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for link in reversed(self.created_links):
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        self.created_netns.clear()
        self.created_links.clear()
