"""Connections at scale: PostgreSQL with a low max_connections, without and with PgBouncer, in the same run.

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_pgbouncer.py

Part 1, the connection storm: every PostgreSQL server of the embedded stack is
restarted with ``max_connections = 50``; several gunicorn processes (default 4
x 1 worker x 50 threads = 200 threads, each keeping its own persistent
connection to every database it touches) serve 200 client threads that GET
``/api/v1/generations/`` with tokens of users on both shards (control database
and one shard per request). First direct (count refused connections and
errors), then through one PgBouncer per server in transaction mode
(throughput, p95, errors). The server-side connection count is sampled from
the servers' process tables (psutil) while the load runs, since a full server
refuses even the sampler's connection.

Part 2, the pooler's own cost: two gunicorns (1 worker x 4 threads), one
direct and one through PgBouncer, GET the signed-in page ``/generations/``
with 4 keep-alive connections, alternating rounds (ABBA); the result is the
median of the per-round ratios pooled/direct (target >= 0.9).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import machine, percentile, setup_django
from bench.bench_sessions import _load, _manage, _session_cookie
from quantumquill.devstack.pgbouncer import PgBouncer, pooled_env, poolers_for
from quantumquill.devstack.stack import SERVER_NAMES, Stack, free_port, stack_from_state
from quantumquill.devstack.web import GunicornServer

API = "/api/v1/generations/"
USER_IDS = (101, 102, 103, 104, 1101, 1102, 1103, 1104)  # four on shard1, four on shard2


@dataclass
class StormResult:
    statuses: Counter[int] = field(default_factory=Counter)
    refused: int = 0  # transport errors: connection refused, reset, timed out
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_connections: dict[str, int] = field(default_factory=dict)  # peak client backends per server

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + self.refused


def _set_max_connections(stack: Stack, value: int | None) -> None:
    for name in SERVER_NAMES:
        server = stack.postgres(name)
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            if value is None:
                conn.execute("ALTER SYSTEM RESET max_connections")
            else:
                conn.execute(f"ALTER SYSTEM SET max_connections = {int(value)}")
        server.stop()
        server.start()


def _client_backends(stack: Stack) -> dict[str, int]:
    """Client backends per server, from the process table (works while the server refuses connections)."""
    counts: dict[str, int] = {}
    for name in SERVER_NAMES:
        pid_file = stack.postgres(name).pg_dir / "postmaster.pid"
        postmaster = psutil.Process(int(pid_file.read_text().splitlines()[0]))
        count = 0
        for child in postmaster.children():
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue  # ended meanwhile
            # A client backend's title names its client: "postgres: USER DB 127.0.0.1(PORT) idle".
            count += "(" in title and "walsender" not in title
        counts[name] = count
    return counts


def _tokens() -> dict[int, str]:
    from django.contrib.auth.models import User

    from apps.security.tokens import api_token_create

    tokens = {}
    for user_id in USER_IDS:
        User.objects.get_or_create(id=user_id, defaults={"username": f"bench{user_id}"})
        tokens[user_id] = api_token_create(user_id=user_id, name="bench").key
    return tokens


def _storm(
    servers: list[GunicornServer], tokens: dict[int, str], stack: Stack, clients: int, seconds: float
) -> StormResult:
    result = StormResult()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    token_list = list(tokens.values())

    def client(index: int) -> None:
        server = servers[index % len(servers)]
        headers = {"Authorization": f"Token {token_list[index % len(token_list)]}"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        statuses: Counter[int] = Counter()
        refused = 0
        latencies: list[float] = []
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", API, headers=headers)
                response = conn.getresponse()
                response.read()
                statuses[response.status] += 1
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException):
                refused += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.close()
        with lock:
            result.statuses.update(statuses)
            result.refused += refused
            result.latencies.extend(latencies)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    peak: dict[str, int] = {}
    while any(thread.is_alive() for thread in threads):
        for name, count in _client_backends(stack).items():
            peak[name] = max(peak.get(name, 0), count)
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - began
    result.server_connections = peak
    return result


def _web_tier(env: dict[str, str], log_dir: Path, label: str, processes: int, threads: int) -> list[GunicornServer]:
    servers = [
        GunicornServer(f"{label}-{i}", free_port(), env, log_dir, workers=1, threads=threads) for i in range(processes)
    ]
    for server in servers:
        server.start()
    return servers


def _stop(servers: list[GunicornServer]) -> None:
    for server in servers:
        server.stop(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-connections", type=int, default=50, help="PostgreSQL max_connections per server")
    parser.add_argument("--web-processes", type=int, default=4, help="gunicorn processes (1 worker each)")
    parser.add_argument("--threads", type=int, default=50, help="threads per gunicorn process")
    parser.add_argument("--clients", type=int, default=200, help="client threads of the storm")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds of the storm per mode")
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer server connections per database")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of part 2 (alternating order)")
    parser.add_argument("--round-seconds", type=float, default=3, help="seconds per mode per round of part 2")
    args = parser.parse_args(argv)

    setup_django()
    _manage("bootstrap_embedded")
    tokens = _tokens()
    from django.db import connections

    connections.close_all()
    stack = stack_from_state()
    _set_max_connections(stack, args.max_connections)
    poolers: dict[str, PgBouncer] = poolers_for(
        stack,
        work_dir=stack.profile.data_dir / "pgbouncer-bench",
        pool_size=args.pool_size,
        max_db_connections=args.pool_size + 5,
    )
    base_env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "QQ_HTTPS": "0",  # plain HTTP on loopback, no proxy in front
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "ERROR",
        "GUNICORN_MAX_REQUESTS": "0",
        "GUNICORN_TIMEOUT": "120",
        "API_THROTTLE_USER": "10000000/min",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    storm: dict[str, StormResult] = {}
    rates: dict[str, list[float]] = {"direct": [], "pgbouncer": []}
    ratios: list[float] = []
    try:
        for pooler in poolers.values():
            pooler.start()
        pooled = {**base_env, **pooled_env(stack, poolers)}
        envs = {"direct": base_env, "pgbouncer": pooled}

        # Part 1: the storm, direct then pooled (the direct tier is stopped first, releasing its connections).
        for mode in ("direct", "pgbouncer"):
            servers = _web_tier(envs[mode], log_dir, f"storm-{mode}", args.web_processes, args.threads)
            try:
                _storm(servers, tokens, stack, args.clients, 3)  # warm-up: imports, connections
                storm[mode] = _storm(servers, tokens, stack, args.clients, args.seconds)
                r = storm[mode]
                print(
                    f"storm {mode:<9} {r.ok / r.seconds:7.1f} ok/s  errors {r.errors} "
                    f"({dict(r.statuses)}, transport {r.refused})  server connections {r.server_connections}",
                    flush=True,
                )
            finally:
                _stop(servers)

        # Part 2: the pooler's own cost on a signed-in page at low concurrency.
        pair = {
            mode: GunicornServer(f"page-{mode}", free_port(), envs[mode], log_dir, workers=1, threads=4)
            for mode in ("direct", "pgbouncer")
        }
        try:
            for server in pair.values():
                server.start()
            cookies = {mode: _session_cookie(server.port) for mode, server in pair.items()}
            for mode, server in pair.items():
                _load(server.port, cookies[mode], 2, 4)
            for round_number in range(1, args.rounds + 1):
                order = ("direct", "pgbouncer") if round_number % 2 else ("pgbouncer", "direct")
                for mode in order:
                    sample = _load(pair[mode].port, cookies[mode], args.round_seconds, 4)
                    rates[mode].append(sample.rate)
                    print(
                        f"page round {round_number} {mode:<9} {sample.rate:7.1f} req/s errors {sample.errors}",
                        flush=True,
                    )
                ratios.append(rates["pgbouncer"][-1] / rates["direct"][-1])
        finally:
            _stop(list(pair.values()))
    finally:
        for pooler in poolers.values():
            pooler.stop()
        _set_max_connections(stack, None)

    print(
        f"\n{machine()}; load average at the end {os.getloadavg()[0]:.2f}; max_connections {args.max_connections}; "
        f"{args.web_processes} gunicorn x 1 worker x {args.threads} threads; {args.clients} clients x {args.seconds:.0f} s"
    )
    print("| storm | ok req/s | p95 ms | errors (503 / transport) | peak server connections pg0/pg1/pg2 |")
    print("| --- | --- | --- | --- | --- |")
    for mode, r in storm.items():
        p95 = percentile(r.latencies, 95) * 1000 if r.latencies else float("nan")
        peaks = "/".join(str(r.server_connections.get(name, 0)) for name in SERVER_NAMES)
        print(
            f"| {mode} | {r.ok / r.seconds:.1f} | {p95:.0f} | {r.errors} ({r.statuses[503]} / {r.refused}) | {peaks} |"
        )
    print(
        f"\nSigned-in page, 4 connections: direct {statistics.median(rates['direct']):.1f} req/s, "
        f"PgBouncer {statistics.median(rates['pgbouncer']):.1f} req/s; ratio pgbouncer/direct median of rounds "
        f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
