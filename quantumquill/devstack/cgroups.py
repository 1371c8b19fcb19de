"""CPU caps for embedded servers: one cgroup v1 ``cpu`` (+ ``cpuacct``) folder per server.

A capped server gets ``cap`` CPUs at most (``cpu.cfs_quota_us`` = cap x
``cpu.cfs_period_us``) and a high ``cpu.shares``, so on a busy machine it still
gets its quota; ``cpuacct.usage`` counts the CPU time it used. Placing a
PostgreSQL server moves its postmaster and every process it already forked;
backends forked later inherit the cgroup.

Needs the cgroup v1 ``cpu`` controller mounted at ``/sys/fs/cgroup/cpu`` and
writable (root). ``require_available`` says plainly when it is not.

The one place for cgroup v1 CPU handling: the stack's server caps, and the
benchmarks' caps and high-shares groups (``bench/cpu_shares.py`` wraps a whole
command in one with no cap).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .preflight import DevstackError

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
PERIOD_US = 100_000
MIN_QUOTA_US = 1_000
HIGH_SHARES = 8192  # the default is 1024: capped servers get their quota even when other work loads the machine


class CgroupsUnavailable(DevstackError):
    """CPU caps were asked for but this machine cannot give them."""


def _cpuacct_root(cpu_root: Path) -> Path:
    # `cpu,cpuacct` mounted together (most distributions) or apart (each at its own folder).
    return cpu_root if (cpu_root / "cpuacct.usage").exists() else CPUACCT_ROOT


def unavailable_reason(cpu_root: Path = CPU_ROOT) -> str | None:
    """Why CPU caps cannot be used here, or None when they can."""
    if not (cpu_root / "cpu.cfs_quota_us").exists():
        return (
            f"the cgroup v1 cpu controller is not mounted at {cpu_root} (cgroup v2-only hosts and most "
            "containers lack it); run on a host or VM with cgroup v1, or without CPU caps"
        )
    if not (_cpuacct_root(cpu_root) / "cpuacct.usage").exists():
        return f"the cgroup v1 cpuacct controller is not mounted (looked in {cpu_root} and {CPUACCT_ROOT})"
    for root in dict.fromkeys((cpu_root, _cpuacct_root(cpu_root))):  # one folder when mounted together
        if not os.access(root, os.W_OK):
            return f"{root} is not writable: CPU caps need root (run as root, or without CPU caps)"
    return None


def require_available(cpu_root: Path = CPU_ROOT) -> None:
    reason = unavailable_reason(cpu_root)
    if reason:
        raise CgroupsUnavailable(f"CPU caps are not available: {reason}.")


@dataclass(frozen=True)
class CpuCgroup:
    """One folder in the cpu hierarchy (and its twin in cpuacct when mounted apart)."""

    name: str
    cpu_root: Path = CPU_ROOT

    @property
    def folders(self) -> tuple[Path, ...]:
        acct = _cpuacct_root(self.cpu_root) / self.name
        cpu = self.cpu_root / self.name
        return (cpu,) if acct == cpu else (cpu, acct)

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Write a PID into each to move that process into the cgroup (a child can join itself before it execs)."""
        return tuple(folder / "cgroup.procs" for folder in self.folders)

    def exists(self) -> bool:
        return self.folders[0].is_dir()

    def create(self, cap: float | None, *, shares: int = HIGH_SHARES, period_us: int = PERIOD_US) -> CpuCgroup:
        """Create (or reset) the cgroup: at most ``cap`` CPUs (None: no cap) and ``shares`` weight."""
        if cap is not None and round(cap * period_us) < MIN_QUOTA_US:
            raise DevstackError(
                f"A CPU cap of {cap} CPU in a {period_us} us period is below the kernel's 1 ms minimum quota; "
                "use a larger cap or a longer period."
            )
        require_available(self.cpu_root)
        for folder in self.folders:
            folder.mkdir(exist_ok=True)
        (self.folders[0] / "cpu.shares").write_text(str(shares))
        self.set_cap(cap, period_us=period_us)
        return self

    def set_cap(self, cap: float | None, *, period_us: int = PERIOD_US) -> None:
        """Change the cap of a running cgroup (None lifts it)."""
        cpu = self.folders[0]
        (cpu / "cpu.cfs_quota_us").write_text("-1")  # a quota above the new period would be refused
        (cpu / "cpu.cfs_period_us").write_text(str(period_us))
        if cap is not None:
            (cpu / "cpu.cfs_quota_us").write_text(str(round(cap * period_us)))

    def add(self, pid: int) -> None:
        """Move the process (all its threads) into the cgroup; its future children start there too."""
        for folder in self.folders:
            try:
                (folder / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                return  # it exited meanwhile (a backend whose client left): nothing to cap

    def leave(self, pid: int) -> None:
        """Move the process back to the root cgroup (of each hierarchy), e.g. before ``remove`` of its own."""
        for folder in self.folders:
            try:
                (folder.parent / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                return

    def pids(self) -> list[int]:
        text = (self.folders[0] / "cgroup.procs").read_text() if self.exists() else ""
        return [int(line) for line in text.split()]

    def usage_seconds(self) -> float:
        """CPU time used by the cgroup's processes since it was created."""
        return int((self.folders[-1] / "cpuacct.usage").read_text()) / 1e9

    def cpu_stat(self) -> dict[str, int]:
        """The cap's counters (``cpu.stat``): ``nr_periods``, ``nr_throttled`` (periods in which the cap held the
        cgroup back) and ``throttled_time`` (nanoseconds, summed over the CPUs it was held back on)."""
        pairs = (line.split() for line in (self.folders[0] / "cpu.stat").read_text().splitlines())
        return {key: int(value) for key, value in pairs}

    def throttled_seconds(self) -> float:
        """Time the cap held the cgroup back (``cpu.stat`` throttled_time)."""
        return self.cpu_stat().get("throttled_time", 0) / 1e9

    def remove(self, timeout: float = 10.0) -> None:
        """Move any process left back to the root cgroup, then delete the folders."""
        deadline = time.monotonic() + timeout
        for folder in reversed(self.folders):
            if not folder.is_dir():
                continue
            while True:
                for pid in (folder / "cgroup.procs").read_text().split():
                    try:
                        (folder.parent / "cgroup.procs").write_text(pid)
                    except ProcessLookupError:
                        pass
                try:
                    folder.rmdir()
                    break
                except OSError:  # EBUSY: a process was still leaving
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def place_tree(cgroup: CpuCgroup, root_pid: int) -> int:
    """Move a server's whole process tree into ``cgroup``; returns how many processes moved."""
    pids = process_tree(root_pid)
    for pid in pids:
        cgroup.add(pid)
    return len(pids)
