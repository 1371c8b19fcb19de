"""Fixtures shared by the folders whose tests run live moves (tests/moves, tests/analytics, tests/pgbouncer).

Each folder's conftest imports the ones it needs (a function-scoped fixture imported into several folders is still
one per test).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.moves.settings import CHEAP_PASSWORD_HASHERS, QUICK_BASELINE_WINDOWS, QUICK_MAP_REFRESH_SECONDS


@pytest.fixture(autouse=True)
def quick_moves(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter fixed waits of the move engine, in this process and in the child processes the test starts.

    * A one-window throttle baseline: `shardmove start` measures the probe for 1 s instead of 5 s before the copy.
      The measurement, the gate and the controller are the same code; only the number of windows the second lowest
      is taken from changes. Only the throttle tests read the baseline: the throttle test that sees the copy
      engage and release under source load keeps the default five windows (its `Operator` runs with the project's
      settings), test_baseline_windows.py checks the setting.
    * A 0.25 s shard-map refresh (1 s by default): `complete` and `cancel` wait 2 x 0.25 + 0.5 = 1 s instead of
      2.5 s for a new map to spread before they delete rows. The rule is the same, and the processes it protects
      (the write load's threads, the children a test starts) refresh at the same shorter interval, so it protects
      them as the default protects a deployment.

    Child processes get the same values from ``tests.moves.settings`` (``Operator``) or from the environment.
    """
    settings.SHARDMOVE = {**settings.SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": QUICK_BASELINE_WINDOWS}
    settings.SHARDROUTER = {**settings.SHARDROUTER, "REFRESH_INTERVAL": QUICK_MAP_REFRESH_SECONDS}
    monkeypatch.setenv("SHARDMAP_REFRESH_INTERVAL", str(QUICK_MAP_REFRESH_SECONDS))


@pytest.fixture(autouse=True)
def cheap_passwords(settings: Any) -> None:
    """Hash test passwords with MD5: hashing one with PBKDF2 takes 0.3 s of CPU (a warehouse test made 20 users),
    and no test here is about the hash. A child process that checks a password (an app server a browser logs in
    to) must run with ``tests.moves.settings``, which lists the same hashers."""
    settings.PASSWORD_HASHERS = CHEAP_PASSWORD_HASHERS
