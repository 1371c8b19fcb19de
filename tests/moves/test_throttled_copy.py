"""The throttled copy: it holds back while the source is over budget, lets go once it is not, and loses nothing.

Load on the source is made deterministic with backends that sleep (`pg_sleep` counts as an active backend),
against `--max-source-active`, and with a streaming replica of the source whose replay is paused, against
`--max-replica-lag`; the latency budget is set out of reach (this machine's latency is not the test's to control)
and measured in bench/bench_move_throttle.py instead.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management.base import CommandError
from django.db import connections
from django.test import Client
from psycopg.conninfo import make_conninfo

from apps.content.models import Generation
from migrations_tooling.models import MoveEvent, MoveRange
from migrations_tooling.pgconn import connect
from migrations_tooling.schema import sharded_tables
from migrations_tooling.throttle import PROBE_EVERY, PROBE_ROWS, Probe, ThrottleConfig, gate_key
from migrations_tooling.throttle_baseline import SETTLE, WINDOW, QuietWindows, baseline_of
from migrations_tooling.throttle_controller import Controller, Limits, Reading
from quantumquill.devstack.postgres import PostgresServer
from quantumquill.devstack.stack import free_port, stack_from_state
from shardrouter.control import conninfo_for
from tests.conftest import ALL_DATABASES
from tests.moves.support import (
    PROJECT_SETTINGS,
    Ledger,
    Load,
    Operator,
    assert_every_write_in_place,
    latest_move,
    on_db,
    seed,
    shardmove,
)
from tests.support import wait_until

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2; shard3 holds nothing. Moves take [0, 500) to shard3.
USERS = list(range(10, 490, 8))
STAYING = list(range(600, 700, 10))  # users of shard1 outside the moved range: the probe reads theirs
SLEEPERS = 8  # active backends the "users" keep busy on the source's server
LIMIT = 5  # --max-source-active: over it while the sleepers run, under it once they stop


def status_json(move_id: int) -> dict[str, Any]:
    return json.loads(shardmove("status", str(move_id), "--json"))  # type: ignore[no-any-return]


@contextmanager
def busy_backends(alias: str, count: int) -> Iterator[None]:
    """``count`` connections to the server of ``alias`` running a long query (active backends) until the block ends.

    They use that server's ``postgres`` database: `--max-source-active` limits the active client backends of the
    source's server, whatever their database, and there they hold no snapshot in the source's database, which
    `start` waits for (up to ``SNAPSHOT_WAIT``, 10 s) before the copy, as for any transaction older than its fence.
    """
    server = make_conninfo(conninfo_for(alias), dbname="postgres")
    conns = [psycopg.connect(server, autocommit=True) for _ in range(count)]
    pids = [c.info.backend_pid for c in conns]
    threads = []
    for conn in conns:

        def sleep(conn: psycopg.Connection[Any] = conn) -> None:
            try:
                conn.execute("SELECT pg_sleep(600)")
            except psycopg.errors.QueryCanceled:
                pass

        threads.append(threading.Thread(target=sleep, daemon=True))
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: (
                on_db(alias, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND state = 'active'", [pids])
                == [(count,)]
            ),
            what=f"{count} busy backends",
        )
        yield
    finally:
        on_db(alias, "SELECT pg_cancel_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        for thread in threads:
            thread.join(timeout=30)
        for conn in conns:
            conn.close()


def gate_closed(move_id: int) -> bool:
    """The move's gate on the target is held shut (a copying worker would wait at its next row)."""
    rows = on_db(
        "shard3",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
        "AND ((classid::bigint << 32) | objid::bigint) = %s",
        [gate_key(move_id)],
    )
    return bool(rows[0][0])


def gate_triggers(move_id: int | None = None) -> int:
    """Gate triggers on the target: one move's, or every move's (earlier tests' moves may have left theirs)."""
    if move_id is None:
        return int(on_db("shard3", "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'qq_move_%%_gate'")[0][0])
    return int(on_db("shard3", "SELECT count(*) FROM pg_trigger WHERE tgname = %s", [f"qq_move_{move_id}_gate"])[0][0])


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.slow
def test_throttle_engages_under_source_load_releases_after_it_and_the_move_loses_nothing(make_user: Any) -> None:
    staff = make_user(7, "operator", "correct horse battery")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    ledger = Ledger()
    seed(ledger, "shard1", USERS, per_user=100)
    seed(ledger, "shard1", STAYING, per_user=30)
    operator: Operator | None = None
    blocker: psycopg.Connection[Any] | None = None
    try:
        with Load(ledger, USERS, threads=2, pause=0.02) as load:
            load.wait_for_writes(20)
            with busy_backends("shard1", SLEEPERS):
                operator = Operator(
                    "start", "0", "500", "--to", "shard3", "--wait", "--max-source-active", str(LIMIT),
                    "--max-source-latency", "60000",
                    pause_at="start:slot", pause_seconds=3, settings_module=PROJECT_SETTINGS,
                )  # fmt: skip
                operator.wait_for("paused at start:slot")
                # Hold content_usageevent's copy at the target's door (a SHARE lock blocks its COPY), so the copy
                # cannot finish before the throttle has been seen engaging and releasing.
                blocker = psycopg.connect(conninfo_for("shard3"))
                blocker.execute("LOCK TABLE content_usageevent IN SHARE MODE")
                move = latest_move()
                assert gate_triggers(move.id) == len(
                    sharded_tables()
                )  # installed before the copy, on every sharded table
                data = wait_until(
                    lambda: (d := status_json(move.id))["throttle"]["throttling"] and d,
                    timeout=60,
                    what="the throttle to engage",
                    poll=0.2,
                )
                throttle = data["throttle"]
                assert throttle["enabled"] and throttle["running"] and throttle["max_active"] == LIMIT
                # The probe is the application's signed-in read of users the move leaves on the source.
                assert f"the last {PROBE_ROWS} content_generation rows (their IDs) of" in throttle["probe"]
                assert "outside the range" in throttle["probe"]
                assert f"active backends > {LIMIT}" in throttle["reason"]
                assert "THROTTLED now" in shardmove("status", str(move.id))
                operator_client = Client()
                operator_client.force_login(staff)
                live = operator_client.get(f"/ops/moves/{move.id}/live").content.decode()
                assert "THROTTLED now" in live and "Copy throttled" in live
                assert MoveEvent.objects.filter(move_id=move.id, kind="throttled").count() == 1
                # Paused: the gate stands shut.
                wait_until(lambda: gate_closed(move.id), timeout=60, what="the gate to close")
                assert MoveRange.objects.get(id=move.id).phase == "copying"
                # The controller re-measures the source without the copy on its own clock (the gate shut).
                data = wait_until(
                    lambda: (d := status_json(move.id)["throttle"])["quiet_windows"] >= 1 and d,
                    timeout=60,
                    what="a window of probes with the gate shut",
                    poll=0.2,
                )
                assert data["baseline_now_ms"] > 0 and data["aim_ms"] < data["budget_now_ms"] == 60000
                assert "baseline re-measured at" in data["summary"]
            # The busy backends are gone; the users' writes go on.
            try:
                wait_until(
                    lambda: MoveEvent.objects.filter(move_id=move.id, kind="throttle-released").exists(),
                    timeout=60,
                    what="the throttle to release",
                    poll=0.2,
                )
            except AssertionError as exc:
                activity = on_db(
                    "shard1",
                    "SELECT datname, backend_type, state, wait_event_type, wait_event, left(query, 80) "
                    "FROM pg_stat_activity WHERE state = 'active'",
                )
                raise AssertionError(f"{exc}: {status_json(move.id)['throttle']} {activity} {operator.text}") from exc
            released = MoveEvent.objects.get(move_id=move.id, kind="throttle-released")
            assert "back at full speed" in released.message
            throttle = status_json(move.id)["throttle"]
            assert not throttle["throttling"] and throttle["duty"] == 1.0 and throttle["throttled_seconds"] > 0
            assert not gate_closed(move.id), on_db(
                "shard3",
                "SELECT l.pid, l.mode, l.granted, a.application_name, a.backend_type, a.query FROM pg_locks l "
                "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'",
            )
            blocker.rollback()
            code, text = operator.finish(timeout=180)
            assert code == 0, text
            assert "catching_up" in text
            kinds = [e.kind for e in MoveEvent.objects.filter(move_id=move.id).order_by("id")]
            assert kinds.count("throttled") == kinds.count("throttle-released") == 1
            assert "rows match" in shardmove("verify", str(move.id))
            shardmove("switch-reads", str(move.id))
            assert gate_triggers(move.id) == 0  # removed once copied: streamed changes are never held back
            load.wait_for_writes(20)
            assert "Writes switched" in shardmove("switch-writes", str(move.id))
            load.wait_for_writes(20)
            assert "Complete" in shardmove("complete", str(move.id))
            assert gate_triggers(move.id) == 0
        assert load.errors == [], load.errors[0]
    finally:
        if blocker is not None:
            blocker.close()
        if operator is not None and operator.proc.poll() is None:
            operator.kill()
    assert_every_write_in_place(ledger)
    final = status_json(move.id)["throttle"]
    assert len(final["episodes"]) == 2 and not final["running"]


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.slow
def test_no_throttle_copies_at_full_speed_even_when_the_source_is_busy() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", USERS, per_user=50)
    with busy_backends("shard1", SLEEPERS):
        text = shardmove("start", "0", "500", "--to", "shard3", "--wait", "--no-throttle")
        move = latest_move()
        assert "catching_up" in text
    data = status_json(move.id)["throttle"]
    assert data["enabled"] is False and data["episodes"] == [] and data["throttled_seconds"] == 0
    assert "off (--no-throttle)" in shardmove("status", str(move.id))
    assert not MoveEvent.objects.filter(move_id=move.id, kind__in=("throttled", "throttle-released")).exists()
    assert gate_triggers(move.id) == 0
    assert "rows match" in shardmove("verify", str(move.id))
    shardmove("cancel", str(move.id))
    assert_every_write_in_place(ledger)


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["--max-source-latency", "0"], "--max-source-latency 20"),
        (["--max-source-latency", "-5"], "above 0"),
        (["--max-source-active", "0"], "at least 1"),
        (["--no-throttle", "--max-source-active", "4"], "pass either --no-throttle or the limits"),
        (["--max-replica-lag", "0"], "--max-replica-lag 5"),
        (["--max-replica-lag", "-2"], "above 0"),
        (["--no-throttle", "--max-replica-lag", "3"], "pass either --no-throttle or the limits"),
    ],
)
def test_bad_throttle_values_are_refused_before_anything_changes(args: list[str], fix: str) -> None:
    gates_before = gate_triggers()
    with pytest.raises(CommandError, match=fix):
        shardmove("start", "0", "500", "--to", "shard3", *args)
    assert not MoveRange.objects.exists()
    assert gate_triggers() == gates_before


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.parametrize("value", ["soon", 0, {"shard1": -1}])
def test_a_bad_replica_lag_setting_is_refused_before_anything_changes(settings: Any, value: Any) -> None:
    settings.SHARDMOVE = {**settings.SHARDMOVE, "THROTTLE_MAX_REPLICA_LAG_SECONDS": value}
    with pytest.raises(CommandError, match=r"THROTTLE_MAX_REPLICA_LAG_SECONDS'\] must be seconds above 0"):
        shardmove("start", "0", "500", "--to", "shard3")
    assert not MoveRange.objects.exists()


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.slow
def test_a_crashed_start_leaves_gates_that_cancel_removes() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", USERS[:5], per_user=5)
    operator = Operator("start", "0", "500", "--to", "shard3", pause_at="start:slot", pause_seconds=60)
    try:
        operator.wait_for("paused at start:slot")
        move = latest_move()
        assert gate_triggers(move.id) == len(sharded_tables())
    finally:
        operator.kill()  # the start dies half-way, its gates in place
    assert "Cancelled" in shardmove("cancel", str(move.id))
    assert gate_triggers(move.id) == 0
    assert_every_write_in_place(ledger)
    # Without users outside the range, the probe reads the range's own users.
    assert "users of the range (the source holds no other)" in move.throttle["probe"]


# --- the source's streaming replicas -------------------------------------------------------------------------


@pytest.fixture
def replica_of_shard1() -> Iterator[PostgresServer]:
    """A streaming (physical) replica of the server that holds shard1, for one test."""
    stack = stack_from_state()
    port = int(on_db("shard1", "SELECT current_setting('port')")[0][0])
    primary = stack.postgres(next(name for name, p in stack.ports.items() if p == port))
    base = Path(os.environ["QQ_DEVSTACK_STATE"]).parent
    replica = PostgresServer("qq-throttle-replica", base / "qq-throttle-replica", free_port())
    shutil.rmtree(replica.pg_dir, ignore_errors=True)
    replica.init_replica_of(primary)
    replica.start()
    try:
        wait_until(
            lambda: (
                on_db(
                    "shard1",
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'",
                    [replica.name],
                )
                == [(1,)]
            ),
            what="the replica to stream",
        )
        yield replica
    finally:
        replica.stop(mode="immediate")
        shutil.rmtree(replica.pg_dir, ignore_errors=True)


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.slow
def test_a_lagging_replica_of_the_source_holds_the_copy_until_it_catches_up(
    replica_of_shard1: PostgresServer,
) -> None:
    ledger = Ledger()
    seed(ledger, "shard1", USERS, per_user=20)
    replica = psycopg.connect(replica_of_shard1.conninfo(), autocommit=True)
    blocker = psycopg.connect(conninfo_for("shard3"))
    operator: Operator | None = None
    try:
        replica.execute("SELECT pg_wal_replay_pause()")
        operator = Operator(
            "start", "0", "500", "--to", "shard3", "--wait", "--max-replica-lag", "2",
            "--max-source-latency", "60000",
            pause_at="start:slot", pause_seconds=3,
        )  # fmt: skip
        operator.wait_for("paused at start:slot")
        # Hold content_usageevent's copy at the target's door so the copy outlasts the episode.
        blocker.execute("LOCK TABLE content_usageevent IN SHARE MODE")

        def throttled() -> dict[str, Any] | None:
            on_db("shard1", "SELECT pg_logical_emit_message(false, 'qq-test', 'wal the replica does not replay')")
            data = status_json(latest_move().id)["throttle"]
            return data if data["throttling"] else None

        data = wait_until(throttled, timeout=60, what="the replica's lag to throttle the copy", poll=0.5)
        move = latest_move()
        assert data["max_replica_lag"] == 2.0
        assert f"replica {replica_of_shard1.name}@" in data["reason"] and "> 2 s" in data["reason"], data
        assert "replica lag <= 2 s" in shardmove("status", str(move.id))
        wait_until(lambda: gate_closed(move.id), timeout=60, what="the gate to close")
        replica.execute("SELECT pg_wal_replay_resume()")
        wait_until(
            lambda: MoveEvent.objects.filter(move_id=move.id, kind="throttle-released").exists(),
            timeout=60,
            what="the throttle to release once the replica caught up",
            poll=0.2,
        )
        assert not status_json(move.id)["throttle"]["throttling"]
        blocker.rollback()
        code, text = operator.finish(timeout=180)
        assert code == 0, text
        assert "catching_up" in text
        assert "rows match" in shardmove("verify", str(move.id))
    finally:
        blocker.close()
        replica.close()
        if operator is not None and operator.proc.poll() is None:
            operator.kill()
    assert gate_triggers(move.id) == 0  # dropped once copied
    shardmove("cancel", str(move.id))
    assert gate_triggers(move.id) == 0
    assert_every_write_in_place(ledger)


def sessions_started(conn: psycopg.Connection[Any]) -> int:
    """Client sessions ever started on the database ``conn`` is connected to (``pg_stat_database.sessions``)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
@pytest.mark.slow
def test_following_a_copy_starts_no_new_session_on_the_source_each_second() -> None:
    """The follower reports every second; each report used to start (and end) sessions on the source, whose
    start-up work competed with the users' reads on it. It keeps its connections for the whole copy."""
    ledger = Ledger()
    seed(ledger, "shard1", USERS, per_user=20)
    seed(ledger, "shard1", STAYING, per_user=20)
    blocker = psycopg.connect(conninfo_for("shard3"))
    watcher = psycopg.connect(conninfo_for("shard1"), autocommit=True)
    operator: Operator | None = None
    try:
        follower = operator = Operator(
            "start", "0", "500", "--to", "shard3", "--wait", "--max-source-latency", "60000",
            pause_at="start:slot", pause_seconds=3,
        )  # fmt: skip
        follower.wait_for("paused at start:slot")
        blocker.execute("LOCK TABLE content_usageevent IN SHARE MODE")  # the copy cannot finish meanwhile
        follower.wait_for("rows copied", timeout=120)

        def reports() -> int:
            return sum("rows copied" in line for line in follower.output)

        first = reports()
        before = sessions_started(watcher)
        wait_until(lambda: reports() >= first + 4, timeout=60, what="four more progress reports")
        assert sessions_started(watcher) == before, "the follower started sessions on the source while reporting"
        blocker.rollback()
        code, text = operator.finish(timeout=180)
        assert code == 0, text
    finally:
        blocker.close()
        watcher.close()
        if operator is not None and operator.proc.poll() is None:
            operator.kill()
    shardmove("cancel", str(latest_move().id))
    assert_every_write_in_place(ledger)


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_a_gate_held_shut_by_another_session_stays_shut_and_the_controller_keeps_probing() -> None:
    """An operator who holds a move's gate shut by hand pauses its copy; the controller neither stalls its probing
    on that lock nor opens the gate, and takes the gate over once the other session lets go while it means to
    hold the copy back."""
    config = ThrottleConfig(True, None, LIMIT)
    move = MoveRange.objects.create(lo=0, hi=500, source="shard1", target="shard3", throttle=config.to_json())
    table = next(t for t in sharded_tables() if t.order_by)
    other = psycopg.connect(conninfo_for("shard3"), autocommit=True)
    controller = Controller(move, config, table, interval=0.1)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [gate_key(move.id)])
        with busy_backends("shard1", SLEEPERS):  # over --max-source-active: the controller pauses the copy

            def steer() -> None:
                try:
                    controller.run_for(2.0)
                finally:
                    connections.close_all()  # this thread's connection to the control database

            stepping = threading.Thread(target=steer, daemon=True)
            stepping.start()
            stepping.join(timeout=60)
            assert not stepping.is_alive(), "the controller stalled on a gate another session holds"
            assert controller.closed and not controller.holding and controller.duty == 0.0
            assert len(controller.samples) >= 10  # it kept probing the source
            assert "active backends > 5" in controller.reason
            other.execute("SELECT pg_advisory_unlock(%s)", [gate_key(move.id)])
            controller.run_for(0.5)
            assert controller.holding and gate_closed(move.id)  # still paused: now by the controller
        holder = on_db(
            "shard3",
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            [gate_key(move.id)],
        )
        assert holder == [(controller.target.info.backend_pid,)]
    finally:
        controller.close()
        other.close()
    assert not gate_closed(move.id)  # the controller's session ended: the gate goes with it


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_the_probe_reads_the_rows_a_signed_in_page_lists_and_sends_back_only_their_keys() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", STAYING[:2], per_user=PROBE_ROWS + 5)
    table = next(t for t in sharded_tables() if t.order_by)
    with connect("shard1") as conn:
        probe = Probe(conn, table, 0, 500)
        assert list(probe.users) == STAYING[:2]  # users the move leaves on the source
        for user in probe.users:
            page = [g.id for g in Generation.objects.using("shard1").filter(user_id=user)[:PROBE_ROWS]]
            assert conn.execute(probe.query, [user]).fetchall() == [(gid,) for gid in page]
        assert probe.run() >= 0


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_a_source_with_no_rows_is_probed_with_a_one_row_index_read_of_the_range() -> None:
    """Nothing to read on the source (shard3 holds no rows): the probe still times a read, of the range's index."""
    table = next(t for t in sharded_tables() if t.order_by)
    with connect("shard3") as conn:
        probe = Probe(conn, table, 0, 10**12)
        assert probe.describe.startswith("a one-row index read of")
        assert len(probe.users) == 10**6 and probe.users[0] == 0  # a range to draw from, not a million-item list
        assert probe.run() >= 0


# --- the baseline kept current, and what the controller aims at -----------------------------------------------


def probes(quiet: QuietWindows, start: float, seconds: float, ms: float, shut_since: float | None) -> int:
    """Feed ``seconds`` of probes (one every PROBE_EVERY) of ``ms`` each; the quiet windows they completed."""
    completed, steps = 0, round(seconds / PROBE_EVERY)
    for step in range(steps):
        completed += quiet.add(start + step * PROBE_EVERY, ms, shut_since=shut_since)
    return completed


def test_windows_taken_with_the_gate_shut_replace_the_baseline_measured_before_the_copy() -> None:
    quiet = QuietWindows([4.0] * 5)
    assert quiet.baseline() == 4.0
    assert probes(quiet, 0.0, 5.0, 9.0, shut_since=None) == 0  # the copy runs: nothing is a baseline
    # The gate shuts at 5.0: probes in its first SETTLE seconds (the target's buffered rows drain) do not count.
    assert probes(quiet, 5.0, SETTLE, 50.0, shut_since=5.0) == 0
    assert probes(quiet, 5.0 + SETTLE, 3 * WINDOW + 0.5, 2.0, shut_since=5.0) == 3
    assert quiet.taken == 3 and quiet.baseline() == 2.0  # three of the five kept windows are now


def test_slow_windows_do_not_set_the_baseline() -> None:
    # Window p95s measured before a copy on a loaded machine (ms): the follower's own delays add to some.
    assert baseline_of([3.126, 8.011, 15.904, 28.678, 2.694]) == 3.126
    assert baseline_of([0.5, 2.0, 2.1, 2.2, 2.3]) == 2.0  # nor does one unusually fast one
    assert baseline_of([1.5]) == 1.5


def test_a_shut_spell_shorter_than_a_window_measures_nothing() -> None:
    quiet = QuietWindows([1.0] * 5)
    assert probes(quiet, 0.0, SETTLE + WINDOW / 2, 3.0, shut_since=0.0) == 0
    assert probes(quiet, 1.0, WINDOW, 3.0, shut_since=None) == 0  # the gate reopened: the partial window is dropped
    assert quiet.taken == 0 and quiet.baseline() == 1.0


def test_the_controller_aims_under_the_budget_and_a_derived_budget_follows_the_baseline() -> None:
    derived = ThrottleConfig(True, 2.4, None, 2.0, "baseline", None, "", (2.0,) * 5)
    limits = Limits.of(derived, 2.0)
    assert (limits.budget_ms, limits.aim_ms) == (2.4, 2.2)  # 1.2x the baseline; aiming at 1.1x
    later = Limits.of(derived, 1.0)  # the source got faster: so does the budget
    assert (later.budget_ms, later.aim_ms) == (1.2, 1.1)
    reason = Reading(2.3, 0).over(derived, limits)
    assert "probe p95 2.30 ms > 2.20 ms (aim; budget 2.40 ms)" in reason
    assert Reading(2.1, 0).over(derived, limits) == ""
    # A steady p95 within the aim, but a last second over the budget: held back at once.
    assert "probe p95 2.50 ms > 2.40 ms (budget) in the last second" in Reading(2.1, 0, last_window_ms=2.5).over(
        derived, limits
    )
    assert Reading(2.1, 0, last_window_ms=2.3).over(derived, limits) == ""
    given = ThrottleConfig(True, 5.0, None, 2.0, "option", None)
    assert Limits.of(given, 4.0).budget_ms == 5.0  # a budget the operator gave stays; only the aim moves
    assert Limits.of(given, 6.0).aim_ms == 5.0  # never above the budget
