"""Sharding-readiness audit: the queries a range shard map would break, found by call site before sharding.

With ``SHARDROUTER["AUDIT"] = True`` the router keeps sending every query where
it went before (in a monolith: ``default``), and in addition looks at each query
on a model that *would* be sharded under a candidate map (``AUDIT_MAP``) and
records what sharding would break:

- ``no_user``: the query names no user (no shard-key filter, no instance, no
  ``for_user()``, no ``shard_for()``): a router could not place it. The request
  middleware's context does not count: a query that relies on it without
  filtering by the user would silently see one shard's rows of a cross-user
  question;
- ``spans_ranges``: it names users of more than one range of the candidate map,
  so on shards it would see only part of its rows;
- ``cross_database_join``: it joins (or sub-queries) a table that would live in
  another database (a control table such as ``auth_user``);
- ``cross_database_relation``: it relates a sharded row to a control row
  (a foreign key assignment across the future database boundary);
- ``raw_sql``: raw SQL on a sharded table, which no router sees.

Findings are counted per (kind, model, call site) in memory, where the call
site is the first frame outside Django, this package and the standard library,
and flushed to the control database (``shardrouter_auditfinding``) at most every
``AUDIT_FLUSH_SECONDS`` over the router's private connection, so the request's
own transaction is never touched. The example stored with a finding is the SQL
with placeholders, never parameter values, so no row data leaves the query.

The cost on a query is a few dictionary look-ups when the query names its user
through a hint, and a short walk of the calling frames otherwise; see
``bench/bench_audit.py`` for the measured overhead.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from types import FrameType
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.db import models
from django.db.models.sql.query import Query

from .context import named_explicitly
from .keyspace import ShardMap, ShardRange, parse_map_text

logger = logging.getLogger(__name__)

NO_USER = "no_user"
SPANS_RANGES = "spans_ranges"
CROSS_DATABASE_JOIN = "cross_database_join"
CROSS_DATABASE_RELATION = "cross_database_relation"
RAW_SQL = "raw_sql"


@dataclass(frozen=True)
class FindingKind:
    name: str
    severity: int  # lower is worse: the report lists findings worst-first
    meaning: str
    fix: str


KINDS: dict[str, FindingKind] = {
    kind.name: kind
    for kind in (
        FindingKind(
            CROSS_DATABASE_JOIN,
            0,
            "joins or sub-queries a table that will live in another database",
            "denormalise the column onto the sharded row, or run two queries (the control one, then for_user())",
        ),
        FindingKind(
            CROSS_DATABASE_RELATION,
            1,
            "relates a sharded row to a row that will live in another database",
            "store the other row's ID as a plain integer field (no ForeignKey across databases)",
        ),
        FindingKind(
            RAW_SQL,
            2,
            "raw SQL on a sharded table: no router sees it, it runs wherever the cursor points",
            "use connections[shard_alias_for(user_id)] for one user, or shardrouter.scatter for all users",
        ),
        FindingKind(
            NO_USER,
            3,
            "names no user: a router cannot tell which shard holds the rows",
            "Model.objects.for_user(user_id), `with shard_for(user_id):`, or scatter-gather for a cross-user report",
        ),
        FindingKind(
            SPANS_RANGES,
            4,
            "names users of several ranges: on shards it would see only the rows of one",
            "query per user (for_user()), or scatter-gather with shardrouter.scatter",
        ),
    )
}

_EXAMPLE_LIMIT = 500


@dataclass(frozen=True)
class AuditSettings:
    enabled: bool
    candidate_map: ShardMap | None
    sharded_apps: frozenset[str]
    shard_keys: dict[str, str]
    flush_seconds: float
    map_error: str = ""


def _parse_candidate_map(raw: Any) -> tuple[ShardMap | None, str]:
    if raw in (None, ""):
        return None, ""
    try:
        if isinstance(raw, str):
            ranges = parse_map_text(raw)
        else:
            ranges = [ShardRange(int(lo), int(hi), str(alias)) for lo, hi, alias in raw]
        return ShardMap(version=0, ranges=tuple(sorted(ranges, key=lambda r: r.lo))), ""
    except Exception as exc:
        return None, str(exc)


_forced: bool | None = None
_settings_lock = threading.Lock()
_cached: AuditSettings | None = None


def audit_settings() -> AuditSettings:
    """The audit's settings, read once from ``settings.SHARDROUTER`` (re-read when a test overrides them)."""
    global _cached
    current = _cached
    if current is not None:
        return current
    with _settings_lock:
        raw = getattr(settings, "SHARDROUTER", {})
        candidate, error = _parse_candidate_map(raw.get("AUDIT_MAP"))
        current = AuditSettings(
            enabled=bool(raw.get("AUDIT", False)) if _forced is None else _forced,
            candidate_map=candidate,
            sharded_apps=frozenset(raw.get("AUDIT_SHARDED_APPS", raw.get("SHARDED_APPS", []))),
            shard_keys=dict(raw.get("AUDIT_SHARD_KEYS", {})),
            flush_seconds=float(raw.get("AUDIT_FLUSH_SECONDS", 10.0)),
            map_error=error,
        )
        _cached = current
        return current


def force_audit(enabled: bool | None) -> None:
    """Turn the audit on or off whatever the settings say (the pytest plugin's ``--shard-audit``); None undoes it."""
    global _forced
    _forced = enabled
    _reset_settings()


def _reset_settings(**_: Any) -> None:
    global _cached
    _cached = None
    audit_shard_key.cache_clear()
    _sharded_tables.cache_clear()


setting_changed.connect(_reset_settings, dispatch_uid="shardrouter.audit.reset")


def audit_enabled() -> bool:
    return audit_settings().enabled


@cache
def audit_shard_key(model: type[models.Model]) -> str | None:
    """The attribute that would shard ``model``, or None if it would stay in the control database.

    In order: ``AUDIT_SHARD_KEYS["app.Model"]``; for models of the audited apps,
    the model's own ``shard_key``, its only foreign key to the user model, or a
    ``user_id`` field.
    """
    config = audit_settings()
    label = model._meta.label
    if label in config.shard_keys:
        return config.shard_keys[label]
    if model._meta.app_label not in config.sharded_apps:
        return None
    own = getattr(model, "shard_key", None)
    if isinstance(own, str):
        return own
    user_fks = [
        f.attname
        for f in model._meta.concrete_fields
        if f.is_relation and f.related_model is not None and f.related_model._meta.label == settings.AUTH_USER_MODEL
    ]
    if len(user_fks) == 1:
        return user_fks[0]
    if any(f.attname == "user_id" for f in model._meta.concrete_fields):
        return "user_id"
    return None


def audited_models() -> list[tuple[type[models.Model], str | None]]:
    """Every concrete model of the audited apps (or named in AUDIT_SHARD_KEYS) with its shard key."""
    config = audit_settings()
    return [
        (m, audit_shard_key(m))
        for m in apps.get_models()
        if m._meta.app_label in config.sharded_apps or m._meta.label in config.shard_keys
    ]


@cache
def _sharded_tables() -> tuple[frozenset[str], re.Pattern[str] | None]:
    tables = frozenset(m._meta.db_table for m, key in audited_models() if key is not None)
    if not tables:
        return tables, None
    names = "|".join(re.escape(t) for t in sorted(tables, key=len, reverse=True))
    return tables, re.compile(rf"\b({names})\b", re.IGNORECASE)


# --- call sites ---------------------------------------------------------------------------------------------

_DJANGO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(models.__file__)))  # .../django/db
_DJANGO_ROOT = os.path.dirname(_DJANGO_DIR)
_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB = os.path.abspath(sysconfig.get_paths()["stdlib"])


def _is_library_frame(filename: str) -> bool:
    return (
        filename.startswith(_DJANGO_ROOT)
        or filename.startswith(_OWN_DIR)
        or filename.startswith(_STDLIB)
        or filename.startswith("<")
    )


def _application_frame(start: FrameType | None) -> FrameType | None:
    frame = start
    while frame is not None:
        if not _is_library_frame(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def _call_site(frame: FrameType | None) -> str:
    if frame is None:
        return "<unknown>"
    return f"{_relative_filename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"


@lru_cache(maxsize=4096)
def _relative_filename(filename: str) -> str:
    """``filename`` relative to the longest sys.path entry holding it (``notes/views.py``)."""
    for root in sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True):
        if filename.startswith(root + os.sep):
            return os.path.relpath(filename, root)
    return filename


# --- the recorder -------------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    model: str
    call_site: str
    count: int
    example: str
    first_seen: float = 0.0
    last_seen: float = 0.0

    def to_json(self) -> dict[str, Any]:
        kind = KINDS[self.kind]
        return {
            "kind": self.kind,
            "model": self.model,
            "call_site": self.call_site,
            "count": self.count,
            "example": self.example,
            "meaning": kind.meaning,
            "fix": kind.fix,
        }


def worst_first(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (KINDS[f.kind].severity, -f.count, f.model, f.call_site))


@dataclass
class FindingRecorder:
    """Per-process counts, flushed to the control database now and then (and at exit)."""

    totals: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    pending: dict[tuple[str, str, str], int] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    persist: bool = True  # False: keep counts in memory only (the pytest plugin)

    def record(self, kind: str, model: str, call_site: str, example: Any) -> None:
        key = (kind, model, call_site)
        now = time.time()
        with self.lock:
            finding = self.totals.get(key)
            if finding is None:
                text = example() if callable(example) else str(example)
                finding = Finding(kind, model, call_site, 0, text[:_EXAMPLE_LIMIT], first_seen=now)
                self.totals[key] = finding
            finding.count += 1
            finding.last_seen = now
            self.pending[key] = self.pending.get(key, 0) + 1
            due = self.persist and time.monotonic() - self.last_flush >= audit_settings().flush_seconds
        if due:
            self.flush()

    def findings(self) -> list[Finding]:
        with self.lock:
            return worst_first(Finding(**vars(f)) for f in self.totals.values())

    def clear(self) -> None:
        with self.lock:
            self.totals.clear()
            self.pending.clear()

    def flush(self) -> int:
        """Add this process's new counts to ``shardrouter_auditfinding``; returns how many rows it touched."""
        with self.lock:
            batch = [(key, count, self.totals[key]) for key, count in self.pending.items()]
            self.pending.clear()
            self.last_flush = time.monotonic()
        if not batch:
            return 0
        from .control import control_connection

        try:
            with control_connection.cursor() as cur:
                cur.executemany(
                    """
                    INSERT INTO shardrouter_auditfinding (kind, model, call_site, count, example, first_seen, last_seen)
                    VALUES (%s, %s, %s, %s, %s, now(), now())
                    ON CONFLICT (kind, model, call_site)
                    DO UPDATE SET count = shardrouter_auditfinding.count + EXCLUDED.count, last_seen = now()
                    """,
                    [(k[0], k[1], k[2], count, f.example) for k, count, f in batch],
                )
        except Exception as exc:
            # Keep the counts for the next flush: an audit must never fail the application's query.
            with self.lock:
                for key, count, _ in batch:
                    self.pending[key] = self.pending.get(key, 0) + count
            logger.warning("Sharding audit: could not store %d finding(s) yet: %s", len(batch), exc)
            return 0
        return len(batch)


recorder = FindingRecorder()


def _flush_at_exit() -> None:
    try:
        if recorder.persist and audit_settings().enabled:
            recorder.flush()
    except Exception:  # settings never configured, or the database already gone: nothing to keep
        pass


atexit.register(_flush_at_exit)


# --- what a query names -------------------------------------------------------------------------------------


def _pinned_keys(where: Any, attname: str, base_alias: str | None) -> set[int] | None:
    """The user IDs an AND-ed ``attname = x`` / ``attname IN (...)`` condition pins, or None."""
    if getattr(where, "negated", False) or getattr(where, "connector", "AND") != "AND":
        return None
    found: set[int] | None = None
    for child in getattr(where, "children", ()):
        keys: set[int] | None
        if hasattr(child, "children"):
            keys = _pinned_keys(child, attname, base_alias)
        else:
            keys = _lookup_keys(child, attname, base_alias)
        if keys is not None:
            found = keys if found is None else found & keys
    return found


def _lookup_keys(lookup: Any, attname: str, base_alias: str | None) -> set[int] | None:
    lhs = getattr(lookup, "lhs", None)
    target = getattr(lhs, "target", None)
    if target is None or getattr(target, "attname", None) != attname:
        return None
    if base_alias is not None and getattr(lhs, "alias", base_alias) != base_alias:
        return None
    name = getattr(lookup, "lookup_name", "")
    rhs = getattr(lookup, "rhs", None)
    try:
        if name == "exact" and rhs is not None and not hasattr(rhs, "resolve_expression"):
            value: Any = getattr(rhs, "pk", rhs)
            return {int(value)}
        if name == "in" and isinstance(rhs, (list, tuple, set, frozenset)):
            items: list[Any] = [getattr(v, "pk", v) for v in rhs]
            return {int(v) for v in items}
    except (TypeError, ValueError):
        return None
    return None


def _ranges_of(keys: Iterable[int], candidate: ShardMap | None) -> int:
    if candidate is None:
        return 1
    return len({candidate.range_for(k).lo for k in keys})


def _joined_control_tables(query: Query) -> list[str]:
    sharded, _ = _sharded_tables()
    tables: list[str] = []
    for alias, join in query.alias_map.items():
        if not query.alias_refcount.get(alias):
            continue  # a join Django set up and trimmed again: it is not in the SQL
        name = getattr(join, "table_name", None)
        if name and name not in sharded and name not in tables:
            tables.append(name)
    if query.model is not None and query.select_related:
        for table in _select_related_tables(query.model, query.select_related, sharded):
            if table not in tables:
                tables.append(table)
    for sub in _subqueries(query.where):
        sub_model = getattr(sub, "model", None)
        if sub_model is not None and sub_model._meta.db_table not in sharded:
            tables.append(sub_model._meta.db_table)
    return tables


def _select_related_tables(model: type[models.Model], spec: Any, sharded: frozenset[str]) -> Iterator[str]:
    """Tables of other databases that ``select_related`` would join (its joins are made only at compile time)."""
    if spec is True:
        fields = [f for f in model._meta.concrete_fields if f.is_relation and not f.null]
        spec = {f.name: {} for f in fields}
    if not isinstance(spec, dict):
        return
    for name, nested in spec.items():
        try:
            related = model._meta.get_field(name).related_model
        except Exception:
            continue
        if related is None or isinstance(related, str):
            continue
        if related._meta.db_table not in sharded:
            yield related._meta.db_table
        yield from _select_related_tables(related, nested, sharded)


def _subqueries(node: Any) -> Iterator[Query]:
    for child in getattr(node, "children", ()):
        if hasattr(child, "children"):
            yield from _subqueries(child)
            continue
        rhs = getattr(child, "rhs", None)
        query = getattr(rhs, "query", rhs)
        if isinstance(query, Query):
            yield query


def _sql_example(query: Query) -> str:
    try:
        sql, _params = query.get_compiler(using="default").as_sql()
        # The column list says nothing about routing and would push the WHERE clause out of the example.
        return re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", str(sql), count=1, flags=re.DOTALL)
    except Exception:
        return f"<{type(query).__name__} on {query.model._meta.label if query.model else '?'}>"


def _calling_queryset(model: type[models.Model], frame: FrameType | None) -> tuple[Any, FrameType | None]:
    """The QuerySet (or RawQuerySet) whose ``db`` property asked the router, and the frame above it."""
    depth = 0
    while frame is not None and depth < 8:
        candidate = frame.f_locals.get("self") if frame.f_code.co_name == "db" else None
        if candidate is not None and getattr(candidate, "model", None) is model:
            return candidate, frame.f_back
        frame = frame.f_back
        depth += 1
    return None, frame


def _keys_from_creation(attname: str, frame: FrameType | None) -> set[int] | None:
    """User IDs of rows being created by ``create(**kwargs)`` or ``bulk_create(objs)`` above the router call."""
    depth = 0
    while frame is not None and depth < 4:
        name = frame.f_code.co_name
        local = frame.f_locals
        if name in {"create", "get_or_create", "update_or_create"} and isinstance(local.get("kwargs"), dict):
            value = local["kwargs"].get(attname, local["kwargs"].get(attname.removesuffix("_id")))
            if value is not None:
                return {int(getattr(value, "pk", value))}
        if name in {"bulk_create", "bulk_update"} and local.get("objs") is not None:
            values: set[Any] = {getattr(obj, attname, None) for obj in local["objs"]}
            if values and None not in values:
                return {int(v) for v in values}
        frame = frame.f_back
        depth += 1
    return None


_last_queryset = threading.local()


def _seen_just_before(queryset: Any) -> bool:
    previous = getattr(_last_queryset, "ref", None)
    try:
        _last_queryset.ref = weakref.ref(queryset)
    except TypeError:
        _last_queryset.ref = None
        return False
    return previous is not None and previous() is queryset


def observe_route(model: type[models.Model], hints: dict[str, Any]) -> None:
    """Record what sharding would break about the query now asking the router (audit mode only)."""
    attname = audit_shard_key(model)
    if attname is None:
        return
    candidate = audit_settings().candidate_map
    instance = hints.get("instance")
    if instance is not None:
        instance_key = audit_shard_key(instance.__class__)
        if instance_key is not None and getattr(instance, instance_key, None) is not None:
            return
    if hints.get("shard_key") is not None or named_explicitly():
        return
    caller = sys._getframe(1)
    queryset, above = _calling_queryset(model, caller)
    site_frame = _application_frame(above or caller)
    label = model._meta.label
    if queryset is None:
        # Not a query: Django asking where a related instance would be written (a foreign key assignment).
        return
    if _seen_just_before(queryset):
        return  # one query asks the router more than once (update(), delete()): count it once
    query = getattr(queryset, "query", None)
    if not isinstance(query, Query):  # RawQuerySet: raw SQL through the ORM
        recorder.record(RAW_SQL, label, _call_site(site_frame), str(getattr(queryset, "raw_query", "")))
        return
    for table in _joined_control_tables(query):
        recorder.record(
            CROSS_DATABASE_JOIN, label, _call_site(site_frame), lambda q=query, t=table: f"joins {t}: {_sql_example(q)}"
        )
    keys = _pinned_keys(query.where, attname, query.base_table) or _keys_from_creation(attname, above)
    if keys is None:
        recorder.record(NO_USER, label, _call_site(site_frame), lambda q=query: _sql_example(q))
    elif _ranges_of(keys, candidate) > 1:
        recorder.record(SPANS_RANGES, label, _call_site(site_frame), lambda q=query: _sql_example(q))


def observe_relation(obj1: models.Model, obj2: models.Model) -> None:
    """Record a relation between a row that would be sharded and one that would not."""
    key1 = audit_shard_key(obj1.__class__)
    key2 = audit_shard_key(obj2.__class__)
    if (key1 is None) == (key2 is None):
        return
    sharded, other = (obj1, obj2) if key1 is not None else (obj2, obj1)
    frame = _application_frame(sys._getframe(1))
    recorder.record(
        CROSS_DATABASE_RELATION,
        sharded.__class__._meta.label,
        _call_site(frame),
        f"{sharded.__class__._meta.label} -> {other.__class__._meta.label}",
    )


def observe_safely(observe: Any, *args: Any) -> None:
    """Run an observer; an audit never fails (or slows beyond its own cost) the query it watches."""
    try:
        observe(*args)
    except Exception:
        logger.exception("Sharding audit: could not analyse a query; it ran unchanged")


def audit_execute_wrapper(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """Connection execute wrapper: raw SQL (not built by Django) that touches a sharded table."""
    if audit_settings().enabled and isinstance(sql, str):
        _, pattern = _sharded_tables()
        if pattern is not None:
            match = pattern.search(sql)
            if match is not None:
                frame: FrameType | None = sys._getframe(1)
                # Skip Django's cursor wrapper frames; the next frame tells who wrote the SQL.
                while frame is not None and frame.f_code.co_filename.endswith(os.path.join("backends", "utils.py")):
                    frame = frame.f_back
                if frame is not None and not _is_library_frame(frame.f_code.co_filename):
                    model = next(
                        (m._meta.label for m, _ in audited_models() if m._meta.db_table == match.group(1).lower()),
                        match.group(1),
                    )
                    recorder.record(RAW_SQL, model, _call_site(frame), sql)
    return execute(sql, params, many, context)


def install_execute_wrapper(sender: Any, connection: Any, **_: Any) -> None:
    """``connection_created`` receiver: in audit mode every new connection carries the audit's execute wrapper."""
    installed = audit_wrapper_installed(connection)
    if audit_enabled() and not installed:
        connection.execute_wrappers.append(audit_execute_wrapper)
    elif installed and not audit_enabled():
        connection.execute_wrappers.remove(audit_execute_wrapper)


def audit_wrapper_installed(connection: Any) -> bool:
    return audit_execute_wrapper in connection.execute_wrappers


def stored_findings() -> list[Finding]:
    """Every finding stored in the control database (all processes), worst first."""
    from .control import control_connection

    with control_connection.cursor() as cur:
        cur.execute(
            "SELECT kind, model, call_site, count, example, extract(epoch from first_seen), "
            "extract(epoch from last_seen) FROM shardrouter_auditfinding"
        )
        rows = cur.fetchall()
    return worst_first(
        Finding(r[0], r[1], r[2], int(r[3]), r[4], float(r[5] or 0), float(r[6] or 0)) for r in rows if r[0] in KINDS
    )


def reset_stored_findings() -> int:
    """Delete every stored finding (and this process's counts); returns how many rows were removed."""
    from .control import control_connection

    recorder.clear()
    with control_connection.cursor() as cur:
        cur.execute("DELETE FROM shardrouter_auditfinding")
        return int(cur.rowcount or 0)


def count_stored_findings() -> int:
    from .control import control_connection

    with control_connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM shardrouter_auditfinding")
        row = cur.fetchone()
    return int(row[0]) if row else 0
