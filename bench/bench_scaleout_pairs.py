"""Sharded mode on one server against the platform's monolith mode, in the same window (docs/scaling.md).

Run as root on a machine with the cgroup v1 cpu controller (it starts its own private stack):

    .venv/bin/python bench/bench_scaleout_pairs.py [--rounds 3] [--cap 0.05] [--clients 16] [--seconds 10]

Two whole one-server platforms run side by side, each on a capped server of its own, each with its own
control database and its own client processes: platform A on pg1 (control database ``quantumquill``), platform B
on pg2 (control database ``quantumquill_b``). Each is in one of two layouts:

  monolith      the content in the control database (``0:MAX=default``)
  sharded-on-1  the content in a shard database beside the control database on the same server (``0:MAX=shardN``)

A round is four runs, each a closed loop from both platforms at once, the same seconds counted for both:
monolith | sharded-on-1, sharded-on-1 | monolith (pg1 | pg2), then monolith | monolith and sharded-on-1 |
sharded-on-1. The machine's drift hits both servers of a run alike; the geometric mean of the two orientations
cancels a difference between pg1 and pg2. The two same-layout runs give the method's own noise with the same
arithmetic (two estimates of the pg2 / pg1 difference that should agree). Per run and platform: saturated
throughput, the server's CPU (``cpuacct``) per request and per statement, and the statements per request to the
content and to the control database, counted exactly in the clients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._django import machine  # noqa: E402
from bench.bench_scaleout import (  # noqa: E402
    KEYSPACE_END,
    TOPOLOGY,
    Clients,
    CpuMeter,
    Population,
    Private,
    WorkerPlan,
    add_workload_arguments,
    load_averages,
    load_data,
    log,
    owned,
)
from quantumquill.devstack import cgroups  # noqa: E402

LAYOUTS = ("monolith", "sharded-on-1")
SECOND_CONTROL = "quantumquill_b"  # platform B's control database, on pg2
# (platform A's layout, platform B's layout): pg1 | pg2
RUNS = (("monolith", "sharded-on-1"), ("sharded-on-1", "monolith"), ("monolith", "monolith"),
        ("sharded-on-1", "sharded-on-1"))  # fmt: skip


@dataclass(frozen=True)
class Platform:
    """One whole one-server platform: its server, its shard database's alias there, its clients."""

    server: str
    shard_alias: str
    control_conninfo: str
    clients: Clients

    def ranges(self, layout: str) -> list[tuple[str, int, int]]:
        return [("default" if layout == "monolith" else self.shard_alias, 0, KEYSPACE_END)]

    def conninfo(self, alias: str) -> str:
        from shardrouter.control import conninfo_for

        return self.control_conninfo if alias == "default" else conninfo_for(alias)


def store_map(conninfo: str, ranges: list[tuple[str, int, int]], reason: str) -> None:
    """The next version of the map in one platform's control database (the map store's checks, its table)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from shardrouter.keyspace import ShardRange, validate_ranges

    cleaned = [ShardRange(lo, hi, alias) for alias, lo, hi in owned(ranges)]
    validate_ranges(cleaned, list(TOPOLOGY.databases))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO shardrouter_shardmaprevision (version, ranges, reason, created_at)"
            " SELECT coalesce(max(version), 0) + 1, %s, %s, now() FROM shardrouter_shardmaprevision",
            (Jsonb([r.to_json() for r in cleaned]), reason),
        )


def second_platform(private: Private, count: int) -> Platform:
    """Platform B: a control database of its own on pg2, migrated as the platform migrates one, and clients
    whose Django settings point at it."""
    import psycopg

    from shardrouter.control import conninfo_for

    with psycopg.connect(conninfo_for("shard2"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {SECOND_CONTROL}")
    url = private.stack.postgres("pg2").url(SECOND_CONTROL)
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate_shards"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"migrating platform B's control database failed:\n{done.stdout}\n{done.stderr}")
    conninfo = psycopg.conninfo.make_conninfo(conninfo_for("shard2"), dbname=SECOND_CONTROL)
    return Platform("pg2", "shard2", conninfo, Clients(count, {"DATABASE_URL": url}, ("default", "shard2")))


def run(private: Private, platforms: tuple[Platform, Platform], layouts: tuple[str, str], args: argparse.Namespace,
        population: Population) -> dict[str, Any]:  # fmt: skip
    """Both platforms under closed-loop load at once; each one's figures over the same counted seconds."""
    with private.uncapped():
        for index, (platform, layout) in enumerate(zip(platforms, layouts, strict=True)):
            # The first load empties platform A's control database and every shard database; the second only
            # platform B's control database, so A's data stays.
            if index == 0:
                load_data(population, platform.ranges(layout), platform.conninfo)
            else:
                load_data(population, platform.ranges(layout), platform.conninfo, empty=("default",))
            store_map(platform.control_conninfo, platform.ranges(layout), f"bench: pairs, {layout}")
        for platform in platforms:
            platform.clients.prepare(
                WorkerPlan(population, warm=args.warm, saturate=args.seconds, control_server=platform.server)
            )
    meter = CpuMeter(private.stack, private.clients)
    t0 = time.time() + 0.5
    for platform in platforms:
        platform.clients.t0.value = t0
    time.sleep(max(0.0, t0 + args.warm - time.time()))
    before = meter.read()
    time.sleep(max(0.0, t0 + args.warm + args.seconds - time.time()))
    cpu = CpuMeter.rates(before, meter.read())
    found: dict[str, Any] = {"layouts": layouts, "load": load_averages(), "clients_cpu": cpu["clients"]}
    for platform, layout in zip(platforms, layouts, strict=True):
        records, errors = platform.clients.collect()
        sent = platform.clients.statements
        requests = max(sent["requests"], 1)
        ok = sum(1 for r in records if r[2] and r[0] < t0 + args.warm + args.seconds)
        found[platform.server] = {
            "layout": layout,
            "throughput": ok / args.seconds,
            "errors": sum(1 for r in records if not r[2]),
            "error_samples": errors[:3],
            "cpu": cpu[platform.server],
            "cpu_ms_per_request": 1000 * cpu[platform.server] * args.seconds / requests,
            "cpu_ms_per_statement": 1000 * cpu[platform.server] * args.seconds / max(sent[platform.server], 1),
            "content_statements": sent["content"] / requests,
            "control_statements": sent["control"] / requests,
        }
    one, two = found["pg1"], found["pg2"]
    log(
        f"pg1 {one['layout']:12} | pg2 {two['layout']:12}: "
        + "; ".join(
            f"{s} {f['throughput']:.0f} req/s, CPU {f['cpu']:.3f}, {f['cpu_ms_per_request']:.3f} ms/request, "
            f"{f['cpu_ms_per_statement']:.3f} ms/statement, {f['content_statements']:.3f} content + "
            f"{f['control_statements']:.3f} control statements/request, {f['errors']} errors"
            for s, f in (("pg1", one), ("pg2", two))
        )
        + f"; clients {cpu['clients']:.2f} CPU; load {found['load']}"
    )
    return found


def paired(runs: dict[tuple[str, str], dict[str, Any]], key: str) -> dict[str, float]:
    """sharded-on-1 / monolith with both orientations (geometric mean), and the same arithmetic on the two
    same-layout runs (the noise: two estimates of pg2 / pg1 that should agree)."""

    def side(layouts: tuple[str, str], server: str) -> float:
        return float(runs[layouts][server][key])

    as_is = side(("monolith", "sharded-on-1"), "pg2") / side(("monolith", "sharded-on-1"), "pg1")
    swapped = side(("sharded-on-1", "monolith"), "pg1") / side(("sharded-on-1", "monolith"), "pg2")
    same_mono = side(("monolith", "monolith"), "pg2") / side(("monolith", "monolith"), "pg1")
    same_sharded = side(("sharded-on-1", "sharded-on-1"), "pg2") / side(("sharded-on-1", "sharded-on-1"), "pg1")
    return {
        "as_is": as_is,
        "swapped": swapped,
        "paired": math.sqrt(as_is * swapped),
        "noise": math.sqrt(same_mono / same_sharded),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser, clients=16, warm=2.0, seconds=10.0)  # --clients: per platform
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four runs (default 3)")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    if args.rounds < 1 or args.cap <= 0 or args.clients < 1 or args.users < 8 or args.per_user < 1:
        parser.error("--rounds, --clients and --per-user must be at least 1, --users at least 8, --cap above 0")
    reason = cgroups.unavailable_reason()
    if reason:
        print(f"error: this benchmark needs CPU caps, which are not available: {reason}.", file=sys.stderr)
        return 2

    log(f"{machine()}; load averages {load_averages()}")
    population = Population(args.users, args.per_user)
    private = Private(args.cap, args.clients, client_aliases=("default", "shard1"))
    rounds: list[dict[str, Any]] = []
    try:
        private.open()
        from shardrouter.control import conninfo_for

        platforms = (Platform("pg1", "shard1", conninfo_for("default"), private.workers),
                     second_platform(private, args.clients))  # fmt: skip
        try:
            for number in range(1, args.rounds + 1):
                log(f"round {number} of {args.rounds}")
                runs = {layouts: run(private, platforms, layouts, args, population) for layouts in RUNS}
                figures = {
                    key: paired(runs, key) for key in ("throughput", "cpu_ms_per_request", "cpu_ms_per_statement")
                }
                rounds.append({"runs": [runs[layouts] for layouts in RUNS], "sharded_over_monolith": figures})
                log(
                    f"round {number}: sharded-on-1 / monolith, paired (noise): "
                    + ", ".join(f"{key} {f['paired']:.3f} ({f['noise']:.3f})" for key, f in figures.items())
                )
        finally:
            platforms[1].clients.close()
    finally:
        private.close()
    print()
    print("| round | throughput (as is, swapped: paired) | CPU per request | CPU per statement | noise: throughput, "
          "CPU per request, per statement |")  # fmt: skip
    print("|---|---|---|---|---|")
    summary: dict[str, list[float]] = {}
    for number, found in enumerate(rounds, start=1):
        figures = found["sharded_over_monolith"]
        cells = [f"{f['as_is']:.3f}, {f['swapped']:.3f}: **{f['paired']:.3f}**" for f in figures.values()]
        noise = ", ".join(f"{f['noise']:.3f}" for f in figures.values())
        print(f"| {number} | {' | '.join(cells)} | {noise} |")
        for key, f in figures.items():
            summary.setdefault(key, []).append(f["paired"])
            summary.setdefault(f"{key} noise", []).append(f["noise"])
    for key, values in summary.items():
        print(f"{key}: median {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "summary": summary, "args": vars(args),
                                               "machine": machine()}, indent=2, default=str))  # fmt: skip
    failed = sum(found[s]["errors"] for r in rounds for found in r["runs"] for s in ("pg1", "pg2"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
