"""What a running command carries: the move, its tables, connections, reporter and lease."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.utils import timezone

from . import lease
from .errors import MoveError, MoveInterrupted
from .models import MoveEvent, MoveRange, Phase
from .pgconn import Pool, pool
from .phases import Action, sources
from .progress import Reporter
from .schema import ShardedTable, sharded_tables


@dataclass
class Work:
    move: MoveRange
    tables: list[ShardedTable]
    db: Pool
    reporter: Reporter
    heartbeat: lease.Heartbeat | None = None

    @property
    def source(self) -> psycopg.Connection[Any]:
        return self.db[self.move.source]

    @property
    def target(self) -> psycopg.Connection[Any]:
        return self.db[self.move.target]

    def checkpoint(self) -> None:
        """Between units of work: stop if the lease was lost or the operator asked to stop."""
        if self.heartbeat is not None:
            self.heartbeat.check()
        if self.reporter.should_stop():
            raise MoveInterrupted(
                f"Stopped at a safe point as asked; move {self.move.id} is consistent. Re-run the command to resume."
            )

    def journal(self, kind: str, message: str, **data: Any) -> None:
        """Record a step in the move's journal and tell the operator."""
        MoveEvent.objects.create(move=self.move, kind=kind, message=message, data=data)
        self.reporter.info(message)

    def set_step(self, step: str) -> None:
        MoveRange.objects.filter(id=self.move.id).update(step=step, updated_at=timezone.now())
        self.move.step = step

    def set_phase(self, phase: Phase, *, action: Action) -> None:
        """Record the phase ``action`` reached, if the move is still in a phase it starts from (see phases.py)."""
        expected = sources(action, phase)
        assert expected, f"{action.name} never leads to {phase}"
        now = timezone.now()
        updated = MoveRange.objects.filter(id=self.move.id, phase__in=expected).update(
            phase=phase, step="", phase_changed_at=now, updated_at=now, last_error=""
        )
        if updated != 1:
            self.move.refresh_from_db()
            if self.move.phase == phase:
                return
            raise MoveError(
                f"Move {self.move.id} is {self.move.phase}, not {' or '.join(p.value for p in expected)}, so "
                f"`{action.name}` cannot make it {phase.value}."
            )
        self.move.phase = phase
        self.move.step = ""
        self.move.phase_changed_at = now
        self.move.last_error = ""

    def set_watermark(self, alias: str, snapshot: str) -> None:
        now = timezone.now()
        MoveRange.objects.filter(id=self.move.id).update(
            watermark_alias=alias, watermark_snapshot=snapshot, watermark_set_at=now
        )
        self.move.watermark_alias = alias
        self.move.watermark_snapshot = snapshot
        self.move.watermark_set_at = now

    def set_subscription_oid(self, oid: int) -> None:
        MoveRange.objects.filter(id=self.move.id).update(subscription_oid=oid)
        self.move.subscription_oid = oid


def record_error(move_id: int, message: str) -> None:
    MoveRange.objects.filter(id=move_id).update(last_error=message[:4000], updated_at=timezone.now())
    MoveEvent.objects.create(move_id=move_id, kind="error", message=message[:4000])


@contextmanager
def driving(move: MoveRange, reporter: Reporter) -> Iterator[Work]:
    """Hold the move's lease and connections; record the error of a failed step on the move."""
    with lease.held(move.id) as heartbeat, pool() as connections:
        move.refresh_from_db()
        work = Work(move, sharded_tables(), connections, reporter, heartbeat)
        try:
            yield work
        except MoveInterrupted:
            raise
        except MoveError as exc:
            record_error(move.id, str(exc))
            raise
        except psycopg.Error as exc:
            message = (
                f"Database error during move {move.id} (step {work.move.step or 'none'}): {exc}. "
                "Fix the cause (see `manage.py shardmove status`), then re-run the command: it resumes."
            )
            record_error(move.id, message)
            raise MoveError(message) from exc
