"""The throttle's baseline, kept current during the copy: the probe's p95 in windows where the copy stood still.

A baseline measured once, before the copy, fixes the budget for hours on a
machine whose latency drifts: taken in a busy moment it sets a loose budget
the copy never meets (the users pay), taken in a quiet one it holds the copy
back whenever anything else slows the source down (the copy starves). While
the gate is shut the source does no copy work (its ``COPY`` blocks on a full
socket once the little the target had buffered is read), so the probe's
p95 then is the source's latency without the copy, *now*. ``QuietWindows``
collects whole ``WINDOW``-long windows of probes taken while the gate stood
shut (after ``SETTLE`` seconds, for the buffered copy work to drain) and keeps
the baseline as ``baseline_of`` the last ``BASELINE_WINDOWS`` of them, seeded
with the windows measured before the copy: one window slowed by something
else moves it by at most one place, as before the copy.

Which windows count is the controller's choice, and it matters: the gate
shuts by itself when the source is slow, so windows taken whenever it happens
to be shut are taken in slow moments and pull the baseline (and a budget
derived from it) up. The controller therefore measures on a clock of its own,
every ``REBASE_EVERY`` seconds, shutting the gate for the window if it is open.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

WINDOW = 1.0  # the p95 is taken over the probes of each WINDOW seconds (the baseline's and the controller's)
BASELINE_WINDOWS = 5  # the baseline comes from this many whole windows (before the copy, then quiet ones)
SETTLE = 0.3  # seconds the gate stands shut before a probe counts as quiet (the target's buffered rows drain)
REBASE_EVERY = 15.0  # the controller shuts the gate for a quiet window this often, whatever the source's state
MIN_SAMPLES = 10  # a window with fewer probes (a stalled follower) is not a measurement


def baseline_of(windows: Iterable[float]) -> float:
    """The baseline of window p95s: the second lowest of the (five) windows.

    Everything that disturbs a probe adds to its time (the follower's own
    scheduling on a busy machine, another process on the source): a slow
    window says little about the source's own latency, and on a loaded machine
    three windows of five read 2x-10x the others. The second lowest is set by
    neither one unusually fast window nor up to three slow ones (the median
    resists two); it errs towards a tighter budget, a slower copy rather than
    slower reads.
    """
    ordered = sorted(windows)
    return ordered[min(1, len(ordered) - 1)]


def p95(samples: list[float]) -> float:
    """The 95th percentile of ``samples`` (nearest rank; the largest of fewer than 20)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class QuietWindows:
    """The probe's p95 in whole windows taken while the gate stood shut, and the baseline they give."""

    def __init__(self, seed: Iterable[float]) -> None:
        self.windows: deque[float] = deque(seed, maxlen=BASELINE_WINDOWS)
        self.taken = 0  # quiet windows measured during the copy
        self._current: list[float] = []
        self._current_since: float | None = None

    def add(self, at: float, ms: float, *, shut_since: float | None) -> bool:
        """Record one probe taken at ``at`` (monotonic) with the gate shut since ``shut_since`` (None: open);
        True when it completed a quiet window (the baseline moved)."""
        if shut_since is None or at - shut_since < SETTLE:
            self._current, self._current_since = [], None  # a partial window is not a window
            return False
        if self._current_since is None:
            self._current_since = at
        self._current.append(ms)
        if at - self._current_since < WINDOW:
            return False
        complete = len(self._current) >= MIN_SAMPLES
        if complete:
            self.windows.append(round(p95(self._current), 3))
            self.taken += 1
        self._current, self._current_since = [], None
        return complete

    def baseline(self) -> float | None:
        """``baseline_of`` the kept windows (None: none measured, before or during the copy)."""
        return baseline_of(self.windows) if self.windows else None
