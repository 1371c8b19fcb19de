"""Validating a move before anything changes: range, databases, servers, schema, sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db.models import Q
from psycopg import sql

from shardrouter.keyspace import format_key

from .errors import MoveError
from .maps import range_parts
from .models import ACTIVE_PHASES, MoveRange
from .pgconn import Pool, one
from .schema import RangeSize, ShardedTable, range_size, schema_differences, sharded_tables

MIN_SERVER_VERSION = 150000  # row filters on publications arrived in PostgreSQL 15
ID_BATCH = 10_000  # IDs of the range looked up on the target per query by the collision check


def label(lo: int, hi: int) -> str:
    return f"[{format_key(lo)}, {format_key(hi)})"


@dataclass(frozen=True)
class ServerFacts:
    """What a move needs to know about one database's server and role."""

    alias: str
    database: str
    user: str
    version_num: int
    wal_level: str
    max_replication_slots: int
    slots_used: int
    max_wal_senders: int
    senders_used: int
    is_superuser: bool
    can_replicate: bool
    can_subscribe: bool
    can_create_in_database: bool
    tables_not_owned: tuple[str, ...]


def server_facts(conn: psycopg.Connection[Any], alias: str, tables: list[ShardedTable]) -> ServerFacts:
    row = conn.execute(
        """
        SELECT current_database(), current_user, current_setting('server_version_num')::int,
               current_setting('wal_level'), current_setting('max_replication_slots')::int,
               (SELECT count(*) FROM pg_replication_slots)::int, current_setting('max_wal_senders')::int,
               (SELECT count(*) FROM pg_stat_replication)::int,
               r.rolsuper, r.rolreplication,
               r.rolsuper OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_create_subscription')
                              AND pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')),
               has_database_privilege(current_database(), 'CREATE')
        FROM pg_roles r WHERE r.rolname = current_user
        """
    ).fetchone()
    assert row is not None
    not_owned = [
        t.name
        for t in tables
        if one(conn, "SELECT to_regclass(%s) IS NOT NULL", [t.name])
        and not one(
            conn,
            "SELECT pg_has_role(current_user, relowner, 'MEMBER') FROM pg_class WHERE oid = %s::regclass",
            [t.name],
        )
    ]
    return ServerFacts(
        alias=alias,
        database=row[0],
        user=row[1],
        version_num=row[2],
        wal_level=row[3],
        max_replication_slots=row[4],
        slots_used=row[5],
        max_wal_senders=row[6],
        senders_used=row[7],
        is_superuser=row[8],
        can_replicate=row[9],
        can_subscribe=row[10],
        can_create_in_database=row[11],
        tables_not_owned=tuple(not_owned),
    )


def prerequisite_problems(facts: ServerFacts, *, new_move: bool = True) -> list[str]:
    """What stops this server from publishing and subscribing a move's range, each with the fix.

    Free slots and WAL senders are only checked for a new move: a move being
    resumed already holds its own.
    """
    problems: list[str] = []
    where = f"database {facts.alias!r} ({facts.database})"
    if facts.version_num < MIN_SERVER_VERSION:
        problems.append(
            f"{where} runs PostgreSQL {facts.version_num // 10000}; moves need 15 or newer (row-filtered publications)"
        )
    if facts.wal_level != "logical":
        problems.append(
            f"{where} runs with wal_level={facts.wal_level}; moves use logical replication, which needs "
            "wal_level=logical: run `ALTER SYSTEM SET wal_level = logical` on that server and restart it"
        )
    if not (facts.is_superuser or facts.can_replicate):
        problems.append(
            f"role {facts.user!r} on {where} lacks the REPLICATION attribute needed for replication slots: "
            f"run `ALTER ROLE {facts.user} REPLICATION`"
        )
    if not facts.can_subscribe:
        problems.append(
            f"role {facts.user!r} on {where} cannot create subscriptions: run "
            f"`GRANT pg_create_subscription TO {facts.user}` (PostgreSQL 16+; a superuser is needed on 15)"
        )
    if not (facts.is_superuser or facts.can_create_in_database):
        problems.append(
            f"role {facts.user!r} cannot create publications in {where}: run "
            f"`GRANT CREATE ON DATABASE {facts.database} TO {facts.user}`"
        )
    for table in facts.tables_not_owned:
        problems.append(
            f"role {facts.user!r} does not own {table} in {where}; publications and fence triggers need the owner: "
            f"run `ALTER TABLE {table} OWNER TO {facts.user}`"
        )
    free_slots = facts.max_replication_slots - facts.slots_used
    if new_move and free_slots < 2:
        problems.append(
            f"{where} has {free_slots} free replication slot(s) (max_replication_slots={facts.max_replication_slots}); "
            "a move needs 2 (its own and one for the initial copy): raise max_replication_slots and restart"
        )
    free_senders = facts.max_wal_senders - facts.senders_used
    if new_move and free_senders < 2:
        problems.append(
            f"{where} has {free_senders} free WAL sender(s) (max_wal_senders={facts.max_wal_senders}); "
            "a move needs 2: raise max_wal_senders and restart"
        )
    return problems


@dataclass
class MovePlan:
    lo: int
    hi: int
    source: str
    target: str
    tables: list[tuple[ShardedTable, RangeSize]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    existing: MoveRange | None = None

    @property
    def label(self) -> str:
        return label(self.lo, self.hi)


def overlapping_moves(lo: int, hi: int) -> list[MoveRange]:
    return list(MoveRange.objects.filter(Q(lo__lt=hi) & Q(hi__gt=lo), phase__in=ACTIVE_PHASES).order_by("id"))


def validate_request(lo: int, hi: int, target: str) -> MovePlan:
    """Everything that can be checked without the shard servers: range, aliases, map, other moves."""
    if hi <= lo:
        raise MoveError(f"{label(lo, hi)} is empty: HI must be greater than LO (HI is exclusive; MAX is the end).")
    if target not in settings.DATABASES:
        known = ", ".join(sorted(settings.DATABASES))
        raise MoveError(f"Unknown database alias {target!r} for --to; configured aliases: {known}.")
    parts = range_parts(lo, hi)
    sources = sorted({p.alias for p in parts})
    if len(sources) > 1:
        pieces = "; ".join(f"{p.label()} is on {p.alias}" for p in parts)
        commands = " and ".join(
            f"`shardmove start {format_key(p.lo)} {format_key(p.hi)} --to {target}`" for p in parts if p.alias != target
        )
        raise MoveError(
            f"{label(lo, hi)} spans several source databases ({pieces}); a move has exactly one source. "
            f"Split it into one move per source: {commands}."
        )
    source = sources[0]
    others = overlapping_moves(lo, hi)
    same = [m for m in others if (m.lo, m.hi, m.target) == (lo, hi, target)]
    different = [m for m in others if m not in same]
    if different:
        detail = "; ".join(f"move {m.id} {label(m.lo, m.hi)} {m.source} -> {m.target} is {m.phase}" for m in different)
        raise MoveError(
            f"{label(lo, hi)} overlaps a range that is already moving ({detail}). Finish it (`shardmove complete`) "
            "or cancel it (`shardmove cancel`) first, or pick a range that does not overlap."
        )
    existing = same[0] if same else None
    if existing is None:
        switched = [p for p in parts if p.reads_switched]
        if switched:
            raise MoveError(
                f"{switched[0].label()} reads from {switched[0].read_alias} while writes go to {switched[0].alias}, "
                "but no move owns it; repair the map with `manage.py shardmap assign` first."
            )
        if source == target:
            raise MoveError(f"{label(lo, hi)} is already on {target}: source and target are the same database.")
    else:
        source = existing.source
    return MovePlan(lo=lo, hi=hi, source=source, target=target, existing=existing)


@dataclass(frozen=True)
class Collision:
    """A row of the range whose primary key another user's row already has on the target."""

    table: str
    row_id: int
    key: int  # the moving row's shard key
    target_key: int  # the shard key of the row holding that ID on the target

    def describe(self, target: str) -> str:
        return f"{self.table} id={self.row_id} (user {self.key}) is taken on {target} by user {self.target_key}"


def id_collisions(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    table: ShardedTable,
    lo: int,
    hi: int,
    *,
    limit: int = 5,
) -> list[Collision]:
    """Rows of ``[lo, hi)`` on the source whose ID the target already uses for a row outside the range.

    Such a row makes the copy fail (a unique violation) and retry forever.
    Only the IDs within the span of the target's other rows are looked up,
    in batches; with application-issued IDs there are normally none.
    """
    outside = sql.SQL("NOT ({})").format(table.in_range(lo, hi))
    pk = sql.Identifier(table.pk)
    span = target.execute(
        sql.SQL("SELECT min({pk}), max({pk}) FROM {t} WHERE {outside}").format(pk=pk, t=table.ident, outside=outside)
    ).fetchone()
    if span is None or span[0] is None:
        return []
    low, high = int(span[0]), int(span[1])
    ids_query = sql.SQL(
        "SELECT {pk}, {key} FROM {t} WHERE {r} AND {pk} >= %s AND {pk} <= %s ORDER BY {pk} LIMIT %s"
    ).format(pk=pk, key=sql.Identifier(table.key), t=table.ident, r=table.in_range(lo, hi))
    taken_query = sql.SQL("SELECT {pk}, {key} FROM {t} WHERE {pk} = ANY(%s) AND {outside}").format(
        pk=pk, key=sql.Identifier(table.key), t=table.ident, outside=outside
    )
    found: list[Collision] = []
    start = low
    while len(found) < limit:
        batch = {int(i): int(k) for i, k in source.execute(ids_query, [start, high, ID_BATCH]).fetchall()}
        if not batch:
            break
        taken = target.execute(taken_query, [list(batch)]).fetchall()
        found += [Collision(table.name, int(i), batch[int(i)], int(k)) for i, k in sorted(taken)]
        if len(batch) < ID_BATCH or max(batch) >= high:
            break
        start = max(batch) + 1
    return found[:limit]


def collision_message(collisions: list[Collision], target: str) -> str:
    listed = "; ".join(c.describe(target) for c in collisions)
    return (
        f"{listed}. IDs must be unique per table on each database: copying these rows would fail (and retry "
        f"forever). Delete or re-key the rows on {target} (they are outside the moving range), then retry."
    )


def check_servers(plan: MovePlan, db: Pool) -> None:
    """Server settings, rights, schema and emptiness of the target; fills ``plan.tables`` and ``plan.checks``."""
    tables = sharded_tables()
    problems: list[str] = []
    facts = {alias: server_facts(db[alias], alias, tables) for alias in (plan.source, plan.target)}
    for item in facts.values():
        problems += prerequisite_problems(item, new_move=plan.existing is None)
    if problems:
        raise MoveError("This move cannot start: " + "; ".join(problems) + ".")
    plan.checks.append(
        "wal_level=logical, replication rights and free slots on "
        + " and ".join(f"{a} (PostgreSQL {f.version_num // 10000})" for a, f in facts.items())
    )
    differences = schema_differences(tables, db[plan.source], db[plan.target])
    if differences:
        raise MoveError(
            f"The schema on {plan.target} does not match {plan.source}: " + "; ".join(differences) + ". "
            "Run `manage.py migrate_shards` so every database has the same migrations, then retry."
        )
    plan.checks.append(f"schema of {len(tables)} table(s) identical on {plan.source} and {plan.target}")
    if plan.existing is None:
        occupied = {t.name: range_size(db[plan.target], t, plan.lo, plan.hi).rows for t in tables}
        occupied = {name: rows for name, rows in occupied.items() if rows}
        if occupied:
            detail = ", ".join(f"{rows} in {name}" for name, rows in occupied.items())
            raise MoveError(
                f"{plan.target} already holds rows of {plan.label} ({detail}); copying would duplicate or clash with "
                "them. If they are left over from an abandoned move, delete them there first (they are not "
                "routed to), then retry."
            )
        plan.checks.append(f"{plan.target} holds no rows of the range yet")
        collisions = [c for t in tables for c in id_collisions(db[plan.source], db[plan.target], t, plan.lo, plan.hi)]
        if collisions:
            raise MoveError(
                f"{plan.target} already uses IDs of rows of {plan.label}: "
                + collision_message(collisions[:5], plan.target)
            )
        plan.checks.append(f"no row of the range has an ID already used on {plan.target}")
    plan.tables = [(t, range_size(db[plan.source], t, plan.lo, plan.hi)) for t in tables]
