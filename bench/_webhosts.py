"""Network-namespace "hosts" for the web-tier scale-out benchmark (root only).

On loopback a request never crosses a network. Each app server in a network
namespace of its own, joined to the others by veth pairs on a bridge with
``tc netem`` delay, pays a real hop (and the kernel's packet path) to nginx and
to PostgreSQL and Redis, as on separate hosts.

The benchmark's CPU caps (each app server a small machine of its own, with a
high ``cpu.shares`` so that it gets its quota on a busy machine) are
``quantumquill.devstack.cgroups.CpuCgroup``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field


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
