"""Writes that are not the sync itself: rebuilding the warehouse from scratch."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from . import capture
from .conf import WarehouseConfig
from .engines import warehouse
from .errors import WarehouseError
from .schema import TABLES, drop_schema, schema_exists
from .sync import source_aliases


@dataclass
class RebuildPlan:
    tables: dict[str, int] = field(default_factory=dict)  # warehouse table -> rows it holds
    slots: dict[str, str] = field(default_factory=dict)  # source alias -> slot to drop


def warehouse_rebuild(config: WarehouseConfig, *, dry_run: bool) -> RebuildPlan:
    """Drop the warehouse's tables and every source's slot and publication; the next sync loads from scratch.

    Refuses while a source is unreachable: its slot would stay behind and keep WAL on that server.
    """
    plan = RebuildPlan()
    unreachable = []
    for alias in source_aliases():
        try:
            with capture.source_connection(alias) as conn:
                slot = capture.slot_name(capture.database_name(conn))
                if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone():
                    plan.slots[alias] = slot
        except psycopg.OperationalError:
            unreachable.append(alias)
    if unreachable:
        raise WarehouseError(
            f"Cannot rebuild while {', '.join(unreachable)} is unreachable: its change-capture slot must be dropped "
            "too. Start the server(s) and retry."
        )
    with warehouse(config) as wh:
        if schema_exists(wh):
            present = {str(name) for (name,) in wh.fetchall("SELECT table_name FROM information_schema.tables")}
            for table in TABLES:
                if table in present:
                    plan.tables[table] = int(wh.fetchall(f"SELECT count(*) FROM {table}")[0][0])
        if dry_run:
            return plan
        with wh.transaction():
            drop_schema(wh)
    for alias in source_aliases():
        with capture.source_connection(alias) as conn:
            capture.drop_capture(conn)
    return plan
