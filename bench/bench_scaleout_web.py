"""The web tier scales out: nginx in front of 1 vs 2 gunicorn app servers, each capped at the same CPU share.

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_scaleout_web.py
    ... bench/bench_scaleout_web.py --netns          # also with each app server a host of its own (0.5 ms RTT)

Needs root and the cgroup v1 cpu and cpuacct controllers (checked first; the
run stops with the reason when they are missing). Each app server (1 gunicorn
worker x 8 threads, production settings) runs in a cgroup of its own with the
same quota (``--cpu``, default 0.3 of a core) and ``cpu.shares`` 8192, so it
gets that quota despite other work on the machine. nginx (the project's
template, ``deploy/render_nginx.py``) and the load generator run in uncapped
cgroups of their own, also with shares 8192; the load generator's CPU use is
reported, to show it is not the bottleneck. PostgreSQL and Redis are the test
stack's, uncapped.

Two nginx servers run side by side, one with app1 as its only upstream, one
with app1 and app2, and the rounds alternate between them (ABBA), so drift on
a shared machine hits both alike. Every request is ``GET /generations/`` as a
signed-in user (session in Redis, user on the control database, list on the
user's shard). Measured: saturated throughput (closed loop, ``--connections``
keep-alive connections), then p50/p95 at a fixed offered load (open loop,
``--offered`` times the single server's saturated throughput, latency from
each request's scheduled time). First, the proof that Redis sessions are what
let two servers share the load: one signed-in client's requests land on both
servers and stay signed in; deleting its session key from Redis signs it out
on both.

``--netns``: after the loopback run, the same measurements with each app server
in a network namespace of its own, joined to nginx (and to PostgreSQL and
Redis) by veth pairs on a bridge with ``tc netem`` delay (``--delay-ms`` each
way). Namespaces, links and cgroups are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import redis

from bench._django import machine, percentile
from bench._webhosts import NetnsHosts
from quantumquill.devstack.cgroups import CpuCgroup, unavailable_reason
from quantumquill.devstack.stack import REPO_ROOT, free_port, stack_from_state
from quantumquill.devstack.web import GunicornServer, NginxBalancer

USERNAME, PASSWORD = "demo1", "quantumquill-demo"  # created by `manage.py bootstrap_embedded`
PAGE = "/generations/"
GROUP_PREFIX = "qq-bench-web"
TARGET_RATIO = 1.8


@dataclass
class Sample:
    """One measurement against one nginx: counts, latencies (s), who served, and the CPU each group used."""

    seconds: float = 0.0
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used on average, per cgroup

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000 if self.latencies else 0.0


# --- load generation (runs in forked processes inside the load generator's cgroup) ---------------------------


def _client_thread(
    port: int, cookie: str, stop_at: float, interval: float, first_at: float, out: dict[str, Any]
) -> None:
    """Closed loop when ``interval`` is 0; otherwise one request every ``interval`` s from ``first_at``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": cookie}
    due = first_at
    while True:
        if interval:
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            started = due  # latency from the scheduled time: a slow server cannot hide its queue
            due += interval
        else:
            started = time.monotonic()
        if started >= stop_at:
            break
        try:
            conn.request("GET", PAGE, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
            server = response.headers.get("X-Served-By", "?")
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            ok, server = False, "error"
        out["latencies"].append(time.monotonic() - started)
        out["ok" if ok else "errors"] += 1
        out["served_by"][server] += 1
    conn.close()


def _client_process(
    load_group: CpuCgroup,
    port: int,
    cookies: list[str],
    seconds: float,
    rate: float,
    threads: int,
    offset: int,
    total_threads: int,
    queue: Any,
) -> None:
    load_group.add(os.getpid())
    start = time.monotonic() + 0.2
    interval = total_threads / rate if rate else 0.0
    results = [{"ok": 0, "errors": 0, "latencies": [], "served_by": Counter()} for _ in range(threads)]
    workers = [
        threading.Thread(
            target=_client_thread,
            args=(
                port,
                cookies[(offset + i) % len(cookies)],
                start + seconds,
                interval,
                start + (interval * (offset + i) / total_threads),
                results[i],
            ),
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(results)


def run_load(
    port: int,
    cookies: list[str],
    *,
    seconds: float,
    processes: int,
    threads: int,
    rate: float,
    load_group: CpuCgroup,
    groups: dict[str, CpuCgroup],
) -> Sample:
    """``processes`` x ``threads`` keep-alive connections for ``seconds``; closed loop unless ``rate`` > 0."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    before = {name: group.usage_seconds() for name, group in groups.items()}
    began = time.monotonic()
    children = [
        ctx.Process(
            target=_client_process,
            args=(
                load_group,
                port,
                cookies,
                seconds,
                rate,
                threads,
                index * threads,
                processes * threads,
                queue,
            ),
        )
        for index in range(processes)
    ]
    for child in children:
        child.start()
    sample = Sample()
    for _ in children:
        for part in queue.get(timeout=seconds + 60):
            sample.ok += part["ok"]
            sample.errors += part["errors"]
            sample.latencies.extend(part["latencies"])
            sample.served_by.update(part["served_by"])
    for child in children:
        child.join(timeout=30)
    sample.seconds = time.monotonic() - began - 0.2
    sample.cpu = {name: (g.usage_seconds() - before[name]) / sample.seconds for name, g in groups.items()}
    return sample


# --- signing in, and the proof that sessions are shared ------------------------------------------------------


def sign_in(port: int) -> str:
    """Log in through nginx (with the CSRF dance); the Cookie header of the new session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/accounts/login/")
    page = conn.getresponse()
    body = page.read().decode()
    csrf = SimpleCookie(page.headers["Set-Cookie"])["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if not token:
        raise RuntimeError("the login page has no CSRF token")
    form = urlencode({"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"}
    conn.request("POST", "/accounts/login/", body=form, headers=headers)
    login = conn.getresponse()
    login.read()
    if login.status != 302:
        raise RuntimeError(f"login through nginx on port {port} answered {login.status}, expected 302")
    jar: SimpleCookie = SimpleCookie()
    for header in login.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return f"sessionid={jar['sessionid'].value}"


def _get_page(port: int, cookie: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", PAGE, headers={"Cookie": cookie})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, response.headers.get("X-Served-By", "?")


def prove_shared_sessions(port: int, requests: int = 20) -> dict[str, Any]:
    """One signed-in client through the 2-server nginx: both servers serve it; without its Redis key, neither."""
    cookie = sign_in(port)
    answers = [_get_page(port, cookie) for _ in range(requests)]
    sessions = redis.Redis.from_url(os.environ["SESSION_REDIS_URL"])
    session_key = cookie.split("=", 1)[1]
    keys = [key for key in sessions.scan_iter(f"*{session_key}")]
    if keys:
        sessions.delete(*keys)
    after = [_get_page(port, cookie) for _ in range(4)]
    return {
        "requests": requests,
        "served_by": dict(Counter(server for _, server in answers)),
        "signed_in_answers": sum(status == 200 for status, _ in answers),
        "session_keys_in_redis": len(keys),
        "after_deleting_the_key": {
            "served_by": dict(Counter(server for _, server in after)),
            "redirected_to_login": sum(status == 302 for status, _ in after),
        },
    }


# --- the two topologies ---------------------------------------------------------------------------------------


@contextmanager
def reachable_from(hosts: NetnsHosts) -> Iterator[None]:
    """Let the namespaces' addresses into the test stack's PostgreSQL (pg_hba) and Redis (protected mode)."""
    stack = stack_from_state()
    pg_names = [name for name in stack.ports if (stack.postgres(name).pg_dir / "PG_VERSION").exists()]
    saved: dict[Path, str] = {}
    redis_urls = [
        os.environ[key] for key in ("REDIS_URL", "SESSION_REDIS_URL", "CELERY_BROKER_URL") if key in os.environ
    ]
    try:
        for name in pg_names:
            server = stack.postgres(name)
            hba = server.pg_dir / "pg_hba.conf"
            saved[hba] = hba.read_text()
            hba.write_text(saved[hba] + f"host all all {hosts.cidr} trust\n")
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
        for url in redis_urls:
            redis.Redis.from_url(url).config_set("protected-mode", "no")
        yield
    finally:
        for hba, text in saved.items():
            hba.write_text(text)
        for name in pg_names:
            with psycopg.connect(stack.postgres(name).conninfo(), autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
        for url in redis_urls:
            redis.Redis.from_url(url).config_set("protected-mode", "yes")


@dataclass
class Topology:
    label: str
    one: NginxBalancer
    two: NginxBalancer
    apps: list[GunicornServer]


def _app_env(hosts: NetnsHosts | None) -> dict[str, str]:
    # The health check reaches a namespaced server by its own address; nginx passes the client's Host.
    addresses = [hosts.address(name) for name in hosts.names] if hosts else []
    return {
        **os.environ,
        "DJANGO_ALLOWED_HOSTS": ",".join(["127.0.0.1", "localhost", *addresses]),
        "DJANGO_DEBUG": "0",
        "QQ_HTTPS": "0",  # plain HTTP behind nginx on loopback
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_MAX_REQUESTS": "0",
    }


@contextmanager
def web_tier(
    label: str, work: Path, groups: dict[str, CpuCgroup], hosts: NetnsHosts | None, threads: int
) -> Iterator[Topology]:
    apps = [
        GunicornServer(
            name,
            free_port(),
            _app_env(hosts),
            work / label,
            workers=1,
            threads=threads,
            host=hosts.address(name) if hosts else "127.0.0.1",
            netns=hosts.netns(name) if hosts else "",
            cgroup_procs=groups[name].procs_files,
        )
        for name in ("app1", "app2")
    ]
    upstreams = [f"{app.host}:{app.port}" for app in apps]
    one = NginxBalancer(free_port(), upstreams[:1], work / label / "nginx-one")
    two = NginxBalancer(free_port(), upstreams, work / label / "nginx-two")
    try:
        for app in apps:
            app.start(timeout=120)
        for balancer in (one, two):
            balancer.start()
            assert balancer.process is not None
            groups["edge"].add(balancer.process.pid)  # the master; its worker is forked later, or moved below
            for pid in _children(balancer.process.pid):
                groups["edge"].add(pid)
        yield Topology(label, one, two, apps)
    finally:
        for balancer in (one, two):
            balancer.stop()
        for app in apps:
            app.stop(timeout=10)


def connect_rtt_ms(host: str, port: int, samples: int = 200) -> float:
    """Median time of a TCP connect (SYN, SYN-ACK) from here to an app server: the hop's round trip."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        with socket.create_connection((host, port), timeout=5):
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def data_server_pids() -> list[int]:
    """The test stack's PostgreSQL (postmaster and backends) and Redis processes."""
    stack = stack_from_state()
    pids: list[int] = []
    for name in stack.ports:
        postgres = stack.postgres(name).pg_dir / "postmaster.pid"
        if postgres.exists():
            postmaster = int(postgres.read_text().split()[0])
            pids += [postmaster, *_children(postmaster)]
    for server in (stack.redis(), stack.redis_sessions(), stack.redis_broker()):
        if server.pid_file.exists():
            pids.append(int(server.pid_file.read_text().strip()))
    return pids


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


# --- measuring -------------------------------------------------------------------------------------------------


def measure(topology: Topology, args: argparse.Namespace, groups: dict[str, CpuCgroup]) -> dict[str, Any]:
    say = print
    ports = {"1 server": topology.one.port, "2 servers": topology.two.port}
    cookies = {mode: [sign_in(port) for _ in range(4)] for mode, port in ports.items()}
    every = groups
    load = dict(processes=args.processes, threads=args.connections // args.processes, load_group=groups["load"])
    for mode, port in ports.items():  # warm-up: imports, connections, template caches
        run_load(port, cookies[mode], seconds=2, rate=0, groups=every, **load)  # type: ignore[arg-type]
    rtt = connect_rtt_ms(topology.apps[0].host, topology.apps[0].port)
    say(f"[{topology.label}] TCP connect to app1 ({topology.apps[0].host}): median {rtt:.3f} ms")
    proof = prove_shared_sessions(topology.two.port)
    say(f"[{topology.label}] one signed-in client through 2 servers: {proof}")
    saturated: dict[str, list[Sample]] = {mode: [] for mode in ports}
    for round_number in range(1, args.rounds + 1):
        order = list(ports) if round_number % 2 else list(reversed(ports))
        for mode in order:
            sample = run_load(
                ports[mode],
                cookies[mode],
                seconds=args.seconds,
                rate=0,
                groups=every,
                **load,  # type: ignore[arg-type]
            )
            saturated[mode].append(sample)
            cpu = " ".join(f"{name} {cores:.2f}" for name, cores in sample.cpu.items())
            say(
                f"[{topology.label}] round {round_number} {mode:<9} {sample.rate:7.1f} req/s "
                f"p50 {sample.p(50):6.1f} p95 {sample.p(95):6.1f} ms errors {sample.errors} "
                f"served {dict(sample.served_by)} cores: {cpu}"
            )
    base = statistics.median(s.rate for s in saturated["1 server"])
    rate = args.offered * base
    fixed: dict[str, Sample] = {}
    for mode in ports:
        fixed[mode] = run_load(
            ports[mode],
            cookies[mode],
            seconds=args.seconds,
            rate=rate,
            groups=every,
            **load,  # type: ignore[arg-type]
        )
        say(
            f"[{topology.label}] offered {rate:.0f} req/s {mode:<9} achieved {fixed[mode].rate:7.1f} "
            f"p50 {fixed[mode].p(50):6.1f} p95 {fixed[mode].p(95):6.1f} ms errors {fixed[mode].errors}"
        )
    ratios = [two.rate / one.rate for one, two in zip(saturated["1 server"], saturated["2 servers"], strict=True)]
    return {
        "label": topology.label,
        "connect_rtt_ms": rtt,
        "session_proof": proof,
        "saturated": {
            mode: {
                "req_per_s_median": statistics.median(s.rate for s in samples),
                "req_per_s_rounds": [round(s.rate, 1) for s in samples],
                "p50_ms": statistics.median(s.p(50) for s in samples),
                "p95_ms": statistics.median(s.p(95) for s in samples),
                "errors": sum(s.errors for s in samples),
                "served_by": dict(sum((s.served_by for s in samples), Counter())),
                "cores_used_median": {
                    name: round(statistics.median(s.cpu[name] for s in samples), 3) for name in groups
                },
            }
            for mode, samples in saturated.items()
        },
        "ratio_median": statistics.median(ratios),
        "ratio_rounds": [round(r, 3) for r in ratios],
        "fixed_load": {
            "offered_req_per_s": rate,
            **{
                mode: {
                    "achieved_req_per_s": s.rate,
                    "p50_ms": s.p(50),
                    "p95_ms": s.p(95),
                    "errors": s.errors,
                    "cores_used": {name: round(c, 3) for name, c in s.cpu.items()},
                }
                for mode, s in fixed.items()
            },
        },
    }


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args, "-v", "0"], cwd=REPO_ROOT, check=True)


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n| topology | servers | saturated req/s | p50 / p95 ms (saturated) | p50 / p95 ms at fixed load | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result in results:
        fixed = result["fixed_load"]
        for mode, sat in result["saturated"].items():
            print(
                f"| {result['label']} | {mode} | {sat['req_per_s_median']:.1f} | {sat['p50_ms']:.1f} / "
                f"{sat['p95_ms']:.1f} | {fixed[mode]['p50_ms']:.1f} / {fixed[mode]['p95_ms']:.1f} | "
                f"{sat['errors'] + fixed[mode]['errors']} |"
            )
    for result in results:
        verdict = "meets" if result["ratio_median"] >= TARGET_RATIO else "BELOW"
        print(
            f"{result['label']}: 2 servers / 1 server = {result['ratio_median']:.2f} "
            f"(rounds {result['ratio_rounds']}; {verdict} the {TARGET_RATIO}x target); "
            f"fixed load {result['fixed_load']['offered_req_per_s']:.0f} req/s"
        )


def draw_chart(results: list[dict[str, Any]], path: Path, caption: str) -> None:
    """Saturated throughput and the fixed-load p95 of 1 vs 2 app servers, per topology (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = ["1 server", "2 servers"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(results)
    for index, result in enumerate(results):
        xs = [m + index * width for m in range(len(modes))]
        rates = [result["saturated"][mode]["req_per_s_median"] for mode in modes]
        p95s = [result["fixed_load"][mode]["p95_ms"] for mode in modes]
        bars = left.bar(xs, rates, width, label=f"{result['label']} ({result['ratio_median']:.2f}x)")
        left.bar_label(bars, fmt="%.0f")
        right.bar(xs, p95s, width, label=result["label"])
    for axis in (left, right):
        axis.set_xticks([m + width * (len(results) - 1) / 2 for m in range(len(modes))], modes)
        axis.legend()
    left.set_ylabel("requests/s, saturated (median of rounds)")
    left.set_title("Throughput: each app server capped at the same CPU")
    right.set_ylabel("p95 ms")
    offered = ", ".join(f"{r['label']} {r['fixed_load']['offered_req_per_s']:.0f}" for r in results)
    right.set_title(f"p95 at a fixed offered load ({offered} req/s)")
    figure.text(0.5, 0.01, caption, ha="center", fontsize=8)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", type=float, default=0.3, help="CPU quota of each app server, in cores (0.3)")
    parser.add_argument("--seconds", type=float, default=8, help="seconds per measurement (8)")
    parser.add_argument("--rounds", type=int, default=4, help="saturation rounds; the order alternates (4)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections of the load (32)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per app server (1 worker) (8)")
    parser.add_argument("--offered", type=float, default=0.7, help="fixed load, x 1 server's saturated rate (0.7)")
    parser.add_argument("--netns", action="store_true", help="also run with each app server in a network namespace")
    parser.add_argument("--delay-ms", type=float, default=0.25, help="--netns: netem delay each way (0.25 ms)")
    parser.add_argument("--json", default="", help="write every figure to this file")
    parser.add_argument("--chart", default="", help="draw the figures into this PNG file")
    args = parser.parse_args(argv)
    if args.connections % args.processes:
        parser.error("--connections must be a multiple of --processes")
    problem = unavailable_reason()
    if problem:
        print(f"bench_scaleout_web: cannot cap the app servers' CPU: {problem}", file=sys.stderr)
        return 2
    if "SESSION_REDIS_URL" not in os.environ:
        print(
            "bench_scaleout_web: run it inside the test stack: python -m quantumquill.devstack exec "
            "--profile test -- .venv/bin/python bench/bench_scaleout_web.py",
            file=sys.stderr,
        )
        return 2
    print(f"cgroup v1 cpu/cpuacct available; each app server capped at {args.cpu} CPU, cpu.shares 8192")
    _manage("migrate_shards")
    _manage("bootstrap_embedded")
    groups = {
        "app1": CpuCgroup(f"{GROUP_PREFIX}-app1"),
        "app2": CpuCgroup(f"{GROUP_PREFIX}-app2"),
        "edge": CpuCgroup(f"{GROUP_PREFIX}-nginx"),
        "load": CpuCgroup(f"{GROUP_PREFIX}-load"),
        "data": CpuCgroup(f"{GROUP_PREFIX}-data"),
    }
    hosts = NetnsHosts(["app1", "app2"], delay_ms=args.delay_ms) if args.netns else None
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-web-"))
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        cap = args.cpu or None  # --cpu 0: the app servers uncapped too
        for name, group in groups.items():  # every group gets the high cpu.shares; only the app servers a cap
            group.create(cap if name in ("app1", "app2") else None)
        for pid in data_server_pids():  # uncapped, but not starved by other work on the machine either
            groups["data"].add(pid)
        with web_tier("loopback", work, groups, None, args.threads) as topology:
            results.append(measure(topology, args, groups))
        if hosts is not None:
            hosts.create()
            if hosts.delay_problem:
                print(f"bench_scaleout_web: --netns without added delay: {hosts.delay_problem}", file=sys.stderr)
            with reachable_from(hosts), web_tier("netns", work, groups, hosts, args.threads) as topology:
                results.append(measure(topology, args, groups))
            results[-1]["delay_ms_each_way"] = 0.0 if hosts.delay_problem else hosts.delay_ms
            results[-1]["delay_problem"] = hosts.delay_problem
    finally:
        if hosts is not None:
            hosts.remove()
        for group in groups.values():
            group.remove()
    load_after = os.getloadavg()
    print_table(results)
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} "
        f"{load_after[1]:.2f}; {machine()}"
    )
    if args.chart:
        caption = (
            f"GET /generations/ signed in; {args.cpu} CPU per app server; load average {load_before[0]:.1f} -> "
            f"{load_after[0]:.1f}; {machine()}"
        )
        draw_chart(results, Path(args.chart), caption)
    if args.json:
        payload = {
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": machine(),
            "load_average": {"before": load_before, "after": load_after},
            "results": results,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
