"""Progress of the initial copy: read from the target's subscription state, and recorded on the move.

``observe_copy`` and ``copy_finished`` only read (``shardmove status`` uses
them); ``refresh_copy_state`` records what they see and moves a finished copy
to ``catching_up``. The commands that drive a move call it (through
``services.move_refresh`` or at their start), never ``status``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.utils import timezone

from . import replication, throttle
from .models import MoveEvent, MoveRange, MoveTable, Phase
from .phases import COPY_FINISHED, sources
from .schema import sharded_tables


def observe_copy(move: MoveRange, target: psycopg.Connection[Any]) -> dict[str, replication.TableSync]:
    """Each table's copy state as the target's subscription reports it now (read-only; {} unless copying)."""
    if move.phase != Phase.COPYING or move.copy_started_at is None:
        return {}
    return replication.table_sync(target, replication.forward(move.id, move.source, move.target).name)


def copy_finished(syncs: dict[str, replication.TableSync]) -> bool:
    """True when every sharded table (and the marker) has been copied and is streaming."""
    expected = {t.name for t in sharded_tables()} | {"qq_move_marker"}
    return bool(syncs) and expected <= set(syncs) and all(s.state == "r" for s in syncs.values())


def refresh_copy_state(move: MoveRange, target: psycopg.Connection[Any]) -> dict[str, replication.TableSync]:
    """Record each table's copy state and rows; ``copying`` becomes ``catching_up`` once every table is ready.

    Safe to call from any command that drives the move, and concurrently: it
    only moves the phase forward, with a conditional update.
    """
    syncs = observe_copy(move, target)
    if not syncs:
        return syncs
    assert move.copy_started_at is not None
    by_name = {t.name: t for t in sharded_tables()}
    now = timezone.now()
    for record in MoveTable.objects.filter(move=move):
        sync = syncs.get(record.table)
        if sync is None:
            continue
        changed = record.sync_state != sync.state
        record.sync_state = sync.state
        if sync.state == "d" and sync.rows_copying is not None:
            record.rows_copied = sync.rows_copying
            changed = True
        elif sync.state in ("f", "s", "r") and record.synced_at is None and record.table in by_name:
            table = by_name[record.table]
            record.rows_copied = table.rows_in_range(target, move.lo, move.hi)
            record.synced_at = now
            changed = True
        if changed:
            record.save(update_fields=["sync_state", "rows_copied", "synced_at"])
    if copy_finished(syncs):
        throttle.remove_gate_if_free(target, move.id, sharded_tables())  # streamed changes are not held back
        updated = MoveRange.objects.filter(id=move.id, phase__in=sources(COPY_FINISHED, Phase.CATCHING_UP)).update(
            phase=Phase.CATCHING_UP, copy_finished_at=now, phase_changed_at=now, updated_at=now
        )
        if updated:
            copied = sum(MoveTable.objects.filter(move=move).values_list("rows_copied", flat=True))
            seconds = (now - move.copy_started_at).total_seconds()
            MoveEvent.objects.create(
                move=move,
                kind="copied",
                message=f"Initial copy finished: {copied:,} rows in {seconds:.1f}s; replication is catching up.",
                data={"rows": copied, "seconds": seconds},
            )
        move.refresh_from_db()
    return syncs
