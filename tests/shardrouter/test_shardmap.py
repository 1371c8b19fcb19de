"""The shard map: validated, versioned, all-or-nothing, and seen by every process within about a second."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

from shardrouter.errors import ShardMapConflict, ShardMapError
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.mapstore import apply_map, load_map_from_database
from shardrouter.models import ShardMapRevision
from shardrouter.shardmap import current_map
from tests.conftest import ALL_DATABASES, child_env

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def test_a_bad_map_is_refused_and_nothing_is_written() -> None:
    before = load_map_from_database()
    revisions = ShardMapRevision.objects.count()
    with pytest.raises(ShardMapError, match="overlap"):
        apply_map(
            [ShardRange(0, 2000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")],
            expected_version=before.version,
            reason="bad",
        )
    with pytest.raises(ShardMapError, match="gap"):
        apply_map([ShardRange(0, 1000, "shard1")], expected_version=before.version, reason="bad")
    assert ShardMapRevision.objects.count() == revisions
    assert load_map_from_database() == before


def test_an_edit_based_on_a_stale_version_is_refused() -> None:
    base = load_map_from_database()
    apply_map([ShardRange(0, KEYSPACE_END, "shard1")], expected_version=base.version, reason="first")
    with pytest.raises(ShardMapConflict, match="changed while this edit was prepared"):
        apply_map([ShardRange(0, KEYSPACE_END, "shard2")], expected_version=base.version, reason="second")
    assert load_map_from_database().write_alias(5) == "shard1"


def test_a_map_in_quarters_owned_by_one_database_is_stored_and_routed_as_one_range() -> None:
    # Sharded mode on one server before its first split (docs/scaling.md): the same map as the monolith's.
    base = load_map_from_database()
    step = KEYSPACE_END // 4
    edges = [0, step, 2 * step, 3 * step, KEYSPACE_END]
    stored = apply_map(
        [ShardRange(lo, hi, "shard1") for lo, hi in itertools.pairwise(edges)],
        expected_version=base.version,
        reason="quarters, one owner",
    )
    assert stored.ranges == (ShardRange(0, KEYSPACE_END, "shard1"),)
    assert load_map_from_database().to_text() == "0:MAX=shard1"
    assert current_map().ranges == (ShardRange(0, KEYSPACE_END, "shard1"),)


def test_every_version_is_kept_as_history() -> None:
    base = load_map_from_database()
    apply_map([ShardRange(0, KEYSPACE_END, "shard3")], expected_version=base.version, reason="audit me")
    latest = ShardMapRevision.objects.order_by("-version").first()
    assert latest is not None and latest.version == base.version + 1 and latest.reason == "audit me"
    assert ShardMapRevision.objects.filter(version=base.version).exists()


WATCHER = """
import django, sys, time
django.setup()
from shardrouter.shardmap import current_map
print("ready", current_map().write_alias(42), flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if current_map().write_alias(42) == "shard3":
        print("seen", flush=True)
        sys.exit(0)
    time.sleep(0.01)
sys.exit(1)
"""


@pytest.mark.slow
def test_a_map_change_reaches_a_second_running_process_without_a_restart() -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ["ready", "shard1"]
        base = load_map_from_database()
        applied_at = time.monotonic()
        apply_map(
            [ShardRange(0, 1000, "shard3"), ShardRange(1000, KEYSPACE_END, "shard2")],
            expected_version=base.version,
            reason="move user 42's range",
        )
        assert watcher.stdout.readline().strip() == "seen"
        seen_after = time.monotonic() - applied_at
        assert watcher.wait(10) == 0
    finally:
        watcher.kill()
    # Bounded staleness: the refresh interval is 1 s; allow for process scheduling on a busy machine.
    assert seen_after < 5, f"the second process saw the change only after {seen_after:.2f}s"
    assert current_map().write_alias(42) == "shard3"
