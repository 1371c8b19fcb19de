"""Read-only views of the warehouse's state: per source, its position, lag and errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from . import capture
from .conf import WarehouseConfig
from .engines import warehouse
from .errors import WarehouseUnavailable
from .pgoutput import format_lsn
from .schema import schema_exists
from .sync import now_utc, source_aliases


@dataclass
class TableState:
    table: str
    position: str
    error: str | None


@dataclass
class SourceState:
    alias: str
    slot: str
    loaded: bool
    position: str
    lag_seconds: float | None  # every change committed this long ago or earlier is in the warehouse
    behind_bytes: int | None  # WAL the source has written past the slot's confirmed position (None: unreachable)
    transactions: int
    changes: int
    last_commit_at: str | None
    error: str | None
    tables: list[TableState]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ", timespec="seconds")


def warehouse_status(config: WarehouseConfig, *, probe_sources: bool = True) -> list[SourceState]:
    """Each source's state as the warehouse recorded it, plus (when reachable) how far its WAL has moved on."""
    with warehouse(config, read_only=True) as wh:
        if not schema_exists(wh):
            raise WarehouseUnavailable("The warehouse is empty; run `manage.py warehouse sync` to load it.")
        sources = wh.fetchall(
            "SELECT alias, slot, loaded, transactions, changes, last_commit_at, caught_up_at, error FROM wh_source "
            "ORDER BY alias"
        )
        positions = wh.fetchall("SELECT alias, source_table, position_lsn, error FROM wh_position ORDER BY 1, 2")
    now = now_utc()
    states = []
    known = {row[0] for row in sources}
    for alias, slot, loaded, transactions, changes, last_commit, caught_up, error in sources:
        tables = [TableState(t, format_lsn(int(p)), e) for a, t, p, e in positions if a == alias]
        lowest = min((int(p) for a, _t, p, _e in positions if a == alias), default=0)
        behind: int | None = None
        if probe_sources and slot:
            try:
                with capture.source_connection(alias, timeout=2) as conn:
                    position = capture.slot_position(conn, slot)
                    behind = position.behind_bytes if position else None
            except psycopg.OperationalError:
                behind = None
        states.append(
            SourceState(
                alias=alias,
                slot=slot,
                loaded=bool(loaded),
                position=format_lsn(lowest),
                lag_seconds=None if caught_up is None else max(0.0, (now - caught_up).total_seconds()),
                behind_bytes=behind,
                transactions=int(transactions),
                changes=int(changes),
                last_commit_at=_iso(last_commit),
                error=error,
                tables=tables,
            )
        )
    for alias in source_aliases():
        if alias not in known:
            states.append(SourceState(alias, "", False, "0/0", None, None, 0, 0, None, "not synced yet", []))
    return states
