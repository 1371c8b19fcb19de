"""Scale-out benchmark of the database tier: monolith vs 2 vs 4 shard servers, each capped at the same CPU share.

Run as root on a machine with the cgroup v1 cpu controller (it starts its own private embedded stack, so no
`devstack exec` around it):

    .venv/bin/python bench/bench_scaleout.py                 # the table (about 4 minutes)
    .venv/bin/python bench/bench_scaleout.py --live          # the live version and its chart (about 25 minutes)

Both start four PostgreSQL servers pg1..pg4, the control database on pg1 beside its shard databases (the platform
on one server is one machine: its control database shares that machine's CPU), each server in a cgroup of its own
capped at ``--cap`` CPUs (default 0.05, in 40 ms periods) with a high ``cpu.shares`` (8192) so it gets its quota
on a busy machine; the client processes in an uncapped high-shares cgroup (measured, never the bottleneck). The workload is the platform's own sharded reads and writes through the
Django router (``generation_list`` page and count, ``generation_get``, ``generation_create``, an update via
``run_sharded_write``) for ``--users`` users spread evenly over the whole key space [0, 2^63).

Table modes, one after another on the same servers (data reloaded for each):
  monolith      the platform's monolith mode: every user's content in the control database (``0:MAX=default``),
                everything on pg1
  sharded-on-1  sharded mode on that one server: the control database and one shard database on pg1, the map
                in quarters all owned by shard1; the map store joins them into ``0:MAX=shard1``
  four-on-1     the quarters in four shard databases (shard5..shard8), all on pg1
  2 servers     halves on shard1 (pg1, with the control database) and shard2 (pg2)
  4 servers     quarters on shard1..shard4 (pg1..pg4)
  two-on-1      halves on shard5 and shard6, both on pg1 (only with --modes, like the modes below)
  monolith-4-connections   shard1's one database, reached through four connections per client (one per quarter)
  side-by-side  half of the users in one database on pg1, half in four databases on pg2, at the same time
                (-swapped: the other way round): each layout's CPU per statement in the same window
  sharded-side-by-side   the same with sharded-on-1's quarters owned by one database against one database
  connections-side-by-side   the same with one database through four connections instead of four databases
Each mode: closed-loop saturation from ``--clients`` processes (throughput), then an open-loop fixed offered
load (``--fixed-fraction`` of the monolith's saturated throughput, the same for every mode: p50/p95).

Experiments on the table: ``--modes monolith,four-on-1`` runs only those, ``--repeat N`` runs them N times in
turn, ``--fixed-seconds 0`` skips the fixed load, ``--pooler POOL`` puts PgBouncer (transaction mode) in front of
each shard server, ``--server-setting NAME=VALUE`` changes PostgreSQL on every shard server (restarting them
for settings such as shared_buffers), ``--explain`` prints each database's plans and table statistics,
``--perf FOLDER`` records pg1 with perf, ``--watch-writes`` samples the open write transactions on pg1 (how long,
and whether each waits for CPU or for its client). Each mode also prints, per request, the statements the clients sent (by
database) and pg1's CPU (also by kind of process), transactions, rows, buffers and minor page faults, and each
server's CPU per statement (docs/scaling.md, "Sharded mode on one server").

``--live``: every user starts on shard1 at ``--live-fraction`` (0.8) of the monolith's measured capacity; the
real ``manage.py shardmove`` engine moves half the key space to pg2 under that load (start --wait, verify,
switch-reads, switch-writes, complete), the load rises in steps, then both halves split again onto pg3 and pg4
and the load rises again. Throughput, p95, errors and per-server CPU are recorded every second with the move
phases marked; the chart goes to ``docs/scaling-live.png``. A ``switch-writes`` that gives up (its lock wait is
bounded by SHARDMOVE['LOCK_TIMEOUT_SECONDS'], never raised here) is run again as an operator would: at the same
load (``--cut-over-retries``), then with the offered load lowered to the step before, restored afterwards; each
command and load change is logged, kept in the JSON and marked on the chart. Exit status 1 when any request
failed or a move could not finish (the chart and counts are written either way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._django import machine, percentile  # noqa: E402
from quantumquill.devstack import cgroups  # noqa: E402
from quantumquill.devstack.stack import Profile, Stack, Topology  # noqa: E402

KEYSPACE_END = 2**63 - 1
SHARDS = ("shard1", "shard2", "shard3", "shard4")
ON_ONE = ("shard5", "shard6", "shard7", "shard8")  # four shard databases on pg1 (four-on-1)
# Three more names for shard1's database: the monolith's one database through four connections per client
# (one per quarter of the key space), as many backends per request as sharded mode on one server.
SAME_DATABASE = ("shard1b", "shard1c", "shard1d")
SAME_DATABASE_2 = ("shard2b", "shard2c", "shard2d")  # the same for shard2's database on pg2
ON_TWO = ("shard9", "shard10", "shard11", "shard12")  # four shard databases on pg2 (side-by-side modes)
ALIASES = ("default", *SHARDS, *ON_ONE, *SAME_DATABASE, *ON_TWO, *SAME_DATABASE_2)
TOPOLOGY = Topology(
    {
        "default": ("pg1", "quantumquill"),  # the control database shares pg1's cap in every mode
        **{alias: (f"pg{i}", f"qq_{alias}") for i, alias in enumerate(SHARDS, start=1)},
        **{alias: ("pg1", f"qq_{alias}") for alias in ON_ONE},
        **{alias: ("pg1", "qq_shard1") for alias in SAME_DATABASE},
        **{alias: ("pg2", f"qq_{alias}") for alias in ON_TWO},
        **{alias: ("pg2", "qq_shard2") for alias in SAME_DATABASE_2},
    },
    "0:MAX=shard1",
)
SERVERS = ("pg1", "pg2", "pg3", "pg4")
TABLES = "content_generation, content_usageevent"
PERIOD_US = 40_000  # 40 ms: a small cap runs in short slices, not 100 ms bursts and pauses


def quarters(aliases: tuple[str, ...], lo: int = 0, hi: int = KEYSPACE_END) -> list[tuple[str, int, int]]:
    step = (hi - lo) // len(aliases)
    edges = [lo + i * step for i in range(len(aliases))] + [hi]
    return [(alias, edges[i], edges[i + 1]) for i, alias in enumerate(aliases)]


HALF = KEYSPACE_END // 2


MODES: dict[str, list[tuple[str, int, int]]] = {
    # The platform's monolith mode: content in the control database, one database on one server.
    "monolith": [("default", 0, KEYSPACE_END)],
    # Sharded mode on one server as the platform runs it until a split is due: the map in quarters, every
    # quarter owned by one shard database (shard1), beside the control database on pg1. The map store joins
    # neighbouring ranges with the same owner (``merge_adjacent``), so what it stores is ``0:MAX=shard1``.
    "sharded-on-1": quarters(("shard1",) * 4),
    "four-on-1": quarters(ON_ONE),  # the quarters in four shard databases, all on pg1
    "2 servers": quarters(SHARDS[:2]),
    "4 servers": quarters(SHARDS),
    "two-on-1": quarters(ON_ONE[:2]),  # halves on two shard databases on pg1 (not in the default table)
    "monolith-4-connections": quarters(("shard1", *SAME_DATABASE)),  # one database, 4 connections (ditto)
    # One database on one server and four on another, at the same time, each with half of the users: the
    # cost per statement of each layout under the same load of the machine (ditto; and swapped between servers).
    "side-by-side": [("shard1", 0, HALF), *quarters(ON_TWO, HALF, KEYSPACE_END)],
    "side-by-side-swapped": [*quarters(ON_ONE, 0, HALF), ("shard2", HALF, KEYSPACE_END)],
    # The same with sharded-on-1's layout (quarters owned by one database) against one database: the two
    # servers hold the same layout, so the ratio shows how finely this method resolves a difference.
    "sharded-side-by-side": [("shard1", 0, HALF), *quarters(("shard2",) * 4, HALF, KEYSPACE_END)],
    "sharded-side-by-side-swapped": [*quarters(("shard1",) * 4, 0, HALF), ("shard2", HALF, KEYSPACE_END)],
    # The same with one database reached through four connections per client instead of four databases.
    "connections-side-by-side": [("shard1", 0, HALF), *quarters(("shard2", *SAME_DATABASE_2), HALF, KEYSPACE_END)],
    "connections-side-by-side-swapped": [
        *quarters(("shard1", *SAME_DATABASE), 0, HALF),
        ("shard2", HALF, KEYSPACE_END),
    ],
}
DEFAULT_MODES = ("monolith", "sharded-on-1", "four-on-1", "2 servers", "4 servers")


def aliases_on(ranges: list[tuple[str, int, int]], server: str) -> set[str]:
    """The mode's database aliases on ``server``: each is one connection per client process."""
    return {alias for alias, _, _ in ranges if TOPOLOGY.databases[alias][0] == server}


def short_map(text: str) -> str:
    """A stored map with the keys as fractions of the key space (``0:1/4=shard5,...``), for the log."""
    from fractions import Fraction

    def key(part: str) -> str:
        return "MAX" if part == "MAX" else str(Fraction(round(4096 * int(part) / KEYSPACE_END), 4096))

    items = (item.rpartition("=") for item in text.split(","))
    return ",".join(f"{':'.join(key(k) for k in bounds.split(':'))}={alias}" for bounds, _, alias in items)


def owned(ranges: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The ranges as the map store keeps them: neighbours with the same owner joined (``merge_adjacent``)."""
    from shardrouter.keyspace import ShardRange, merge_adjacent

    return [(r.alias, r.lo, r.hi) for r in merge_adjacent([ShardRange(lo, hi, alias) for alias, lo, hi in ranges])]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_averages() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --------------------------------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Population:
    users: int
    per_user: int

    @property
    def step(self) -> int:
        return KEYSPACE_END // self.users

    def user_id(self, index: int) -> int:
        return index * self.step + self.step // 2  # evenly over the whole key space, never on a range edge

    def generation_id(self, index: int, k: int) -> int:
        return index * self.per_user + k + 1


def load_data(
    population: Population,
    ranges: list[tuple[str, int, int]],
    conninfo: Callable[[str], str] | None = None,
    empty: tuple[str, ...] = ("default", *SHARDS, *ON_ONE, *ON_TWO),
) -> None:
    """Empty the databases ``empty`` names (the control and every shard database), then put each user's
    generations on the database the map gives it (``conninfo``: each alias's libpq string, by default this
    process's Django settings)."""
    import psycopg

    from shardrouter.control import conninfo_for

    conninfo = conninfo or conninfo_for
    for alias in empty:
        with psycopg.connect(conninfo(alias), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES}")
    for alias, lo, hi in owned(ranges):  # quarters owned by one database load as the one range the map keeps
        first = next(i for i in range(population.users) if population.user_id(i) >= lo)
        last = max(i for i in range(population.users) if population.user_id(i) < hi) + 1
        with psycopg.connect(conninfo(alias), autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                    stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at,
                    updated_at, attempts, model_name, idempotency_key, claimed_by)
                SELECT g, (%(first)s::bigint + (g - 1 - %(first)s::bigint * %(per)s) / %(per)s) * %(step)s + %(half)s,
                    gen_random_uuid(), 'prompt ' || md5(g::text) || repeat(' words', 30), 200, 0.8, 0.95, g,
                    '[]', 'succeeded', repeat(md5((g * 7)::text), 10), '', 'stop', 40, 200,
                    now() - make_interval(secs => g), now(), 1, 'bench', '', ''
                FROM generate_series(%(first)s::bigint * %(per)s + 1, %(last)s::bigint * %(per)s) g
                """,
                {
                    "first": first,
                    "last": last,
                    "per": population.per_user,
                    "step": population.step,
                    "half": population.step // 2,
                },
            )
            # The insert's statistics reach the shared counters when this backend next flushes them, which for
            # an insert shorter than a second is after the VACUUM ANALYZE below (at the connection's end): the
            # table then looks as if none of its rows had been vacuumed or analyzed, and autovacuum vacuums and
            # analyzes it again in the measured window, on the capped server, in the modes with smaller tables
            # only. Flush first, so every mode starts with its tables vacuumed and analyzed and no work pending.
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute(f"VACUUM ANALYZE {TABLES}")


def apply_ranges(ranges: list[tuple[str, int, int]], reason: str) -> str:
    """Store the mode's map through the platform's map store; returns the map as stored (``LO:HI=ALIAS,...``)."""
    from shardrouter.keyspace import ShardRange
    from shardrouter.mapstore import apply_map, load_map_from_database

    base = load_map_from_database()
    stored = apply_map(
        [ShardRange(lo, hi, alias) for alias, lo, hi in ranges], expected_version=base.version, reason=reason
    )
    return stored.to_text()


KINDS = ("list", "open", "create", "update")


def make_operation(population: Population, rng: random.Random) -> Callable[..., str]:
    """One request of the platform's own sharded reads and writes, for a random user (or the one given)."""
    from apps.content.models import Generation
    from apps.content.selectors import generation_get, generation_list
    from apps.content.services import generation_create
    from shardrouter.writes import run_sharded_write

    def operation(kind: str = "", index: int = -1) -> str:
        index = rng.randrange(population.users) if index < 0 else index
        user = population.user_id(index)
        gid = population.generation_id(index, rng.randrange(population.per_user))
        roll = {"list": 0.0, "open": 0.5, "create": 0.85, "update": 0.95}[kind] if kind else rng.random()
        if roll < 0.45:  # the list page: newest 20 and the total
            queryset = generation_list(user_id=user)
            page = list(queryset.values("id", "prompt", "status", "created_at")[:20])
            queryset.count()
            return "list" if page else "list-empty"
        if roll < 0.80:
            generation_get(user_id=user, generation_id=gid)
            return "open"
        if roll < 0.90:
            generation_create(user_id=user, prompt="scale-out bench", job_delay=None)
            return "create"
        run_sharded_write(
            user_id=user,
            work=lambda: Generation.objects.for_user(user).filter(id=gid).update(prompt="edited by the bench"),
        )
        return "update"

    return operation


@dataclass
class WorkerPlan:
    population: Population
    warm: float = 0.0  # closed loop: seconds not counted, then `saturate` seconds counted
    saturate: float = 0.0
    fixed: float = 0.0  # then open loop at `rate` requests/s (this worker's part) for `fixed` seconds
    rate: float = 0.0
    live: bool = False  # open loop at the shared rate (total / workers) until stopped
    control_server: str = "pg1"  # where these clients' control database is (statements counted by server)


def count_control_statements(sent: dict[str, int], control_server: list[str]) -> None:
    """Count every statement on the router's private control connection (map checks, ID leases) into ``sent``:
    as "control" and on the server that holds the control database (``control_server[0]``)."""
    from shardrouter.control import control_connection

    cursor = control_connection.cursor

    class CountingCursor:
        def __init__(self, cur: Any) -> None:
            self._cur = cur

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            sent["control"] += 1
            sent[control_server[0]] += 1
            return self._cur.execute(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cur, name)

    @contextlib.contextmanager
    def counted_cursor() -> Iterator[Any]:
        with cursor() as cur:
            yield CountingCursor(cur)

    control_connection.cursor = counted_cursor  # type: ignore[method-assign]


def worker(
    index: int,
    workers: int,
    plans: Any,
    results: Any,
    ready: Any,
    t0: Any,
    rate: Any,
    stop_at: Any,
    aliases: tuple[str, ...] = ALIASES,
) -> None:
    """A client process: Django with the stack's env, requests through the router, one at a time, one round
    per plan it receives (the same processes serve every mode, so their start-up is paid once)."""
    from bench._django import setup_django

    setup_django(migrate=False)
    from django.db import connections

    rng = random.Random(index * 7919 + 17)
    last_round = 0.0
    # Connect to every shard database once, before any round: a backend's start and its first catalog look-ups
    # cost the server milliseconds, which would otherwise count against the modes with more databases.
    for alias in aliases:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM content_generation WHERE user_id = -1")
    from shardrouter.shardmap import shard_map_cache

    # Every SQL statement this process sends, by database role and by server: the statements a request costs,
    # counted exactly (the server's own statistics reach pg_stat_database up to seconds late). "control" is
    # what goes to the control database: the map checks and ID leases on the router's private connection and
    # Django's queries of control tables; "content" is the workload's queries, wherever the map puts them
    # (in the monolith, the control database).
    sent = {"content": 0, "control": 0} | {server: 0 for server in SERVERS}
    control_server = ["pg1"]

    def counting(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        alias = context["connection"].alias
        sent["content"] += 1  # every workload query goes through Django, to the database the map names
        sent[control_server[0] if alias == "default" else TOPOLOGY.databases[alias][0]] += 1
        return execute(sql, params, many, context)

    for alias in ALIASES:
        connections[alias].execute_wrappers.append(counting)
    count_control_statements(sent, control_server)

    while (plan := plans.get()) is not None:
        operation = make_operation(plan.population, rng)
        control_server[0] = plan.control_server
        shard_map_cache.refresh()  # the round's map, not the previous one's for up to a second
        # Warm every backend this round uses, every kind of statement (the caps are lifted meanwhile): a cold
        # backend's first catalog look-ups cost milliseconds, which at a small cap would be seconds of server.
        for user_index in range(0, plan.population.users, max(1, plan.population.users // 8)):
            for kind in KINDS:
                operation(kind, user_index)
        ready.put(index)
        while t0.value <= last_round:  # the round starts when every worker is ready
            time.sleep(0.005)
        start = last_round = t0.value
        records: list[tuple[float, float, bool, str]] = []  # (scheduled or start time, latency, ok, what)
        errors: list[str] = []
        counted: dict[str, int] = {"requests": 0, "content": 0, "control": 0}  # in the saturated window
        window = (start + plan.warm, start + plan.warm + plan.saturate)

        def one(scheduled: float, operation: Callable[[], str] = operation, records: list[Any] = records,
                errors: list[str] = errors, counted: dict[str, int] = counted,
                window: tuple[float, float] = window) -> None:  # fmt: skip
            before = dict(sent)
            try:
                what = operation()
                ok = True
            except Exception as exc:  # recorded and reported, never hidden
                what, ok = "error", False
                if len(errors) < 20:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            records.append((scheduled, time.time() - scheduled, ok, what))
            if window[0] <= scheduled < window[1]:
                counted["requests"] += 1
                for key in sent:
                    counted[key] = counted.get(key, 0) + sent[key] - before[key]

        time.sleep(max(0.0, start - time.time()))
        if plan.live:
            next_at = start + rng.random() * workers / max(rate.value, 1.0)
            while next_at < stop_at.value:
                time.sleep(max(0.0, next_at - time.time()))
                one(next_at)
                next_at += workers / max(rate.value, 1.0)
        else:
            counted_from = start + plan.warm
            closed_until = counted_from + plan.saturate
            while (now := time.time()) < closed_until:
                one(now)
            open_from = closed_until + 1.0  # the queue of the closed loop drains first
            interval = 1.0 / plan.rate if plan.rate else 0.0
            next_at = open_from + rng.random() * interval
            while plan.fixed and next_at < open_from + plan.fixed:
                time.sleep(max(0.0, next_at - time.time()))
                one(next_at)
                next_at += interval
            records = [r for r in records if r[0] >= counted_from]
        results.put((index, records, errors, counted))
    connections.close_all()


class Clients:
    """``count`` client processes; each ``run`` is one round of the same plan in all of them. ``env``: settings
    of their own (another control database), on top of this process's environment; ``aliases``: the databases
    each process connects to before its first round."""

    def __init__(self, count: int, env: dict[str, str] | None = None, aliases: tuple[str, ...] = ALIASES) -> None:
        ctx = mp.get_context("spawn")
        self.count = count
        self.plans = ctx.Queue()
        self.results = ctx.Queue()
        self.ready = ctx.Queue()
        self.t0: Synchronized[float] = ctx.Value("d", 0.0)
        self.rate: Synchronized[float] = ctx.Value("d", 1.0)
        self.stop_at: Synchronized[float] = ctx.Value("d", float("inf"))
        self.statements: dict[str, int] = {"requests": 0, "content": 0, "control": 0}
        self.procs = [
            ctx.Process(
                target=worker,
                args=(i, count, self.plans, self.results, self.ready, self.t0, self.rate, self.stop_at, aliases),
                daemon=True,
            )
            for i in range(count)
        ]
        saved = {name: os.environ.get(name) for name in env or {}}
        os.environ.update(env or {})  # a spawned process starts with this process's environment
        try:
            for proc in self.procs:
                proc.start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def prepare(self, plan: WorkerPlan) -> None:
        """Hand every worker the plan; returns once all are warm and ready."""
        self.stop_at.value = float("inf")
        for _ in self.procs:
            self.plans.put(plan)
        deadline = time.time() + 600
        waiting = len(self.procs)
        while waiting:
            try:
                self.ready.get(timeout=5)
                waiting -= 1
            except queue.Empty:
                dead = [proc.name for proc in self.procs if not proc.is_alive()]
                if dead or time.time() > deadline:
                    raise RuntimeError(
                        f"client processes {', '.join(dead) or '(none dead)'} never got ready; see their traceback "
                        "above (a server refusing connections: fewer --clients)"
                    ) from None

    def go(self, delay: float = 0.5) -> float:
        """Start the prepared round; returns its start time."""
        self.t0.value = time.time() + delay
        return self.t0.value

    def stop(self) -> None:
        self.stop_at.value = time.time()

    def collect(self, timeout: float = 600) -> tuple[list[tuple[float, float, bool, str]], list[str]]:
        records: list[tuple[float, float, bool, str]] = []
        errors: list[str] = []
        self.statements = {"requests": 0, "content": 0, "control": 0}  # of the round's saturated window
        for _ in self.procs:
            _, mine, problems, counted = self.results.get(timeout=timeout)
            records += mine
            errors += problems
            for key, value in counted.items():
                self.statements[key] = self.statements.get(key, 0) + value
        return records, errors

    def close(self) -> None:
        for _ in self.procs:
            self.plans.put(None)
        deadline = time.time() + 30  # in all: a worker stuck in a round never reads its None
        for proc in self.procs:
            proc.join(timeout=max(0.1, deadline - time.time()))
            if proc.is_alive():
                proc.kill()


# -------------------------------------------------------------------------------------------------- measurement


def process_counters(group: cgroups.CpuCgroup) -> dict[str, float]:
    """Minor page faults of the cgroup's live processes, and its user/system CPU seconds (``cpuacct.stat``)."""
    faults = 0
    for pid in group.pids():
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            faults += int(stat.rsplit(")", 1)[1].split()[7])  # minflt: field 10 of proc(5)
    ticks = os.sysconf("SC_CLK_TCK")
    times = dict(line.split() for line in (group.folders[-1] / "cpuacct.stat").read_text().splitlines())
    return {"minor_faults": float(faults), "user": int(times["user"]) / ticks, "system": int(times["system"]) / ticks}


_monitor: list[Any] = []


def pg1_monitor() -> Any:
    """One connection to pg1 for the counters, kept open: a new backend on a server at its cap can take
    longer to start than the connection timeout allows. Open it first while the caps are lifted."""
    if not _monitor or _monitor[0].closed:
        _monitor[:] = [connect_monitor("shard1")]
    return _monitor[0]


def connect_monitor(alias: str) -> Any:
    """An autocommit connection to ``alias``'s database for the bench's own look-ups (``TransactionWatch``)."""
    import psycopg

    from shardrouter.control import conninfo_for

    return psycopg.connect(conninfo_for(alias), autocommit=True, application_name="scale-out bench monitor")


def server_counters() -> dict[str, float]:
    """pg1's transaction, row and buffer counters summed over its databases, and its client backends."""
    conn = pg1_monitor()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT sum(xact_commit + xact_rollback), sum(tup_returned), sum(tup_fetched), sum(blks_hit), sum(blks_read)"
        " FROM pg_stat_database WHERE datname LIKE 'qq_shard%' OR datname = 'quantumquill'"
    ).fetchone()
    backends = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND (datname LIKE 'qq_shard%' OR datname = 'quantumquill')"
    ).fetchone()
    assert row is not None and backends is not None
    xacts, returned, fetched, hits, reads = (float(v or 0) for v in row)
    return {"xacts": xacts, "tup_returned": returned, "tup_fetched": fetched, "blocks": hits + reads,
            "blocks_read": reads, "backends": float(backends[0])}  # fmt: skip


def pg1_processes(group: cgroups.CpuCgroup) -> dict[int, tuple[str, float]]:
    """Every live process of pg1's cgroup and the CPU seconds it has used (``server_processes``)."""
    return server_processes(group, pg1_monitor())


def server_processes(group: cgroups.CpuCgroup, monitor: Any) -> dict[int, tuple[str, float]]:
    """Every live process of a server's cgroup: what it is (``pg_stat_activity``'s backend type; for a client
    backend its database and application, if named) and the CPU seconds it has used (``/proc/PID/schedstat``,
    nanoseconds, not tick-sampled). ``monitor``: an open connection to that server."""
    rows = monitor.execute("SELECT pid, backend_type, datname, application_name FROM pg_stat_activity").fetchall()
    kinds = {
        pid: f"client backends ({datname}{', ' + app if app else ''})" if kind == "client backend" else kind
        for pid, kind, datname, app in rows
    }
    found: dict[int, tuple[str, float]] = {0: ("all", group.usage_seconds())}  # the cgroup, read alongside
    for pid in group.pids():
        with contextlib.suppress(OSError, ValueError):
            found[pid] = (kinds.get(pid, "other (postmaster)"),
                          int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9)  # fmt: skip
    return found


def cpu_by_process_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """pg1's CPU seconds between two ``pg1_processes`` by kind of process; what no live process accounts for
    is processes that exited within the window (autovacuum workers, mostly)."""
    kinds: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        if pid:
            kinds[kind] = kinds.get(kind, 0.0) + seconds - (before[pid][1] if pid in before else 0.0)
    kinds["processes that exited in the window"] = after[0][1] - before[0][1] - sum(kinds.values())
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


def table_statistics(aliases: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each database's statistics of the workload's tables: what the planner knows and what autovacuum did."""
    import psycopg

    from shardrouter.control import conninfo_for

    found = {}
    for alias in aliases:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            found[alias] = conn.execute(
                "SELECT s.relname, c.reltuples::bigint, c.relpages, s.n_live_tup, s.n_mod_since_analyze,"
                " s.n_ins_since_vacuum, s.analyze_count, s.autoanalyze_count, s.vacuum_count, s.autovacuum_count"
                " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.relname IN ('content_generation', 'content_usageevent') ORDER BY s.relname"
            ).fetchall()
    return found


def require_no_autovacuum_due(aliases: list[str]) -> None:
    """Fail when a loaded table is already past autovacuum's thresholds: autovacuum would then vacuum or
    analyze it in the measured window, on the capped server, and charge that mode for the set-up."""
    import psycopg

    from shardrouter.control import conninfo_for

    for alias in aliases:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            due = conn.execute(
                "SELECT s.relname, s.n_mod_since_analyze, s.n_ins_since_vacuum FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid WHERE s.relname IN ('content_generation', 'content_usageevent')"
                " AND c.reltuples > 0 AND (s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float"
                "      + current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)"
                "   OR s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float"
                "      + current_setting('autovacuum_vacuum_insert_scale_factor')::float * greatest(c.reltuples, 0))"
            ).fetchall()
        if due:
            raise RuntimeError(
                f"{alias}: {', '.join(str(row[0]) for row in due)} past autovacuum's thresholds right after loading "
                f"(modified since analyze, inserted since vacuum: {[(row[1], row[2]) for row in due]}); the load "
                "must flush its statistics before its VACUUM ANALYZE (load_data)."
            )


def log_table_statistics(mode: str, when: str, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for alias, rows in tables.items():
        log(f"{'':13} {mode}, {when}: {alias}: " + "; ".join(
            f"{r[0]} reltuples {r[1]} pages {r[2]} live {r[3]} modified since analyze {r[4]}, inserted since vacuum "
            f"{r[5]}, analyze/auto {r[6]}/{r[7]}, vacuum/auto {r[8]}/{r[9]}" for r in rows))  # fmt: skip


def explain_workload(population: Population, ranges: list[tuple[str, int, int]], runs: int = 9) -> list[dict[str, Any]]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of every statement each kind of request sends, for one user per database
    of the mode: the plan's nodes, its buffers and the median planning and execution times of ``runs`` runs
    (writes in a transaction rolled back)."""
    import statistics

    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    operation = make_operation(population, random.Random(5))
    found = []
    for alias, lo, hi in ranges:
        index = next(i for i in range(population.users) if lo <= population.user_id(i) < hi)
        for kind in KINDS:
            with CaptureQueriesContext(connections[alias]) as captured:
                operation(kind, index)
            for query in captured.captured_queries:
                sql = query["sql"]
                if not sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                    continue
                planning, execution = [], []
                with connections[alias].cursor() as cursor:
                    for _ in range(runs):
                        cursor.execute("BEGIN")
                        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                        lines = [row[0] for row in cursor.fetchall()]
                        cursor.execute("ROLLBACK")
                        for line in lines:
                            if line.startswith("Planning Time:"):
                                planning.append(float(line.split()[2]))
                            elif line.startswith("Execution Time:"):
                                execution.append(float(line.split()[2]))
                nodes = [line.split("  (cost")[0].strip() for line in lines if "(cost" in line]
                buffers = [line.strip() for line in lines if line.strip().startswith("Buffers:")]
                found.append(
                    {
                        "alias": alias,
                        "kind": kind,
                        "sql": sql[:160],
                        "plan": " / ".join(nodes),
                        "buffers": buffers[0] if buffers else "",
                        "planning_ms": statistics.median(planning),
                        "execution_ms": statistics.median(execution),
                    }
                )
    return found


class CpuMeter:
    """cpuacct counters of every server and the clients."""

    def __init__(self, stack: Stack, clients: cgroups.CpuCgroup) -> None:
        self.groups = {name: stack.cgroup(name) for name in SERVERS} | {"clients": clients}

    def read(self) -> dict[str, float]:
        return {name: group.usage_seconds() for name, group in self.groups.items()} | {"_t": time.time()}

    @staticmethod
    def rates(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        seconds = after["_t"] - before["_t"]
        return {name: (after[name] - before[name]) / seconds for name in before if name != "_t"}


@dataclass
class Private:
    """The private stack and the clients' cgroup; both gone after ``close``."""

    cap: float
    client_count: int
    settings: list[str] = field(default_factory=list)  # NAME=VALUE for every shard server
    pool_size: int = 0  # > 0: the clients reach the shard servers through one PgBouncer each, pools this size
    poolers: dict[str, Any] = field(default_factory=dict)  # server: its PgBouncer
    client_aliases: tuple[str, ...] = ALIASES  # the databases each client process connects to at its start
    stack: Stack = field(init=False)
    clients: cgroups.CpuCgroup = field(init=False)
    workers: Clients = field(init=False)

    def __post_init__(self) -> None:
        cgroups.require_available()
        folder = REPO / "var" / "bench-scaleout" / f"run-{os.getpid()}"
        self.stack = Stack(
            Profile("bench-scaleout", folder, durable=False, fresh=True),
            topology=TOPOLOGY,
            cpu_cap=self.cap,
            cpu_period_us=PERIOD_US,
        )

    def uncapped(self) -> contextlib.AbstractContextManager[None]:
        """Lift the servers' caps for a while (loading the data set is set-up, not the measured work)."""

        @contextlib.contextmanager
        def lifted() -> Iterator[None]:
            for server in SERVERS:
                self.stack.cgroup(server).set_cap(None, period_us=PERIOD_US)
            try:
                yield
            finally:
                for server in SERVERS:
                    self.stack.cgroup(server).set_cap(self.cap, period_us=PERIOD_US)

        return lifted()

    def open(self) -> None:
        log(f"Starting {len(SERVERS)} servers (the control database on pg1) capped at {self.cap} CPU each, Redis ...")
        os.environ.update(self.stack.up())
        os.environ["DJANGO_DEBUG"] = "0"  # no query log growing in the clients
        # The clients (this process, the workers it spawns, shardmove) share an uncapped high-shares cgroup.
        self.clients = cgroups.CpuCgroup(self.stack.cgroup("clients").name).create(None)
        self.clients.add(os.getpid())
        from bench._django import setup_django

        setup_django(migrate=True)
        self.apply_settings()
        if self.pool_size:
            self.start_poolers()
        log(f"Starting {self.client_count} client processes ...")
        self.workers = Clients(self.client_count, aliases=self.client_aliases)

    def apply_settings(self) -> None:
        """``--server-setting``s on every shard server, applied before any client connects."""
        import psycopg
        from psycopg import sql

        from shardrouter.control import conninfo_for

        restart = False
        for alias in SHARDS:  # shard1..shard4 are on pg1..pg4
            with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
                for item in self.settings:
                    name, value = (part.strip() for part in item.split("=", 1))
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                    context = conn.execute("SELECT context FROM pg_settings WHERE name = %s", (name,)).fetchone()
                    restart |= context is not None and context[0] == "postmaster"
                conn.execute("SELECT pg_reload_conf()")
        if restart:  # e.g. shared_buffers: restart the shard servers, back into their capped cgroups
            from django.db import connections

            connections.close_all()
            for server in SERVERS:
                postgres = self.stack.postgres(server)
                postgres.stop()
                postgres.start()
                pid = postgres.postmaster_pid()
                assert pid is not None, f"{server} has no postmaster.pid after restarting"
                cgroups.place_tree(self.stack.cgroup(server), pid)
        if self.settings:
            names = [item.split("=", 1)[0].strip() for item in self.settings]
            with psycopg.connect(conninfo_for("shard1"), autocommit=True) as conn:  # what the servers now run with
                now = [
                    (name, conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()) for name in names
                ]
            shown = ", ".join(f"{name}={row[0] if row else '?'}" for name, row in now)
            log(f"shard servers: {shown}" + (" (restarted)" if restart else ""))

    def start_poolers(self) -> None:
        """PgBouncer (transaction mode) in front of each shard server, as in production (docs/connections.md);
        only the client processes use it: this process (data loading, counters) keeps the direct URLs."""
        from quantumquill.devstack.pgbouncer import PgBouncer
        from quantumquill.devstack.postgres import reachable_folder
        from quantumquill.devstack.stack import free_port

        base = reachable_folder(self.stack.profile.data_dir / "pgbouncer")
        for server in SERVERS:
            pooler = PgBouncer(
                name=f"pgbouncer-{server}",
                work_dir=base / server,
                port=free_port(),
                server_port=self.stack.ports[server],
                pool_size=self.pool_size,
                reserve_pool_size=0,
                max_db_connections=self.pool_size,
                query_wait_timeout=30,
            )
            self.poolers[server] = pooler  # in this process's cgroup: the clients' (uncapped), not the server's
            pooler.start()
        shards = [(alias, *TOPOLOGY.databases[alias]) for alias in ALIASES if alias != "default"]
        control_server, control_database = TOPOLOGY.databases["default"]
        os.environ |= {
            "DATABASE_POOLER": "transaction",
            "DATABASE_DIRECT_URL": os.environ["DATABASE_URL"],
            "DATABASE_URL": self.poolers[control_server].url(control_database),
            "SHARD_DIRECT_DATABASE_URLS": os.environ["SHARD_DATABASE_URLS"],
            "SHARD_DATABASE_URLS": ",".join(f"{a}={self.poolers[server].url(db)}" for a, server, db in shards),
        }
        log(f"PgBouncer (transaction mode, pool {self.pool_size} per database) in front of each shard server")

    def set_pool_size(self, server: str, size: int) -> None:
        """Every database's pool on ``server``'s PgBouncer: extra server connections close as they turn idle."""
        pooler = self.poolers[server]
        pooler.admin(f"SET default_pool_size = {int(size)}")
        pooler.admin(f"SET max_db_connections = {int(size)}")

    def close(self) -> None:
        if hasattr(self, "workers"):
            self.workers.close()
        for pooler in self.poolers.values():
            pooler.stop()
        if hasattr(self, "clients") and self.clients.exists():
            self.clients.leave(os.getpid())
            self.clients.remove()
        self.stack.down()
        import shutil

        shutil.rmtree(self.stack.profile.data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------ the table


def run_mode(private: Private, name: str, args: argparse.Namespace, fixed_rate: float | None) -> dict[str, Any]:
    population = Population(args.users, args.per_user)
    ranges = MODES[name]
    clients = private.workers
    plan = WorkerPlan(
        population,
        warm=args.warm,
        saturate=args.seconds,
        fixed=args.fixed_seconds if fixed_rate else 0.0,
        rate=(fixed_rate or 0.0) / args.clients,
    )
    if private.poolers:  # each server's pool, not each database's: split evenly over the mode's databases on it
        for server in SERVERS:
            databases = {TOPOLOGY.databases[alias] for alias in aliases_on(ranges, server)}
            private.set_pool_size(server, max(1, private.pool_size // max(1, len(databases))))
    with private.uncapped():
        load_data(population, ranges)
        stored_map = apply_ranges(ranges, f"bench: {name}")
        clients.prepare(plan)
        require_no_autovacuum_due([alias for alias, _, _ in ranges])
        pg1_monitor()
        watched = connect_monitor(ranges[0][0]) if args.watch_writes else None  # the mode's database on pg1
        if args.explain:
            log_table_statistics(name, "loaded", table_statistics([alias for alias, _, _ in ranges]))
    meter = CpuMeter(private.stack, private.clients)
    t0 = clients.go()
    time.sleep(max(0.0, t0 + args.warm - time.time()))
    pg1 = private.stack.cgroup("pg1")
    processes_before = pg1_processes(pg1)
    before, counters_before = meter.read(), server_counters() | process_counters(pg1)
    profiler = start_profiler(pg1, args.perf, name) if args.perf else None
    watch = TransactionWatch(watched, "pg1", pg1) if watched is not None else None
    with watch or contextlib.nullcontext():
        time.sleep(max(0.0, t0 + args.warm + args.seconds - time.time()))
    after = meter.read()
    cpu = CpuMeter.rates(before, after)
    counters_after = server_counters() | process_counters(pg1)
    processes = cpu_by_process_kind(processes_before, pg1_processes(pg1))
    if profiler is not None:
        stop_profiler(profiler)
    records, errors = clients.collect()
    closed_end = t0 + args.warm + args.seconds
    saturated = [r for r in records if r[0] < closed_end]
    fixed = [r for r in records if r[0] > closed_end]
    ok = sum(1 for r in saturated if r[2])
    # pg1's work per request (its statistics are flushed up to a second late: a window of several seconds
    # keeps that small); "cpu_ms_per_request" is what the 15% question is about.
    per_request = {
        name: (counters_after[name] - counters_before[name]) / max(ok, 1)
        for name in ("xacts", "tup_returned", "tup_fetched", "blocks", "blocks_read", "minor_faults")
    }
    per_request["pg1_cpu_ms"] = 1000 * cpu["pg1"] * args.seconds / max(ok, 1)
    user, system = (counters_after[k] - counters_before[k] for k in ("user", "system"))
    per_request["pg1_system_share"] = system / max(user + system, 1e-9)
    sent = clients.statements
    per_request["content_statements"] = sent["content"] / max(sent["requests"], 1)
    per_request["control_statements"] = sent["control"] / max(sent["requests"], 1)
    # Each server's CPU per statement it was sent: in the side-by-side modes, the two layouts' costs in one window.
    per_statement = {
        server: 1000 * cpu[server] * args.seconds / sent[server] for server in SERVERS if sent.get(server, 0) > 0
    }
    result: dict[str, Any] = {
        "mode": name,
        "map": stored_map,
        "throughput": ok / args.seconds,
        "errors": sum(1 for r in records if not r[2]),
        "error_samples": errors[:5],
        "saturated_p50_ms": 1000 * percentile([r[1] for r in saturated], 50),
        "cpu": cpu,
        "per_request": per_request,
        "cpu_ms_per_statement": per_statement,
        "pg1_backends": counters_after["backends"],
        "load": load_averages(),
    }
    if fixed:
        latencies = [r[1] for r in fixed]
        result |= {
            "fixed_rate": fixed_rate,
            "fixed_achieved": len(fixed) / args.fixed_seconds,
            "p50_ms": 1000 * percentile(latencies, 50),
            "p95_ms": 1000 * percentile(latencies, 95),
        }
    if watch is not None and watched is not None:
        watched.close()
        result["write_transactions"] = watch.summary(longer_than=0.3)
        log(f"{'':13} write transactions on {ranges[0][0]}: {transactions_line(result['write_transactions'])}")
        for example in result["write_transactions"]["examples"]:
            log(f"{'':13}   {example}")
    servers = " ".join(f"{s}={cpu[s]:.2f}" for s in SERVERS)
    log(
        f"{name:13} {result['throughput']:7.0f} req/s saturated; CPU {servers} "
        f"clients={cpu['clients']:.2f}; "
        + (f"p50/p95 at {fixed_rate:.0f} req/s: {result['p50_ms']:.1f}/{result['p95_ms']:.1f} ms; " if fixed else "")
        + f"errors {result['errors']}; load {result['load']}"
    )
    log(f"{'':13} shard map as stored: {short_map(stored_map)}")
    log(
        f"{'':13} per request: {per_request['content_statements']:.3f} content statements, "
        f"{per_request['control_statements']:.3f} to the control database (map checks, ID leases); "
        f"on pg1: {per_request['pg1_cpu_ms']:.3f} ms CPU, {per_request['xacts']:.2f} transactions, "
        f"{per_request['tup_returned']:.0f} rows returned, {per_request['tup_fetched']:.0f} fetched, "
        f"{per_request['blocks']:.0f} buffers ({per_request['blocks_read']:.1f} read in), "
        f"{per_request['minor_faults']:.1f} minor page faults, {per_request['pg1_system_share']:.0%} in the kernel (tick-sampled, coarse); "
        f"{result['pg1_backends']:.0f} client backends on pg1"
    )
    log(
        f"{'':13} CPU ms per statement: "
        + ", ".join(
            f"{server} {cost:.3f} ({len({TOPOLOGY.databases[a] for a in aliases_on(ranges, server)})}"
            f" databases, {len(aliases_on(ranges, server))} connections per client)"
            for server, cost in per_statement.items()
        )
    )
    window = sum(processes.values())
    result["pg1_cpu_by_process"] = {kind: seconds / max(ok, 1) * 1000 for kind, seconds in processes.items()}
    log(
        f"{'':13} pg1 CPU ms / request by process: "
        + ", ".join(
            f"{kind} {1000 * seconds / max(ok, 1):.3f} ({seconds / window:.0%})" for kind, seconds in processes.items()
        )
    )
    if args.explain:
        with private.uncapped():
            result["tables"] = table_statistics([alias for alias, _, _ in ranges])
            result["plans"] = explain_workload(population, ranges)
        log_table_statistics(name, "after the round", result["tables"])
        for plan in result["plans"]:
            log(
                f"{'':13} {plan['alias']} {plan['kind']:6} planning {plan['planning_ms']:.3f} ms, execution "
                f"{plan['execution_ms']:.3f} ms, {plan['buffers']}: {plan['plan']}"
            )
    return result


def start_profiler(group: cgroups.CpuCgroup, folder: str, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``perf record`` (software clock samples, no call graphs) of pg1's processes and the children they start."""
    out = Path(folder) / f"{mode.replace(' ', '-')}-{time.strftime('%H%M%S')}.data"
    out.parent.mkdir(parents=True, exist_ok=True)
    pids = ",".join(str(pid) for pid in group.pids())
    command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", str(out), "-p", pids]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def stop_profiler(profiler: tuple[subprocess.Popen[bytes], Path]) -> None:
    """Stop the recording and write its flat profile (by symbol, then by process) next to it as text."""
    import signal

    process, out = profiler
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    for sort, suffix in (("dso,sym", ".txt"), ("comm", ".comm.txt")):
        report = subprocess.run(
            ["perf", "report", "-i", str(out), "--stdio", "--no-children", "--sort", sort, "--percent-limit", "0.3"],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        out.with_suffix(suffix).write_text(report.stdout + report.stderr)
    log(f"{'':13} profile: {out.with_suffix('.txt')}")


def table(private: Private, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"modes": {}}
    first = run_mode(private, "monolith", args, None)  # its capacity sets the fixed offered load for all
    fixed_rate = args.fixed_fraction * first["throughput"]
    results["ratios"] = {}
    for repeat in range(1, args.repeat + 1):  # later repeats run on backends the earlier ones warmed
        suffix = f" #{repeat}" if repeat > 1 else ""
        for name in args.modes:
            if name == "monolith" and args.fixed_seconds <= 0 and repeat == 1:  # the first round is the monolith's
                results["modes"][name] = first
                continue
            rate = fixed_rate if args.fixed_seconds > 0 else None
            results["modes"][name + suffix] = run_mode(private, name, args, rate)
        base = results["modes"]["monolith" + suffix]["throughput"]  # each repeat against its own monolith
        for name in args.modes:
            results["ratios"][name + suffix] = results["modes"][name + suffix]["throughput"] / base
    results["fixed_rate"] = fixed_rate
    return results


# ------------------------------------------------------------------------------------------------------- the live


@dataclass
class Timeline:
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # move steps: (label, start, end)
    rates: list[tuple[float, float]] = field(default_factory=list)  # (time, offered req/s)
    cpu: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # (time, what): cut-overs given up, load changes
    cut_overs: list[dict[str, Any]] = field(default_factory=list)  # each switch-writes command and what it saw
    source_cpu: list[dict[str, Any]] = field(default_factory=list)  # each move step: its source's CPU by process

    def event(self, what: str) -> None:
        self.events.append((time.time(), what))
        log(f"  {what}")


class MoveFailed(RuntimeError):
    """A move step that failed even after the retries an operator would make; the run stops its load there."""


def run_shardmove(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "shardmove", *command],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def shardmove(*command: str) -> str:
    done = run_shardmove(*command)
    if done.returncode != 0:
        raise MoveFailed(f"`shardmove {' '.join(command)}` failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def last_error(done: subprocess.CompletedProcess[str]) -> str:
    """The engine's own last words (the lock holder it named, its advice), on one line."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit status {done.returncode}")[:1200]


class Watching(Protocol):
    """What the cut-over needs of a watch on the source's write transactions (``TransactionWatch``)."""

    def __enter__(self) -> Watching: ...

    def __exit__(self, *exc: object) -> None: ...

    def summary(self, longer_than: float) -> dict[str, Any]: ...


class TransactionWatch:
    """Open write transactions on one shard database, sampled every ``interval`` seconds from a connection
    opened beforehand: how long they stay open, their state in ``pg_stat_activity`` and whether the backend
    process is runnable (waiting for CPU, at a cap) or sleeping (waiting for its client). The cut-over's lock
    waits for exactly these. Each sample costs the capped server about half a millisecond of CPU: every half
    second, 2% of a 0.05 cap."""

    QUERY = """
        SELECT pid, xact_start, extract(epoch FROM clock_timestamp() - xact_start)::float8, state,
               coalesce(wait_event_type, ''), coalesce(wait_event, ''), coalesce(application_name, ''),
               left(query, 80)
        FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND backend_xid IS NOT NULL AND xact_start IS NOT NULL
    """

    def __init__(self, conn: Any, server: str, group: cgroups.CpuCgroup, interval: float = 0.5) -> None:
        self.conn, self.server, self.group, self.interval = conn, server, group, interval
        self.samples: list[tuple[float, list[tuple[Any, ...]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TransactionWatch:
        self.t0, self.cpu_before, self.stat_before = time.time(), self.group.usage_seconds(), self.group.cpu_stat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        seconds = max(time.time() - self.t0, 1e-9)
        self.cpu = (self.group.usage_seconds() - self.cpu_before) / seconds
        stat = self.group.cpu_stat()
        periods = max(stat["nr_periods"] - self.stat_before["nr_periods"], 1)
        self.throttled = (stat["nr_throttled"] - self.stat_before["nr_throttled"]) / periods

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a sample lost to a slow server is only a gap
                rows = self.conn.execute(self.QUERY).fetchall()
                self.samples.append((time.time(), [(*row, process_state(row[0])) for row in rows]))

    def summary(self, longer_than: float) -> dict[str, Any]:
        """Every write transaction seen (by pid and start), the longest age each reached, and what the ones
        open longer than ``longer_than`` seconds were doing in those samples."""
        ages: dict[tuple[Any, Any], float] = {}
        doing: dict[str, int] = {}
        clients: dict[str, int] = {}
        examples: list[str] = []
        for _, rows in self.samples:
            for pid, started, age, state, wait_type, wait, application, query, process in rows:
                ages[(pid, started)] = max(ages.get((pid, started), 0.0), age or 0.0)
                if (age or 0.0) <= longer_than:
                    continue
                # The state in pg_stat_activity changes only when the backend runs: "idle in transaction" with
                # the process runnable (R) is a backend whose next statement has arrived but which waits for CPU
                # (at the cap: for the next period); sleeping (S) it waits for its client.
                runnable = "runnable" if process == "R" else "sleeping" if process == "S" else process or "gone"
                waiting = f"{wait_type}: {wait}" if wait else "no wait event"
                what = f"{'active, ' + waiting if state == 'active' else state} (process {runnable})"
                doing[what] = doing.get(what, 0) + 1
                who = application or "bench clients"
                clients[who] = clients.get(who, 0) + 1
                if len(examples) < 5:
                    examples.append(f"pid {pid} open {age:.2f} s, {what}, {who}: {query}")
        longest = sorted(ages.values())
        return {
            "server": self.server,
            "samples": len(self.samples),
            "write_transactions": len(longest),
            "longer_than_s": longer_than,
            "longer": sum(1 for age in longest if age > longer_than),
            "p95_age_s": percentile(longest, 95) if longest else None,
            "max_age_s": longest[-1] if longest else None,
            "states_when_longer": dict(sorted(doing.items(), key=lambda item: -item[1])),
            "holders_when_longer": clients,
            "examples": examples,
            "server_cpu": self.cpu,
            "server_throttled_share": self.throttled,  # of the cap's 40 ms periods
        }


def process_state(pid: int) -> str:
    """The kernel's state of a process (``R`` running or runnable, ``S`` sleeping, ...), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def transactions_line(seen: dict[str, Any]) -> str:
    """A ``TransactionWatch.summary`` on one line, for the log."""
    return (
        f"{seen['write_transactions']} seen, {seen['longer']} open over {seen['longer_than_s']} s, p95 "
        f"{seen['p95_age_s'] or 0:.2f} s, longest {seen['max_age_s'] or 0:.2f} s, when over: "
        f"{seen['states_when_longer']}; {seen['server']} CPU {seen['server_cpu']:.3f}, held back by its cap in "
        f"{seen['server_throttled_share']:.0%} of the periods"
    )


@dataclass
class CutOverPolicy:
    """What the run does when ``switch-writes`` gives up, as an operator would: retry at the same load
    (the engine's advice: wait out the transaction it named, then retry), then lower the offered load for the
    cut-over and restore it afterwards. The lock timeout itself is never raised: a freeze waiting longer
    blocks every writer of the table for that long."""

    retries: int  # further switch-writes commands at the same load
    lowered_retries: int  # then at the lowered load
    pause: float = 3.0  # seconds between commands


def cut_over(
    timeline: Timeline,
    label: str,
    policy: CutOverPolicy,
    lower_load: Callable[[], Callable[[], None]],
    watch: Callable[[], Watching],
) -> None:
    """``switch-writes --max-freeze 2`` with the retries and the load reduction of ``policy``."""
    tries = [False] * (1 + policy.retries) + [True] * policy.lowered_retries
    restore: Callable[[], None] | None = None
    try:
        for number, lowered in enumerate(tries, start=1):
            if lowered and restore is None:
                restore = lower_load()
                time.sleep(policy.pause)  # the queue the higher load left drains first
            started = time.time()
            with watch() as watching:
                done = run_shardmove("switch-writes", "--max-freeze", "2", "--attempts", "3")
            ended = time.time()
            seen = watching.summary(longer_than=0.3)
            said = [line.strip() for line in (done.stdout + done.stderr).splitlines()]
            engine = [line[:400] for line in said if line.startswith("Attempt") or "freeze" in line.lower()]
            record = {"command": number, "lowered_load": lowered, "ok": done.returncode == 0,
                      "seconds": ended - started, "engine": engine, "transactions": seen}  # fmt: skip
            timeline.cut_overs.append({"move": label, **record})
            log(
                f"  {label}: switch-writes command {number}{' (load lowered)' if lowered else ''}: "
                f"{'done' if done.returncode == 0 else 'gave up'} in {ended - started:.1f} s; write transactions on "
                f"{seen['server']}: {transactions_line(seen)}"
            )
            for line in engine:
                log(f"    engine: {line}")
            for example in seen["examples"]:
                log(f"    {seen['server']}: {example}")
            if done.returncode == 0:
                timeline.phases.append((f"{label}: switch-writes", started, ended))
                return
            timeline.phases.append((f"{label}: switch-writes given up", started, ended))
            timeline.event(f"{label}: switch-writes command {number} gave up: {last_error(done)}")
            if number < len(tries):
                time.sleep(policy.pause)
        raise MoveFailed(f"{label}: switch-writes gave up {len(tries)} times, the last with the load lowered")
    finally:
        if restore is not None:
            restore()


def move(
    timeline: Timeline,
    lo: int,
    hi: int,
    target: str,
    label: str,
    cut_over_writes: Callable[[Timeline, str], None],
    source_processes: Callable[[], dict[int, tuple[str, float]]],
    watch: Callable[[], TransactionWatch],
) -> None:
    """One whole move with the real engine, each step a marked phase, and the CPU each step's source server
    spent by kind of process (``source_processes``: a ``server_processes`` of it). The write transactions on
    the source are watched during switch-reads too: the same load a moment before the cut-over."""
    hi_text = "MAX" if hi == KEYSPACE_END else str(hi)
    steps = [
        ("copy", ("start", str(lo), hi_text, "--to", target, "--wait")),
        ("verify", ("verify",)),
        ("switch-reads", ("switch-reads",)),
        ("switch-writes", ()),
        ("complete", ("complete",)),
    ]
    for step, command in steps:
        started, before = time.time(), source_processes()
        if step == "switch-writes":
            cut_over_writes(timeline, label)
        elif step == "switch-reads":
            with watch() as watching:
                shardmove(*command)
            timeline.phases.append((f"{label}: {step}", started, time.time()))
            seen = watching.summary(longer_than=0.3)
            timeline.cut_overs.append({"move": label, "command": "switch-reads", "transactions": seen})
            log(f"  {label}: during switch-reads, write transactions on {seen['server']}: {transactions_line(seen)}")
        else:
            shardmove(*command)
            timeline.phases.append((f"{label}: {step}", started, time.time()))
        seconds = time.time() - started
        by_kind = {kind: used / seconds for kind, used in cpu_by_process_kind(before, source_processes()).items()}
        timeline.source_cpu.append({"move": label, "step": step, "seconds": seconds, "cpu": by_kind})
        log(f"  {label}: {step} took {seconds:.1f} s; source CPU by process: "
            + ", ".join(f"{kind} {cpu:.3f}" for kind, cpu in by_kind.items() if abs(cpu) >= 0.0005))  # fmt: skip


def live(private: Private, args: argparse.Namespace) -> dict[str, Any]:
    population = Population(args.users, args.per_user)
    clients = private.workers
    with private.uncapped():
        # Every user on shard1, beside the control database on pg1: sharded mode on one server, from which
        # the moves split (the platform's monolith mode, content in the control database, moves the same way).
        load_data(population, MODES["sharded-on-1"])
        apply_ranges(MODES["sharded-on-1"], "bench: live, one server")
        clients.prepare(WorkerPlan(population, warm=args.warm, saturate=args.seconds))
    log("Measuring the monolith's capacity ...")
    clients.go()
    records, _ = clients.collect()
    capacity = sum(1 for r in records if r[2]) / args.seconds
    log(f"monolith capacity {capacity:.0f} req/s; live load starts at {args.live_fraction:.0%} of it")
    # Stored again: the capacity round's writes stay where they are
    apply_ranges(MODES["sharded-on-1"], "bench: live, one server again")

    timeline = Timeline()
    meter = CpuMeter(private.stack, private.clients)
    base = args.live_fraction * capacity
    clients.rate.value = base
    with private.uncapped():
        clients.prepare(WorkerPlan(population, live=True))
        monitors = {alias: connect_monitor(alias) for alias in SHARDS}  # a new backend at the cap starts slowly
    t0 = clients.go()
    sampling = threading.Event()

    def sample() -> None:
        previous = meter.read()
        while not sampling.wait(1.0):
            now = meter.read()
            timeline.cpu.append((now["_t"], CpuMeter.rates(previous, now)))
            previous = now

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def offer(rate: float, hold: float) -> None:
        clients.rate.value = rate
        timeline.rates.append((time.time(), rate))
        log(f"offered load {rate:.0f} req/s for {hold:.0f} s")
        time.sleep(hold)

    policy = CutOverPolicy(retries=args.cut_over_retries, lowered_retries=args.cut_over_retries + 1)

    def watch_of(source: str) -> Callable[[], TransactionWatch]:
        server = TOPOLOGY.databases[source][0]
        return lambda: TransactionWatch(monitors[source], server, private.stack.cgroup(server))

    def writes_of(source: str, lowered: float) -> Callable[[Timeline, str], None]:
        """The cut-over of a move from ``source``; ``lowered``: the offered load while it cannot get its lock."""

        def lower_load() -> Callable[[], None]:
            before = clients.rate.value
            clients.rate.value = lowered
            timeline.rates.append((time.time(), lowered))
            timeline.event(f"offered load lowered {before:.0f} -> {lowered:.0f} req/s for the cut-over")

            def restore() -> None:
                clients.rate.value = before
                timeline.rates.append((time.time(), before))
                timeline.event(f"offered load restored to {before:.0f} req/s")

            return restore

        return lambda timeline, label: cut_over(timeline, label, policy, lower_load, watch_of(source))

    def processes_of(source: str) -> Callable[[], dict[int, tuple[str, float]]]:
        server = TOPOLOGY.databases[source][0]
        return lambda: server_processes(private.stack.cgroup(server), monitors[source])

    hold = args.hold
    quarter, half = KEYSPACE_END // 4, KEYSPACE_END // 2
    stopped = ""
    try:
        timeline.rates.append((t0, base))
        time.sleep(max(0.0, t0 - time.time()) + hold)
        # Lowered for a cut-over that cannot get its lock: the load of the step before (the first move: 60%
        # of the monolith's capacity, as in the run that starts there).
        move(timeline, half, KEYSPACE_END, "shard2", "to 2 servers", writes_of("shard1", base * 0.75),
             processes_of("shard1"), watch_of("shard1"))  # fmt: skip
        for factor in (1.0, 1.5, 2.0):
            offer(base * factor, hold)
        move(timeline, quarter, half, "shard3", "to 4 servers (a)", writes_of("shard1", base * 1.5),
             processes_of("shard1"), watch_of("shard1"))  # fmt: skip
        move(timeline, half + quarter, KEYSPACE_END, "shard4", "to 4 servers (b)", writes_of("shard2", base * 1.5),
             processes_of("shard2"), watch_of("shard2"))  # fmt: skip
        for factor in (2.0, 2.67, 3.33, 4.0):
            offer(base * factor, hold)
    except MoveFailed as exc:  # the run still reports what it measured up to here, and fails
        stopped = str(exc)
        timeline.event(f"run stopped: {stopped[:300]}")
    finally:
        clients.stop()
        sampling.set()
        sampler.join()
        for conn in monitors.values():
            conn.close()
    records, errors = clients.collect()
    end = time.time()
    seconds: list[dict[str, Any]] = []
    for second in range(int(end - t0)):
        lo, hi = t0 + second, t0 + second + 1
        done = [r for r in records if lo <= r[0] + r[1] < hi]
        ok = [r[1] for r in done if r[2]]
        cpu = next((c for t, c in timeline.cpu if lo < t <= hi), {})
        seconds.append(
            {
                "t": second,
                "throughput": len(ok),
                "p95_ms": 1000 * percentile(ok, 95) if ok else None,
                "errors": len(done) - len(ok),
                "cpu": cpu,
            }
        )
    result = {
        "capacity_monolith": capacity,
        "requests": len(records),
        "errors": sum(1 for r in records if not r[2]),
        "error_samples": errors[:5],
        "phases": [(label, a - t0, b - t0) for label, a, b in timeline.phases],
        "offered": [(t - t0, rate) for t, rate in timeline.rates],
        "events": [(t - t0, what) for t, what in timeline.events],
        "cut_overs": timeline.cut_overs,
        "source_cpu": timeline.source_cpu,
        "stopped": stopped,
        "seconds": seconds,
        "load": load_averages(),
    }
    worst = max((s["p95_ms"] or 0.0 for s in seconds), default=0.0)
    log(f"live: {len(records)} requests, {result['errors']} failed, worst p95 of a second {worst:.0f} ms; "
        f"load {result['load']}" + (f"; stopped early: {stopped}" if stopped else ""))  # fmt: skip
    chart(result, args.cap, Path(args.chart))
    return result


def chart(result: dict[str, Any], cap: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = result["seconds"]
    t = [s["t"] for s in seconds]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    ax1.plot(t, [s["throughput"] for s in seconds], color="tab:blue", label="completed req/s")
    offered = result["offered"] + [(t[-1] if t else 0, result["offered"][-1][1])]
    ax1.step([o[0] for o in offered], [o[1] for o in offered], where="post", color="grey", ls="--", label="offered")
    ax1.set_ylabel("requests/s")
    ax1.legend(loc="upper left")
    ax2.plot(t, [s["p95_ms"] for s in seconds], color="tab:red")
    ax2.set_ylabel("p95 latency (ms)")
    ax2.set_yscale("log")
    for server, colour in zip(
        ("pg1", "pg2", "pg3", "pg4"), ("tab:blue", "tab:orange", "tab:green", "tab:purple"), strict=True
    ):
        ax3.plot(t, [s["cpu"].get(server, 0.0) for s in seconds], color=colour, label=server)
    ax3.axhline(cap, color="black", lw=0.8, ls=":", label=f"cap {cap} CPU")
    ax3.set_ylabel("server CPU (CPUs)")
    ax3.set_xlabel("seconds")
    ax3.legend(loc="upper left", ncol=5)
    colours = {
        "copy": "#fde2b8",
        "verify": "#e0e0e0",
        "switch-reads": "#c9e4f5",
        "switch-writes": "#f5c9c9",
        "switch-writes given up": "#d04040",
        "complete": "#d6f0d0",
    }
    shown = {"copy", "verify", "switch-reads", "switch-writes", "complete"}
    for label, start, stop in result["phases"]:
        step = label.split(": ")[-1]
        shown.add(step)
        for ax in (ax1, ax2, ax3):
            ax.axvspan(start, max(stop, start + 0.3), color=colours.get(step, "#eeeeee"), alpha=0.8, lw=0)
    # Changes of the offered load made for a cut-over (the grey dashed line shows the level itself).
    for at, what in result.get("events", []):
        if what.startswith("offered load"):
            lowered = "lowered" in what
            for ax in (ax1, ax2, ax3):
                ax.axvline(at, color="tab:green" if lowered else "tab:olive", lw=1.2, ls="-.")
            ax1.annotate("load lowered" if lowered else "restored", (at, 1.0), xycoords=("data", "axes fraction"),
                         rotation=90, va="top", ha="right", fontsize="x-small")  # fmt: skip
    legend = {step: colour for step, colour in colours.items() if step in shown}
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in legend.values()]
    fig.legend(handles, list(legend), loc="upper right", bbox_to_anchor=(0.99, 0.955), ncol=6, fontsize="small")
    fig.suptitle(
        f"Live scale-out: one server -> 2 -> 4 shard servers ({cap} CPU each), {result['errors']} failed requests "
        f"of {result['requests']:,}" + (" (stopped early)" if result.get("stopped") else ""),
        x=0.02,
        y=0.99,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    log(f"chart: {path}")


# ----------------------------------------------------------------------------------------------------------- main


def add_workload_arguments(parser: argparse.ArgumentParser, *, clients: int, warm: float, seconds: float) -> None:
    """The cap, the clients and the data set, shared with ``bench_scaleout_pairs.py``."""
    parser.add_argument("--cap", type=float, default=0.05, help="CPUs per server (default 0.05)")
    parser.add_argument("--clients", type=int, default=clients, help=f"client processes (default {clients})")
    parser.add_argument("--users", type=int, default=2000, help="users over the key space (default 2000)")
    parser.add_argument("--per-user", type=int, default=100, help="generations per user (default 100)")
    parser.add_argument("--warm", type=float, default=warm, help=f"seconds of load not counted (default {warm:g})")
    parser.add_argument("--seconds", type=float, default=seconds, help=f"seconds counted per run (default {seconds:g})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser, clients=24, warm=3.0, seconds=12.0)
    parser.add_argument("--fixed-seconds", type=float, default=8.0, help="seconds of fixed load per mode (default 8)")
    parser.add_argument(
        "--fixed-fraction", type=float, default=0.7, help="fixed offered load, share of monolith capacity (0.7)"
    )
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"table: the modes to run, comma-separated, monolith always included (default {','.join(DEFAULT_MODES)}"
        "; also two-on-1: halves on two databases on pg1)",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for every shard server (ALTER SYSTEM + reload, or a restart for settings such as "
        "shared_buffers), for experiments; repeatable",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="table: run the modes this many times in turn (default 1)"
    )
    parser.add_argument(
        "--pooler",
        type=int,
        default=0,
        metavar="POOL",
        help="table: clients reach the shard servers through PgBouncer (transaction mode), POOL server "
        "connections per server, split evenly over the mode's databases on it (default 0: direct connections)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="table: after each mode, EXPLAIN (ANALYZE, BUFFERS) each statement of the workload and print the "
        "tables' statistics, per database",
    )
    parser.add_argument(
        "--perf", default="", metavar="FOLDER", help="table: perf record pg1 in each saturated window into FOLDER"
    )
    parser.add_argument(
        "--watch-writes",
        action="store_true",
        help="table: sample the open write transactions of each mode's first database on pg1 in the saturated "
        "window, as the live run does at its cut-overs (costs pg1 about 2%% of a 0.05 cap)",
    )
    parser.add_argument("--live", action="store_true", help="the live version: monolith -> 2 -> 4 under load")
    parser.add_argument("--live-fraction", type=float, default=0.8, help="live start load, share of capacity (0.8)")
    parser.add_argument("--hold", type=float, default=8.0, help="live: seconds at each load step (default 8)")
    parser.add_argument(
        "--cut-over-retries",
        type=int,
        default=1,
        help="live: switch-writes commands repeated at the same load after one gives up (default 1); then as many "
        "again, plus one, with the offered load lowered to the step before",
    )
    parser.add_argument("--chart", default=str(REPO / "docs" / "scaling-live.png"), help="live: the PNG chart")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pooler < 0 or (args.pooler and args.live):
        parser.error("--pooler takes a pool size of at least 1, for the table (not --live)")
    if args.cap <= 0 or args.clients < 1 or args.users < 8 or args.per_user < 1:
        parser.error("--cap must be above 0, --clients at least 1, --users at least 8, --per-user at least 1")
    modes = [name.strip() for name in args.modes.split(",") if name.strip()]
    unknown = [name for name in modes if name not in MODES]
    if unknown:
        parser.error(f"--modes: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    args.modes = ["monolith", *(name for name in MODES if name in modes and name != "monolith")]
    bad = [item for item in args.server_setting if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        parser.error(f"--server-setting takes NAME=VALUE, got {', '.join(bad)}")
    reason = cgroups.unavailable_reason()
    if reason:
        print(f"error: this benchmark needs CPU caps, which are not available: {reason}.", file=sys.stderr)
        return 2

    log(f"{machine()}; load averages {load_averages()}")
    # Each client process connects only to the databases its runs use: with the control database's connections
    # on pg1 too, every alias on every server would pass pg1's max_connections (200) at 24 processes.
    used = [MODES[name] for name in (["sharded-on-1", "2 servers", "4 servers"] if args.live else args.modes)]
    aliases = tuple(dict.fromkeys(["default", *(alias for ranges in used for alias, _, _ in ranges)]))
    private = Private(args.cap, args.clients, args.server_setting, args.pooler, client_aliases=aliases)
    try:
        private.open()
        results = live(private, args) if args.live else table(private, args)
    finally:
        private.close()
    results |= {"cap": args.cap, "clients": args.clients, "machine": machine(), "args": vars(args)}
    if not args.live:
        print()
        print(
            f"| mode | saturated req/s | x monolith | p50 / p95 ms at {results['fixed_rate']:.0f} req/s "
            "| CPU per server | pg1 CPU ms / request | statements / request (content, control) |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, mode in results["modes"].items():
            cpu = " ".join(f"{s} {mode['cpu'][s]:.2f}" for s in SERVERS if mode["cpu"][s] > 0.01)
            latency = f"{mode['p50_ms']:.1f} / {mode['p95_ms']:.1f}" if "p50_ms" in mode else "-"
            print(
                f"| {name} | {mode['throughput']:.0f} | {results['ratios'][name]:.2f} | {latency} | {cpu} | "
                f"{mode['per_request']['pg1_cpu_ms']:.3f} | {mode['per_request']['content_statements']:.3f}, "
                f"{mode['per_request']['control_statements']:.3f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    failed = results["errors"] if args.live else sum(m["errors"] for m in results["modes"].values())
    return 1 if failed or results.get("stopped") else 0


if __name__ == "__main__":
    sys.exit(main())
