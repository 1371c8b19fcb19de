"""What observability costs: a signed-in page with metrics + JSON logs (and tracing) on vs off; /metrics scrape time.

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_observability.py

Three gunicorn servers with identical settings (1 worker x 4 threads, pinned
to CPU 0) run side by side:

- ``off``: QQ_METRICS_ENABLED=0 (no metrics middleware, Django's own database
  backend), LOG_LEVEL=WARNING (no request lines);
- ``on``: metrics in multi-process mode, the measured database backend and one
  JSON log line per request (written to the server's log file);
- ``tracing``: ``on`` plus OpenTelemetry exporting every span over OTLP/HTTP
  to a local receiver in this process;
- ``control`` (with ``--control``): a second ``off``. Its ratio to ``off`` is
  what two identical servers show: the resolution of the other ratios.

A threaded keep-alive client (pinned to CPU 1) GETs /generations/ as a
signed-in user, one server at a time, rotating the order every round; the
result is the median of the per-round ratios against ``off``. Each round also
records the server CPU time (user + system of the master and its workers) per
request. Then "paired" rounds load all three servers at once, so whatever else
the machine is doing slows them alike, and compare their CPU time per request:
the ratio that resolves a few per cent on a shared, loaded machine, where
throughput rounds scatter by tens of per cent. Then a fourth server with 4
workers and 10 moves in the history answers /metrics scrapes, timed one after
another (every fifth one or so also takes the cluster snapshot).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import REPO, setup_django
from bench.bench_sessions import Sample, _load, _manage, _percentile, _session_cookie
from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer
from tests.observe.otlp import OtlpReceiver

MODES = ("off", "on", "tracing")


def _server_cpu_seconds(server: GunicornServer) -> float:
    """CPU time (user + system) the server's master and workers have used so far."""
    assert server.process is not None
    master = psutil.Process(server.process.pid)
    total = 0.0
    for process in (master, *master.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _paired_cpu_round(
    servers: dict[str, GunicornServer], cookies: dict[str, str], seconds: float, concurrency: int
) -> dict[str, float]:
    """Load every server at the same time and return each one's server CPU microseconds per request.

    The servers share CPU 0 and whatever else runs on the machine at that moment, so a busy neighbour slows
    them alike: their CPU per request, compared within the round, holds still where sequential rounds scatter.
    """
    before = {mode: _server_cpu_seconds(server) for mode, server in servers.items()}
    samples: dict[str, Sample] = {}

    def run(mode: str) -> None:
        samples[mode] = _load(servers[mode].port, cookies[mode], seconds, concurrency)

    threads = [threading.Thread(target=run, args=(mode,)) for mode in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        mode: (_server_cpu_seconds(server) - before[mode]) / max(1, samples[mode].requests) * 1e6
        for mode, server in servers.items()
    }


def _start_side_by_side(servers: dict[str, GunicornServer], *, again: bool = False) -> None:
    """Start every server at the same time (stopping it first if ``again``): none gets to start on a quieter
    machine than the others, or first."""

    def start(server: GunicornServer) -> None:
        if again:
            server.stop(timeout=10)
        server.start()

    threads = [threading.Thread(target=start, args=(server,)) for server in servers.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for server in servers.values():
        if server.process is None or server.process.poll() is not None:
            raise RuntimeError(f"{server.name} did not start: see {server.log_file}")


def _restart(servers: dict[str, GunicornServer], cookies: dict[str, str], concurrency: int) -> None:
    """Start every server again (side by side), then warm each up: fresh processes for the next round.

    Two identical servers can differ by several per cent in CPU per request for as long as their processes live
    (memory layout, hash seed); new processes every round turn that into scatter the medians absorb, instead of
    a bias that lasts the whole run. The sessions live in the session store, so the cookies stay valid.
    """
    _start_side_by_side(servers, again=True)
    for mode, server in servers.items():
        _load(server.port, cookies[mode], 1, concurrency)


def _moves_in_history(count: int) -> None:
    """``count`` finished moves, each with a cut-over in its journal (what the freeze histogram reads)."""
    setup_django(migrate=False)
    from migrations_tooling.models import MoveEvent, MoveRange, Phase

    MoveRange.objects.filter(lo__gte=10_000_000).delete()
    for n in range(count):
        move = MoveRange.objects.create(
            lo=10_000_000 + n * 10, hi=10_000_000 + n * 10 + 10, source="shard1", target="shard3", phase=Phase.COMPLETE
        )
        MoveEvent.objects.create(move=move, kind="cut-over", message="bench", data={"freeze": 0.05 + n / 100})


def _scrape_times(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200 and b"qq_http_requests_total" in body
        times.append(time.perf_counter() - started)
        time.sleep(0.1)
    conn.close()
    return times


# What "on" adds to one request of the page, timed without the server, the way the middleware and the measured
# backend do it: three statements handed to the request's stats, the HTTP counter and histogram and the three
# query observations added to the process's totals (multi-process mode: written to the memory-mapped files once a
# second, here at the end), and the JSON request line.
_PER_REQUEST = """
import io, logging, sys, time
from apps.observability import metrics
from apps.observability.context import RequestStats
from apps.observability.logs import JsonFormatter
from apps.observability.pending import request_observations
handler = logging.StreamHandler(io.StringIO())
handler.setFormatter(JsonFormatter())
log = logging.getLogger("bench.request")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
requests = metrics.http_requests.labels("content:list", "GET", "200")
duration = metrics.http_request_duration.labels("content:list")
queries = metrics.db_query_duration.labels("shard1")
n = 20000
started = time.perf_counter()
for _ in range(n):
    stats = RequestStats()
    for _ in range(3):
        stats.add("shard1", 0.001, queries)
    observations = stats.close()
    observations.append((duration, 0.02))
    request_observations.add((requests,), observations)
    fields = {"method": "GET", "path": "/generations/", "view": "content:list", "status": 200, "duration_ms": 20.1,
              "user_id": 1, "shards": sorted(stats.aliases - {"default"}), "queries": stats.queries,
              "query_ms": round(stats.query_seconds * 1000, 2)}
    log.handle(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra={"fields": fields}))
request_observations.flush()
print((time.perf_counter() - started) / n * 1e6)
"""


def _per_request_microseconds(folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    out = subprocess.run(
        [sys.executable, "-c", _PER_REQUEST], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3, help="measured seconds per mode per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the order of the modes rotates")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads / keep-alive connections")
    parser.add_argument(
        "--paired-rounds", type=int, default=9, help="rounds loading every server at once, for CPU per request"
    )
    parser.add_argument("--scrapes", type=int, default=100, help="timed /metrics scrapes")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="fresh server processes before every round, so no one process's luck lasts the whole run",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="a fourth server, a twin of off, measured like the others: the ratio two identical servers show",
    )
    args = parser.parse_args(argv)

    modes = (*MODES, "control") if args.control else MODES
    compared = [mode for mode in modes if mode != "off"]
    load_at_start = os.getloadavg()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = frozenset(cpus[:1])
    client_cpus = set(cpus[1:]) or set(cpus)
    _manage("migrate_shards")
    _manage("bootstrap_embedded")
    _moves_in_history(10)
    receiver = OtlpReceiver().start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    base_env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "QQ_HTTPS": "0",  # plain HTTP on loopback, no proxy in front
        "GUNICORN_ACCESS_LOG": "",
        "GUNICORN_MAX_REQUESTS": "0",
    }
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "PROMETHEUS_MULTIPROC_DIR"):
        base_env.pop(name, None)
    on = {"QQ_METRICS_ENABLED": "1", "LOG_LEVEL": "INFO", "QQ_LOG_FORMAT": "json"}
    envs = {
        "off": {"QQ_METRICS_ENABLED": "0", "LOG_LEVEL": "WARNING", "QQ_LOG_FORMAT": "plain"},
        "control": {"QQ_METRICS_ENABLED": "0", "LOG_LEVEL": "WARNING", "QQ_LOG_FORMAT": "plain"},
        "on": {**on, "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "on-metrics")},
        "tracing": {
            **on,
            "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "tracing-metrics"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "quantumquill-web",
        },
    }
    servers = {
        mode: GunicornServer(
            f"bench-{mode}", free_port(), {**base_env, **envs[mode]}, log_dir, workers=1, threads=4, cpus=server_cpus
        )
        for mode in modes
    }
    scraped = GunicornServer(
        "bench-scrape",
        free_port(),
        {
            **base_env,
            **on,
            "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "scrape-metrics"),
            "QQ_METRICS_CLUSTER_INTERVAL": "1",
        },
        log_dir,
        workers=4,
        threads=4,
    )
    samples: dict[str, list[Sample]] = {mode: [] for mode in modes}
    ratios: dict[str, list[float]] = {mode: [] for mode in compared}
    cpu_per_request: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu_ratios: dict[str, list[float]] = {mode: [] for mode in compared}
    paired_ratios: dict[str, list[float]] = {mode: [] for mode in compared}
    try:
        _start_side_by_side(servers)
        os.sched_setaffinity(0, client_cpus)
        cookies = {mode: _session_cookie(server.port) for mode, server in servers.items()}
        for mode, server in servers.items():  # warm-up: imports, connections, template caches
            _load(server.port, cookies[mode], 2, args.concurrency)
        for round_number in range(args.rounds):
            if args.restart:
                _restart(servers, cookies, args.concurrency)
            order = modes[round_number % len(modes) :] + modes[: round_number % len(modes)]
            for mode in order:
                cpu_before = _server_cpu_seconds(servers[mode])
                sample = _load(servers[mode].port, cookies[mode], args.seconds, args.concurrency)
                cpu_us = (_server_cpu_seconds(servers[mode]) - cpu_before) / max(1, sample.requests) * 1e6
                samples[mode].append(sample)
                cpu_per_request[mode].append(cpu_us)
                print(
                    f"round {round_number + 1} {mode:<8} {sample.rate:8.1f} req/s  {cpu_us:6.0f} us server CPU/request"
                    f"  errors {sample.errors}",
                    flush=True,
                )
            for mode in compared:
                ratios[mode].append(samples[mode][-1].rate / samples["off"][-1].rate)
                # Requests per CPU-second, on vs off: what the server's own work costs, whatever else runs.
                cpu_ratios[mode].append(cpu_per_request["off"][-1] / cpu_per_request[mode][-1])
        for round_number in range(args.paired_rounds):
            if args.restart:
                _restart(servers, cookies, args.concurrency)
            paired = _paired_cpu_round(servers, cookies, args.seconds, max(1, args.concurrency // 2))
            for mode in compared:
                paired_ratios[mode].append(paired["off"] / paired[mode])
            print(
                f"paired round {round_number + 1}: server CPU us/request "
                + ", ".join(f"{mode} {value:.0f}" for mode, value in paired.items()),
                flush=True,
            )
        for server in servers.values():
            server.stop(timeout=10)
        scraped.start()
        cookie = _session_cookie(scraped.port)
        _load(scraped.port, cookie, 2, args.concurrency)  # every worker has series to sum
        _scrape_times(scraped.port, 5)
        scrape_times = _scrape_times(scraped.port, args.scrapes)
        per_request_us = _per_request_microseconds(log_dir / "per-request-metrics")
    finally:
        for server in (*servers.values(), scraped):
            server.stop(timeout=10)
        receiver.stop()

    print(
        f"\n{os.cpu_count()} CPUs (shared with other work); server pinned to {sorted(server_cpus)}, client to "
        f"{sorted(client_cpus)}; gunicorn 1 worker x 4 threads; {args.concurrency} connections; "
        f"{args.rounds} x {args.seconds:.0f}s per mode; load averages (1/5/15 min) at the start "
        f"{'/'.join(f'{value:.2f}' for value in load_at_start)}, at the end "
        f"{'/'.join(f'{value:.2f}' for value in os.getloadavg())}; "
        f"{len(receiver.snapshot())} spans received"
    )
    print(
        "| observability | requests/s (median of rounds) | p50 ms | p99 ms | errors | ratio to off (median of rounds) "
        "| server CPU us/request (median) | CPU ratio to off (median of rounds) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        latencies = [value for sample in samples[mode] for value in sample.latencies]
        rate = statistics.median(sample.rate for sample in samples[mode])
        errors = sum(sample.errors for sample in samples[mode])
        ratio = f"{statistics.median(ratios[mode]):.3f}" if mode in ratios else "1"
        cpu_ratio = f"{statistics.median(cpu_ratios[mode]):.3f}" if mode in cpu_ratios else "1"
        print(
            f"| {mode} | {rate:.0f} | {_percentile(latencies, 50):.1f} | {_percentile(latencies, 99):.1f} | "
            f"{errors} | {ratio} | {statistics.median(cpu_per_request[mode]):.0f} | {cpu_ratio} |"
        )
    for mode, values in ratios.items():
        print(f"ratio {mode}/off per round: {', '.join(f'{value:.2f}' for value in values)}")
    for mode, values in cpu_ratios.items():
        print(f"CPU ratio {mode}/off per round: {', '.join(f'{value:.3f}' for value in values)}")
    for mode, values in paired_ratios.items():
        if values:
            print(
                f"paired CPU ratio {mode}/off (off's server CPU per request / {mode}'s, servers loaded at once): "
                f"median {statistics.median(values):.3f}; per round {', '.join(f'{value:.3f}' for value in values)}"
            )
    print(
        f"\n/metrics, 4 workers, 10 moves in history, {args.scrapes} scrapes: median "
        f"{_percentile(scrape_times, 50):.1f} ms, p95 {_percentile(scrape_times, 95):.1f} ms, max "
        f"{max(scrape_times) * 1000:.1f} ms"
    )
    off_ms = 1000 / statistics.median(sample.rate for sample in samples["off"])
    print(
        f"metrics + JSON line of one request, timed alone: {per_request_us:.0f} us "
        f"({per_request_us / 1000 / off_ms:.2%} of the off server's {off_ms:.1f} ms per request on one CPU)"
    )
    return 0 if all(sample.errors == 0 for mode in modes for sample in samples[mode]) else 1


if __name__ == "__main__":
    sys.exit(main())
