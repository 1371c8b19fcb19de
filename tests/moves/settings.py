"""The project's settings with the move engine's shorter waits for tests, for the child processes of tests/moves.

The test process gets the same values from the ``quick_moves`` fixture (tests/moves/fixtures.py), which says why
they keep every test's meaning.
"""

from __future__ import annotations

from quantumquill.settings import *  # noqa: F403
from quantumquill.settings import SHARDMOVE, SHARDROUTER

# `start` measures its throttle baseline over one window of probes (1 s) instead of five.
QUICK_BASELINE_WINDOWS = 1
# Seconds between shard-map version checks (1 by default): `complete` and `cancel` wait 1 s, not 2.5 s, for a map.
QUICK_MAP_REFRESH_SECONDS = 0.25

SHARDMOVE = {**SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": QUICK_BASELINE_WINDOWS}
SHARDROUTER = {**SHARDROUTER, "REFRESH_INTERVAL": QUICK_MAP_REFRESH_SECONDS}
