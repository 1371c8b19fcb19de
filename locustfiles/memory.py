"""App-server memory for the soak shape: RSS of the gunicorn workers, read from /proc, and its trend.

Reading /proc needs no extra package and works for any process of the same
machine. When the app server runs elsewhere there is nothing to read; the
soak still runs and its report says memory was not sampled.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class MemorySample:
    elapsed_s: float
    workers: int
    workers_rss_mb: float
    master_rss_mb: float


def rss_mb(pid: int, proc: Path = PROC) -> float | None:
    """Resident set size of a process in MiB, or None when it is gone."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return 0.0


def _parent(pid: int, proc: Path) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int, proc: Path = PROC) -> list[int]:
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and _parent(int(entry.name), proc) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def find_listening_master(port: int, proc: Path = PROC) -> int | None:
    """The process tree's root among the processes holding the socket listening on ``port`` (gunicorn's master).

    gunicorn's workers inherit the listening socket, so the master is the
    holder whose parent does not hold it. None when nothing on this machine
    listens there (the app server is elsewhere) or its file descriptors
    cannot be read.
    """
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & wanted:
            holders.add(int(entry.name))
    roots = [pid for pid in holders if _parent(pid, proc) not in holders]
    return min(roots) if roots else None


class GunicornMemory:
    """Samples the RSS of a gunicorn master's workers (workers come and go; each sample finds them again)."""

    def __init__(self, master_pid: int | None, proc: Path = PROC) -> None:
        self.master_pid = master_pid
        self.proc = proc
        self.started = time.monotonic()

    @classmethod
    def discover(cls, *, app_pid: int = 0, port: int | None = None) -> GunicornMemory:
        """The given master, else the one listening on ``port`` on this machine, else nothing to sample."""
        if app_pid:
            return cls(app_pid)
        return cls(find_listening_master(port) if port else None)

    @property
    def available(self) -> bool:
        return self.master_pid is not None and (self.proc / str(self.master_pid)).exists() and os.name == "posix"

    def sample(self) -> MemorySample | None:
        if not self.available or self.master_pid is None:
            return None
        master = rss_mb(self.master_pid, self.proc)
        if master is None:
            return None
        worker_rss = [value for pid in children(self.master_pid, self.proc) if (value := rss_mb(pid, self.proc))]
        return MemorySample(
            elapsed_s=round(time.monotonic() - self.started, 1),
            workers=len(worker_rss),
            workers_rss_mb=round(sum(worker_rss), 1),
            master_rss_mb=round(master, 1),
        )


@dataclass(frozen=True)
class MemoryTrend:
    samples: int
    first_mb: float
    last_mb: float
    peak_mb: float
    slope_mb_per_hour: float  # least squares over the samples after warm-up
    late_slope_mb_per_hour: float  # least squares over the last half of those: what the verdict uses
    warmup_samples: int

    @property
    def reading(self) -> str:
        """Warm-up slows down (caches fill once); a leak keeps its pace."""
        if self.late_slope_mb_per_hour <= 1:
            return "flat"
        if self.late_slope_mb_per_hour < 0.75 * self.slope_mb_per_hour:
            return "growth slowing (warming up)"
        return "steady growth (a leak, unless the run is too short to tell)"


def _slope_per_hour(samples: list[MemorySample]) -> float:
    xs = [s.elapsed_s / 3600 for s in samples]
    ys = [s.workers_rss_mb for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def memory_trend(samples: list[MemorySample], warmup_fraction: float = 0.2) -> MemoryTrend | None:
    """Growth of the workers' RSS after warm-up (the first part: imports, caches), and over its last half.

    A leak grows at the same pace all along; warm-up growth slows down. The
    late slope is what a long run would settle on, so it is the one judged.
    """
    if len(samples) < 6:
        return None
    skip = min(int(len(samples) * warmup_fraction), len(samples) - 6)
    steady = samples[skip:]
    return MemoryTrend(
        samples=len(samples),
        first_mb=samples[0].workers_rss_mb,
        last_mb=samples[-1].workers_rss_mb,
        peak_mb=max(s.workers_rss_mb for s in samples),
        slope_mb_per_hour=round(_slope_per_hour(steady), 2),
        late_slope_mb_per_hour=round(_slope_per_hour(steady[len(steady) // 2 :]), 2),
        warmup_samples=skip,
    )
