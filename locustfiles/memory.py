"""App-server memory for the soak shape: RSS of the gunicorn workers, read with psutil, and its trend.

psutil reads any process of the same machine (the load generator runs as the same user as the app server, or
as root). When the app server runs elsewhere there is nothing to read; the soak still runs and its report says
memory was not sampled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024


@dataclass(frozen=True)
class MemorySample:
    elapsed_s: float
    workers: int
    workers_rss_mb: float
    master_rss_mb: float


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB, or None when it is gone (or not ours to read)."""
    try:
        return float(psutil.Process(pid).memory_info().rss) / MIB
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers), sorted; none when it is gone."""
    try:
        return sorted(child.pid for child in psutil.Process(pid).children())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _listens_on(process: psutil.Process, port: int) -> bool:
    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for c in process.net_connections(kind="tcp")
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def find_listening_master(port: int) -> int | None:
    """The process tree's root among the processes holding the socket listening on ``port`` (gunicorn's master).

    gunicorn's workers inherit the listening socket, so the master is the
    holder whose parent does not hold it (psutil names one holder of a shared
    socket: climb from it). None when nothing on this machine listens there
    (the app server is elsewhere) or its owner cannot be seen.
    """
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    holder = min(
        (c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid),
        default=None,
    )
    if holder is None:
        return None
    try:
        process = psutil.Process(holder)
        while (parent := process.parent()) is not None and _listens_on(parent, port):
            process = parent
    except psutil.NoSuchProcess:
        return None
    return process.pid


class GunicornMemory:
    """Samples the RSS of a gunicorn master's workers (workers come and go; each sample finds them again)."""

    def __init__(self, master_pid: int | None) -> None:
        self.master_pid = master_pid
        self.started = time.monotonic()

    @classmethod
    def discover(cls, *, app_pid: int = 0, port: int | None = None) -> GunicornMemory:
        """The given master, else the one listening on ``port`` on this machine, else nothing to sample."""
        if app_pid:
            return cls(app_pid)
        return cls(find_listening_master(port) if port else None)

    @property
    def available(self) -> bool:
        return self.master_pid is not None and psutil.pid_exists(self.master_pid)

    def sample(self) -> MemorySample | None:
        if not self.available or self.master_pid is None:
            return None
        master = rss_mb(self.master_pid)
        if master is None:
            return None
        worker_rss = [value for pid in children(self.master_pid) if (value := rss_mb(pid))]
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
