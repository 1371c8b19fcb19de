"""`start` measures the throttle baseline over SHARDMOVE['THROTTLE_BASELINE_WINDOWS'] windows, five unless set."""

from __future__ import annotations

from typing import Any

import pytest

from migrations_tooling.conf import get_settings
from migrations_tooling.throttle_baseline import BASELINE_WINDOWS
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, latest_move, seed, shardmove


def test_five_windows_unless_set_and_never_fewer_than_one(settings: Any) -> None:
    settings.SHARDMOVE = {k: v for k, v in settings.SHARDMOVE.items() if k != "THROTTLE_BASELINE_WINDOWS"}
    assert get_settings().throttle_baseline_windows == BASELINE_WINDOWS == 5
    settings.SHARDMOVE = {**settings.SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": 0}
    assert get_settings().throttle_baseline_windows == 1


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_start_measures_as_many_windows_as_set_and_takes_the_second_lowest(settings: Any) -> None:
    settings.SHARDMOVE = {**settings.SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": 2}
    seed(Ledger(), "shard1", [10, 600], per_user=5)
    shardmove("start", "0", "500", "--to", "shard3")
    throttle = latest_move().throttle
    assert len(throttle["baseline_windows_ms"]) == 2
    assert throttle["baseline_ms"] == max(throttle["baseline_windows_ms"])  # the second lowest of two
    shardmove("cancel", str(latest_move().id))
