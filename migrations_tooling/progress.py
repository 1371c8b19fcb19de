"""How the engine reports what it does: a small interface the command implements (no print() here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class Reporter:
    """Receives the engine's messages. This base class drops them (services called from code)."""

    def info(self, message: str) -> None:
        """A step taken or a fact found."""

    def warning(self, message: str) -> None:
        """Something the operator should look at; the work goes on."""

    def progress(self, message: str) -> None:
        """A progress line of long work (rate and ETA included); may be throttled by the receiver."""

    def should_stop(self) -> bool:
        """True once the operator asked the command to stop (SIGINT/SIGTERM)."""
        return False


@contextmanager
def timed(timings: dict[str, float], slot: str) -> Iterator[None]:
    """Add the seconds the block took to ``timings[slot]`` (also when it raises)."""
    started = time.monotonic()
    try:
        yield
    finally:
        timings[slot] = timings.get(slot, 0.0) + time.monotonic() - started


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


@dataclass
class Meter:
    """Counts work done against a total and derives rate and ETA."""

    total: int | None
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    def add(self, amount: int) -> None:
        self.done += amount

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(0, self.total - self.done) / self.rate

    def line(self, what: str, unit: str = "rows") -> str:
        total = f"/{self.total:,}" if self.total is not None else ""
        return (
            f"{what}: {self.done:,}{total} {unit}, {self.rate:,.0f} {unit}/s, "
            f"elapsed {format_duration(self.elapsed)}, ETA {format_duration(self.eta)}"
        )
