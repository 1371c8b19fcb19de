"""Operations on moves around a schema change (writes): pause and restart a copy, carry a new table.

``migrate_shards`` calls these through ``ddl.coordinate_migrations``:

* ``move_pause_for_ddl`` (``--on-ddl stop``) stops the move at a safe point:
  reads and writes are on the source, so dropping the forward replication and
  the target's copy of the range loses nothing a user can see. Changes decoded
  before a schema change would no longer fit the table after it (a dropped or
  retyped column), so a paused move does not resume its replication: it copies
  again. The move is left in ``copying`` with the step ``PAUSED_FOR_DDL``.
* ``move_resume_after_ddl`` restarts that copy once both sides have the same
  schema (the same set-up as ``shardmove start``).
* ``move_add_tables`` adds a sharded table created during the move to the
  active channel, so the move carries it too.
"""

from __future__ import annotations

import time

from django.utils import timezone

from . import fence, phases, replication, selectors, throttle
from .errors import MoveError
from .hooks import pause_point
from .models import MoveRange, MoveTable
from .pgconn import pool
from .planning import label
from .progress import Reporter
from .schema import ShardedTable, ensure_replica_identity, schema_differences, sharded_tables, table_columns
from .services import DDL_LOCK_TIMEOUT, Throttle, _delete_range, _set_up
from .work import driving

NEW_TABLE_SYNC_TIMEOUT = 120.0


def move_pause_for_ddl(move: MoveRange, *, reporter: Reporter) -> bool:
    """Stop the move's replication and discard its copy so the schema may change; True if it was running."""
    with driving(move, reporter) as work:
        move = work.move
        phases.require_phase(move, phases.PAUSE_FOR_DDL)
        if move.step == phases.PAUSED_FOR_DDL and move.copy_started_at is None:
            return False
        work.set_step(phases.PAUSED_FOR_DDL)
        channel = replication.forward(move.id, move.source, move.target)
        oid = replication.drop_subscription(work.target, channel.name)
        replication.drop_sync_slots(work.source, oid or move.subscription_oid)
        replication.drop_slot(work.source, channel.name)
        deleted = _delete_range(work, move.target, Throttle.default(), "pause:batch")
        fence.marker_drop(work.target, move.id)
        work.set_phase(phases.Phase.COPYING, action=phases.PAUSE_FOR_DDL)
        MoveRange.objects.filter(id=move.id).update(
            step=phases.PAUSED_FOR_DDL,
            copy_started_at=None,
            copy_finished_at=None,
            watermark_alias="",
            watermark_snapshot="",
            updated_at=timezone.now(),
        )
        MoveTable.objects.filter(move=move).update(rows_copied=0, sync_state="", synced_at=None)
        move.refresh_from_db()
        work.journal(
            "paused",
            f"Move {move.id} paused for a schema change: replication to {move.target} stopped and its copy "
            f"({deleted:,} row(s)) removed; reads and writes of {label(move.lo, move.hi)} stay on {move.source}.",
        )
        pause_point("migrate_shards:paused")
        return True


def move_resume_after_ddl(move: MoveRange, *, reporter: Reporter) -> bool:
    """Restart the copy of a move paused for a schema change; True if it was paused."""
    with driving(move, reporter) as work:
        if work.move.step != phases.PAUSED_FOR_DDL:
            return False
        problems = schema_differences(work.tables, work.source, work.target)
        if problems:
            raise MoveError(
                f"Move {work.move.id} stays paused: the schemas of {work.move.source} and {work.move.target} still "
                f"differ ({'; '.join(problems[:5])}). Run `manage.py migrate_shards` until every database is "
                "migrated; it restarts the copy."
            )
        work.journal("resume", f"Schema change done; restarting the copy of move {work.move.id}.")
        # The copy restarts under the throttle its move started with (the setting's default for older moves).
        copy_throttle = throttle.ThrottleConfig.from_json(work.move.throttle) or throttle.requested(
            no_throttle=False, max_latency_ms=None, max_active=None
        )
        _set_up(work, copy_throttle)
        return True


def tables_missing_from_move(move: MoveRange) -> list[ShardedTable]:
    """Sharded tables that exist on both sides but are not in the move's active publication (read-only)."""
    channel = selectors.channel_for(move)
    if channel is None or move.step == phases.PAUSED_FOR_DDL:
        return []
    with pool() as db:
        publisher, subscriber = db[channel.publisher], db[channel.subscriber]
        if replication.subscription_oid(subscriber, channel.name) is None:
            return []  # not set up (yet): the set-up includes every table
        published = replication.publication_tables(publisher, channel.name)
        return [
            table
            for table in sharded_tables()
            if table.name not in published
            and table_columns(publisher, table.name) is not None
            and table_columns(subscriber, table.name) is not None
        ]


def move_add_tables(move: MoveRange, tables: list[ShardedTable], *, reporter: Reporter) -> list[str]:
    """Carry sharded tables created during the move: fence, replica identity, publication, copy. Returns names added."""
    added: list[str] = []
    with driving(move, reporter) as work:
        channel = selectors.channel_for(work.move)
        if channel is None or work.move.step == phases.PAUSED_FOR_DDL:
            return added  # no replication now: a restarted copy (set-up) includes every table
        publisher, subscriber = work.db[channel.publisher], work.db[channel.subscriber]
        if replication.subscription_oid(subscriber, channel.name) is None:
            return added  # not set up yet: the set-up includes every table
        for table in tables:
            for conn in (publisher, subscriber):
                fence.install(conn, [table], DDL_LOCK_TIMEOUT)
                ensure_replica_identity(conn, table, DDL_LOCK_TIMEOUT)
            if replication.add_to_publication(publisher, channel.name, table, lo=work.move.lo, hi=work.move.hi):
                added.append(table.name)
            MoveTable.objects.get_or_create(move=work.move, table=table.name)
        if not added:
            return added
        replication.refresh_subscription(subscriber, channel.name)
        deadline = time.monotonic() + NEW_TABLE_SYNC_TIMEOUT
        while True:
            syncs = replication.table_sync(subscriber, channel.name)
            if all(name in syncs and syncs[name].state == "r" for name in added):
                break
            if time.monotonic() > deadline:
                raise MoveError(
                    f"New table(s) {', '.join(added)} were added to move {work.move.id} but their copy to "
                    f"{channel.subscriber} did not finish within {NEW_TABLE_SYNC_TIMEOUT:.0f}s; see "
                    f"`shardmove status {work.move.id}` and the server log of {channel.subscriber}."
                )
            time.sleep(0.1)
        MoveTable.objects.filter(move=work.move, table__in=added).update(sync_state="r", synced_at=timezone.now())
        work.journal(
            "tables-added",
            f"Move {work.move.id} now carries the new table(s) {', '.join(added)} ({channel.publisher} -> "
            f"{channel.subscriber}).",
        )
    return added
