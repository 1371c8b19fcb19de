"""Schema migrations during a live move: additive ones keep the move going, the others wait or pause it.

The moving tables include ``ddlnotes`` (tests/moves/ddl), a test-only sharded
app whose code version (models and migrations) each child process picks with
``QQ_DDL_MIGRATIONS``, as a deploy would bring new code and run
``migrate_shards`` while the move goes on. The content load of the other move
tests runs through the whole move and is checked against its ledger.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from migrations_tooling.models import MoveRange
from migrations_tooling.phases import next_steps
from quantumquill.devstack.stack import REPO_ROOT
from shardrouter.ids import new_id
from tests.conftest import ALL_DATABASES, child_env
from tests.moves.support import Ledger, Load, assert_every_write_in_place, latest_move, on_db, seed, wait_for_phase
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2. The moves take [0, 500) from shard1 to shard2.
IN_RANGE = [7, 130, 499]
OUTSIDE = [500, 900, 1000, 8000]
DDL_SETTINGS = "tests.moves.ddl.settings"


def manage(version: str, *args: str, expect_ok: bool = True, **env: str) -> str:
    """``manage.py`` in a child process running code version ``version`` of the ddlnotes app."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=child_env(DJANGO_SETTINGS_MODULE=DDL_SETTINGS, QQ_DDL_MIGRATIONS=version, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = done.stdout + done.stderr
    if expect_ok:
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed ({done.returncode}):\n{text}"
    else:
        assert done.returncode != 0, f"manage.py {' '.join(args)} should have failed:\n{text}"
    return text


def columns(alias: str, table: str) -> list[str]:
    rows = on_db(
        alias,
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [table],
    )
    return [str(r[0]) for r in rows]


def applied(alias: str) -> list[str]:
    return [str(r[0]) for r in on_db(alias, "SELECT name FROM django_migrations WHERE app = 'ddlnotes' ORDER BY 1")]


def add_notes(alias: str, users: list[int], per_user: int, **extra: str) -> set[int]:
    ids: set[int] = set()
    names = ", ".join(["id", "user_id", "text", *extra])
    for user in users:
        for n in range(per_user):
            note_id = new_id()
            values: list[Any] = [note_id, user, f"note {user}/{n}", *extra.values()]
            on_db(alias, f"INSERT INTO ddlnotes_note ({names}) VALUES ({', '.join(['%s'] * len(values))})", values)
            ids.add(note_id)
    return ids


def notes_in_range(alias: str) -> set[int]:
    return {int(r[0]) for r in on_db(alias, "SELECT id FROM ddlnotes_note WHERE user_id >= 0 AND user_id < 500")}


def apply_errors(alias: str) -> int:
    rows = on_db(alias, "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats")
    return int(rows[0][0])


@pytest.fixture
def notes_app() -> Iterator[None]:
    """The ddlnotes tables at version v1 on every database; removed afterwards (other tests do not know them)."""
    manage("v1", "migrate_shards")
    yield
    for alias in settings.DATABASES:
        on_db(alias, "DROP TABLE IF EXISTS ddlnotes_note, ddlnotes_tag CASCADE")
        on_db(alias, "DELETE FROM django_migrations WHERE app = 'ddlnotes'")


def start_move(version: str = "v1") -> MoveRange:
    manage(version, "shardmove", "start", "0", "500", "--to", "shard2")
    move = latest_move()
    wait_for_phase(move.id, "catching_up", timeout=120)
    return move


def finish_move(version: str, move: MoveRange, load: Load) -> None:
    manage(version, "shardmove", "switch-reads", str(move.id))
    load.wait_for_writes(30)
    assert "Writes switched" in manage(version, "shardmove", "switch-writes", str(move.id))
    load.wait_for_writes(30)
    assert "rows match" in manage(version, "shardmove", "verify", str(move.id))
    assert "Complete" in manage(version, "shardmove", "complete", str(move.id))


def seed_everything(ledger: Ledger) -> set[int]:
    seed(ledger, "shard1", [*IN_RANGE, 500, 900], per_user=30)
    seed(ledger, "shard2", [1000, 8000], per_user=30)
    return add_notes("shard1", IN_RANGE, per_user=20)


def test_additive_migrations_during_catching_up_and_reads_switched_keep_the_move_and_every_write(
    notes_app: None,
) -> None:
    ledger = Ledger()
    notes = seed_everything(ledger)
    with Load(ledger, IN_RANGE + OUTSIDE, threads=3) as load:
        move = start_move()

        # catching_up: a nullable column and an index, on the subscriber (shard2) before the publisher (shard1).
        out = manage("additive", "migrate_shards")
        assert "Wave 1/2: default, shard2, shard3" in out and "Wave 2/2: shard1" in out, out
        assert "colour" in columns("shard1", "ddlnotes_note") and "colour" in columns("shard2", "ddlnotes_note")
        coloured = add_notes("shard1", IN_RANGE, per_user=5, colour="teal")
        wait_until(
            lambda: on_db("shard2", "SELECT count(*) FROM ddlnotes_note WHERE colour = 'teal'") == [(15,)],
            timeout=30,
            what="rows with the new column to replicate",
        )
        assert MoveRange.objects.get(id=move.id).phase == "catching_up"
        load.wait_for_writes(30)

        # reads_switched: a new sharded table; the move carries it from then on.
        manage("additive", "shardmove", "switch-reads", str(move.id))
        out = manage("additive2", "migrate_shards")
        assert "now carries the new table(s) ddlnotes_tag" in out, out
        tag = new_id()
        on_db("shard1", "INSERT INTO ddlnotes_tag (id, user_id, name) VALUES (%s, 130, 'urgent')", [tag])
        wait_until(
            lambda: on_db("shard2", "SELECT name FROM ddlnotes_tag WHERE id = %s", [tag]) == [("urgent",)],
            timeout=30,
            what="a row of the new table to replicate",
        )
        assert MoveRange.objects.get(id=move.id).phase == "reads_switched"
        load.wait_for_writes(30)

        finish_move("additive2", move, load)
    assert load.errors == [], load.errors[0]
    assert_every_write_in_place(ledger)
    assert apply_errors("shard2") == 0
    assert notes_in_range("shard2") == notes | coloured and notes_in_range("shard1") == set()
    assert on_db("shard2", "SELECT count(*) FROM ddlnotes_tag") == [(1,)]
    assert on_db("shard1", "SELECT count(*) FROM ddlnotes_tag") == [(0,)]


def test_a_destructive_migration_during_a_move_is_refused_and_changes_nothing(notes_app: None) -> None:
    ledger = Ledger()
    seed_everything(ledger)
    move = start_move()
    before = {alias: (columns(alias, "ddlnotes_note"), applied(alias)) for alias in settings.DATABASES}
    state = MoveRange.objects.filter(id=move.id).values("phase", "step", "copy_started_at").get()

    plan = manage("destructive", "migrate_shards", "--plan", "--on-ddl", "stop")
    assert f"Move {move.id} shard1 -> shard2 will be paused (--on-ddl stop)" in plan, plan
    out = manage("destructive", "migrate_shards", expect_ok=False)

    assert f"Move {move.id} shard1 -> shard2 (catching_up)" in out, out
    assert "RemoveField" in out or "Remove field text" in out, out
    for option in (f"shardmove complete {move.id}", f"shardmove cancel {move.id}", "--on-ddl stop"):
        assert option in out, out
    assert {alias: (columns(alias, "ddlnotes_note"), applied(alias)) for alias in settings.DATABASES} == before
    assert MoveRange.objects.filter(id=move.id).values("phase", "step", "copy_started_at").get() == state
    assert on_db("shard2", "SELECT subenabled FROM pg_subscription WHERE subname = %s", [f"qq_move_{move.id}_fwd"]) == [
        (True,)
    ]


def test_on_ddl_stop_pauses_the_move_at_a_safe_point_and_a_re_run_resumes_it(notes_app: None) -> None:
    ledger = Ledger()
    notes = seed_everything(ledger)
    with Load(ledger, IN_RANGE + OUTSIDE, threads=3) as load:
        move = start_move()
        paused = subprocess.Popen(
            [sys.executable, "manage.py", "migrate_shards", "--on-ddl", "stop"],
            cwd=REPO_ROOT,
            env=child_env(
                DJANGO_SETTINGS_MODULE=DDL_SETTINGS,
                QQ_DDL_MIGRATIONS="destructive",
                QQ_MOVE_PAUSE_AT="migrate_shards:paused",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert paused.stderr is not None
        seen: list[str] = []
        for line in paused.stderr:
            seen.append(line)
            if "paused at migrate_shards:paused" in line:
                break
        assert "paused at" in seen[-1], "".join(seen)
        paused.send_signal(signal.SIGKILL)
        paused.wait(timeout=30)

        # Paused: no replication, no copy on the target; users keep reading and writing the source.
        stopped = MoveRange.objects.get(id=move.id)
        assert (stopped.phase, stopped.step, stopped.copy_started_at) == ("copying", "paused for a schema change", None)
        assert next_steps(stopped) == ["manage.py migrate_shards --plan", "manage.py migrate_shards"]
        assert on_db("shard2", "SELECT count(*) FROM pg_subscription") == [(0,)]
        assert notes_in_range("shard2") == set()
        assert on_db("shard2", "SELECT count(*) FROM content_generation WHERE user_id < 500") == [(0,)]
        load.wait_for_writes(30)

        # The re-run migrates every database and restarts the copy.
        out = manage("destructive", "migrate_shards")
        assert "paused for a schema change" in out, out
        for alias in settings.DATABASES:
            assert "text" not in columns(alias, "ddlnotes_note")
        wait_for_phase(move.id, "catching_up", timeout=120)
        assert notes_in_range("shard2") == notes
        finish_move("destructive", move, load)
    assert load.errors == [], load.errors[0]
    assert_every_write_in_place(ledger)
    assert notes_in_range("shard2") == notes and notes_in_range("shard1") == set()


def test_the_system_check_warns_while_one_side_of_a_move_has_unapplied_migrations(notes_app: None) -> None:
    move = MoveRange.objects.create(lo=0, hi=500, source="shard1", target="shard2", phase="catching_up")
    assert "migrations_tooling.W002" not in manage("additive", "check", "--database", "default")

    manage("additive", "migrate", "ddlnotes", "--database", "shard2")
    out = manage("additive", "check", "--database", "default")
    assert "migrations_tooling.W002" in out and f"Move {move.id} shard1 -> shard2" in out, out
    assert "shard1: ddlnotes.0002_colour" in out, out

    manage("additive", "migrate", "ddlnotes", "--database", "shard1")
    assert "migrations_tooling.W002" not in manage("additive", "check", "--database", "default")
