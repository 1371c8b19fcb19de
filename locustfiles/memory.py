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


def _cmdline(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


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


def find_gunicorn_master(proc: Path = PROC, wsgi_module: str = "quantumquill.wsgi") -> int | None:
    """The gunicorn master serving ``wsgi_module`` on this machine (the oldest such process), if any."""
    candidates = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        command = _cmdline(pid, proc)
        if "gunicorn" in command and wsgi_module in command:
            parent = _parent(pid, proc)
            if parent is not None and "gunicorn" not in _cmdline(parent, proc):
                candidates.append(pid)
    return min(candidates) if candidates else None


class GunicornMemory:
    """Samples the RSS of a gunicorn master's workers (workers come and go; each sample finds them again)."""

    def __init__(self, master_pid: int | None, proc: Path = PROC) -> None:
        self.master_pid = master_pid
        self.proc = proc
        self.started = time.monotonic()

    @classmethod
    def discover(cls, app_pid: int = 0) -> GunicornMemory:
        if app_pid:
            return cls(app_pid)
        return cls(find_gunicorn_master())

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
    warmup_samples: int


def memory_trend(samples: list[MemorySample], warmup_fraction: float = 0.2) -> MemoryTrend | None:
    """Least-squares growth of the workers' RSS, ignoring the first part (caches and imports warming up)."""
    if len(samples) < 3:
        return None
    skip = min(int(len(samples) * warmup_fraction), len(samples) - 3)
    steady = samples[skip:]
    xs = [s.elapsed_s / 3600 for s in steady]
    ys = [s.workers_rss_mb for s in steady]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    return MemoryTrend(
        samples=len(samples),
        first_mb=samples[0].workers_rss_mb,
        last_mb=samples[-1].workers_rss_mb,
        peak_mb=max(s.workers_rss_mb for s in samples),
        slope_mb_per_hour=round(slope, 2),
        warmup_samples=skip,
    )
