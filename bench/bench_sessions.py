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

from quantumquill.devstack.stack import REPO_ROOT, free_port
from quantumquill.devstack.web import GunicornServer

USERNAME, PASSWORD = "demo1", "quantumquill-demo"  # created by `manage.py bootstrap_embedded`
PAGE = "/generations/"
MODES = ("database", "redis")


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
    args = parser.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = frozenset(cpus[:1])
    client_cpus = set(cpus[1:]) or set(cpus)
    _manage("migrate_shards")
    _manage("bootstrap_embedded")
    base_env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "QQ_HTTPS": "0",  # plain HTTP on loopback, no proxy in front
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_MAX_REQUESTS": "0",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    servers = {
        mode: GunicornServer(
            f"bench-{mode}",
            free_port(),
            {**base_env, "QQ_SESSION_STORE": mode},
            log_dir,
            workers=1,
            threads=4,
            cpus=server_cpus,
        )
        for mode in MODES
    }
    try:
        for server in servers.values():
            server.start()
        os.sched_setaffinity(0, client_cpus)
        cookies = {mode: _session_cookie(server.port) for mode, server in servers.items()}
        for mode, server in servers.items():  # warm-up: imports, connections, template caches
            _load(server.port, cookies[mode], 2, args.concurrency)
        samples: dict[str, list[Sample]] = {mode: [] for mode in MODES}
        ratios: list[float] = []
        for round_number in range(1, args.rounds + 1):
            order = MODES if round_number % 2 else tuple(reversed(MODES))
            for mode in order:
                sample = _load(servers[mode].port, cookies[mode], args.seconds, args.concurrency)
                samples[mode].append(sample)
                print(f"round {round_number} {mode:<8} {sample.rate:8.1f} req/s  errors {sample.errors}", flush=True)
            ratios.append(samples["redis"][-1].rate / samples["database"][-1].rate)
    finally:
        for server in servers.values():
            server.stop(timeout=10)

    print(
        f"\n{os.cpu_count()} CPUs; server pinned to {sorted(server_cpus)}, client to {sorted(client_cpus)}; "
        f"gunicorn 1 worker x 4 threads; {args.concurrency} connections; {args.rounds} x {args.seconds:.0f}s per mode; "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    print("| sessions | requests/s (median of rounds) | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- |")
    rates = {}
    for mode in MODES:
        latencies = [value for sample in samples[mode] for value in sample.latencies]
        rates[mode] = statistics.median(sample.rate for sample in samples[mode])
        errors = sum(sample.errors for sample in samples[mode])
        print(
            f"| {mode} | {rates[mode]:.0f} | {_percentile(latencies, 50):.1f} | {_percentile(latencies, 99):.1f} | "
            f"{errors} |"
        )
    print(
        f"\nRatio redis/database requests/s: median of rounds {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{ratio:.2f}' for ratio in ratios)})"
    )
    return 0 if all(sample.errors == 0 for mode in MODES for sample in samples[mode]) else 1


if __name__ == "__main__":
    sys.exit(main())
