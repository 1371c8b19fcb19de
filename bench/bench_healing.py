"""Self-healing generations: recovery time after each fault class, and what the sweeper costs.

Measures, in one run, with real processes (a contentgen server, Celery workers
with the sweeper inside, the embedded broker Redis):

1. recovery time after each fault class, from the fault's end to the last
   stranded generation finishing, against the sweeper interval (ratio):
   the service down 30 s, a worker killed (``kill -9``) mid-job, the broker
   killed and restarted (its append-only file keeps the queue), and the
   broker's queue lost (``FLUSHDB``: what a broker without persistence does);
2. throughput (generations per minute) with the sweeper on and off, in
   alternating rounds of the same run (ratio on / off).

Deadlines are short (3 s calls, so a claim lease of 13 s), as in the tests.
Run from the repository root, on the test stack:

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_healing.py
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import REPO, machine, setup_django

TOKEN = secrets.token_urlsafe(24)
TUNING = {
    "CONTENTGEN_TIMEOUT_SECONDS": "3",
    "CONTENTGEN_RETRY_BACKOFF_SECONDS": "0.5",
    "CONTENTGEN_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CONTENTGEN_BREAKER_RESET_SECONDS": "1",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """The processes of one run: one contentgen server, Celery workers, the stack's broker."""

    def __init__(self, workdir: Path, sweep_interval: float) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.sweep_interval = sweep_interval
        self.service: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def env(self, *, sweeper: bool) -> dict[str, str]:
        interval = f"{self.sweep_interval:g}" if sweeper else "0"
        return {
            **os.environ,
            "CONTENTGEN_TARGET": f"127.0.0.1:{self.port}",
            "CONTENTGEN_TOKEN": TOKEN,
            "CONTENTGEN_SWEEP_INTERVAL_SECONDS": interval,
            "CONTENTGEN_SWEEP_OVERDUE_SECONDS": f"{self.sweep_interval:g}",
            **TUNING,
        }

    def start_service(self, token_interval_ms: int = 0) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONTENTGEN_")}
        env.update(CONTENTGEN_TOKEN=TOKEN, CONTENTGEN_CACHE_DIR=str(self.workdir / "model-cache"))
        argv = [sys.executable, "-m", "contentgen_service", "serve", "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--token-interval-ms", str(token_interval_ms)]
        with open(self.workdir / "service.log", "ab") as log:
            self.service = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log_path = self.workdir / "service.log"
        wait_for(lambda: "serving contentgen.v1" in log_path.read_text(errors="replace"), 300, "the service")
        log_path.write_text("")

    def kill_service(self) -> None:
        assert self.service is not None
        self.service.send_signal(signal.SIGKILL)
        self.service.wait()

    def start_worker(self, *, sweeper: bool = True) -> None:
        log_path = self.workdir / f"worker-{len(self.workers)}.log"
        argv = [sys.executable, "-m", "celery", "-A", "quantumquill", "worker", "--pool=prefork"]
        argv += ["--concurrency=2", "-l", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        argv += ["-n", f"bench-{secrets.token_hex(4)}@%h"]
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(argv, cwd=REPO, env=self.env(sweeper=sweeper), stdout=log, stderr=log)
        self.workers.append(worker)
        wait_for(lambda: " ready." in log_path.read_text(errors="replace"), 120, "the worker")

    def kill_workers(self) -> None:
        import psutil

        for worker in self.workers:
            if worker.poll() is None:
                process = psutil.Process(worker.pid)
                for child in process.children(recursive=True):
                    child.kill()
                process.kill()
                worker.wait()
        self.workers.clear()

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            self.service.wait(15)


def wait_for(condition, timeout: float, what: str, poll: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def create(user_id: int, count: int, max_tokens: int = 16) -> list[int]:
    from apps.content.services import generation_create

    return [
        generation_create(user_id=user_id, prompt="The socket module", max_tokens=max_tokens).id for _ in range(count)
    ]


def all_succeeded(user_id: int, ids: list[int]) -> bool:
    from apps.content.models import Generation

    rows = Generation.objects.for_user(user_id).filter(id__in=ids)
    failed = list(rows.filter(status=Generation.Status.FAILED).values_list("error", flat=True))
    if failed:
        raise SystemExit(f"a generation failed: {failed[0]}")
    return rows.filter(status=Generation.Status.SUCCEEDED).count() == len(ids)


def in_flight(user_id: int, ids: list[int]) -> bool:
    from apps.content.models import Generation

    return Generation.objects.for_user(user_id).filter(id__in=ids, status=Generation.Status.RUNNING).exists()


def recover(platform: Platform, user_id: int, ids: list[int], fault_end: float) -> float:
    wait_for(lambda: all_succeeded(user_id, ids), 600, "every generation to succeed", poll=0.2)
    return time.monotonic() - fault_end


def fault_service_down(platform: Platform, user_id: int, outage: float) -> float:
    platform.start_worker()
    ids = create(user_id, 10)
    platform.kill_service()
    time.sleep(outage)  # the fault itself
    platform.start_service()
    seconds = recover(platform, user_id, ids, time.monotonic())
    platform.stop_workers()
    return seconds


def fault_worker_killed(platform: Platform, user_id: int) -> float:
    platform.kill_service()
    platform.start_service(token_interval_ms=40)  # 40 tokens: 1.6 s in flight
    platform.start_worker()
    ids = create(user_id, 4, max_tokens=40)
    wait_for(lambda: in_flight(user_id, ids), 60, "jobs in flight", poll=0.02)
    platform.kill_workers()
    platform.start_worker()
    seconds = recover(platform, user_id, ids, time.monotonic())
    platform.stop_workers()
    platform.kill_service()
    platform.start_service()
    return seconds


def fault_broker(platform: Platform, user_id: int, *, lose_queue: bool) -> float:
    import redis

    from quantumquill.devstack.stack import stack_from_state

    broker = stack_from_state().redis_broker()
    ids = create(user_id, 10)  # no worker: the jobs wait in the broker
    if lose_queue:
        redis.Redis(port=broker.port).flushdb()
    else:
        os.kill(int(broker.pid_file.read_text().strip()), signal.SIGKILL)
        wait_for(lambda: not broker.is_running(), 30, "the broker to die")
        broker.start()
    platform.start_worker()
    seconds = recover(platform, user_id, ids, time.monotonic())
    platform.stop_workers()
    return seconds


def throughput(platform: Platform, user_id: int, *, sweeper: bool, count: int) -> float:
    platform.start_worker(sweeper=sweeper)
    started = time.monotonic()
    ids = create(user_id, count)
    wait_for(lambda: all_succeeded(user_id, ids), 600, "the round to finish", poll=0.1)
    per_minute = count / (time.monotonic() - started) * 60
    platform.stop_workers()
    return per_minute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep-interval", type=float, default=5.0, help="sweeper interval and overdue time (s)")
    parser.add_argument("--outage", type=float, default=30.0, help="how long the service is down (s)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per mode (alternating)")
    parser.add_argument("--per-round", type=int, default=40, help="generations per throughput round")
    args = parser.parse_args()

    setup_django()
    workdir = REPO / "var" / "bench-healing"
    workdir.mkdir(parents=True, exist_ok=True)
    platform = Platform(workdir, args.sweep_interval)
    platform.start_service()
    try:
        print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}; sweep interval {args.sweep_interval:g} s")
        user = iter(range(5000, 6000))
        results = {
            f"service down {args.outage:g} s": fault_service_down(platform, next(user), args.outage),
            "worker killed mid-job": fault_worker_killed(platform, next(user)),
            "broker killed and restarted (AOF)": fault_broker(platform, next(user), lose_queue=False),
            "broker queue lost (FLUSHDB)": fault_broker(platform, next(user), lose_queue=True),
        }
        print("| fault | recovery (fault end -> last finished) | / sweep interval |")
        print("| --- | --- | --- |")
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.1f} s | {seconds / args.sweep_interval:.2f} |")
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for sweeper in (True, False):
                rates[sweeper].append(throughput(platform, next(user), sweeper=sweeper, count=args.per_round))
        on, off = sum(rates[True]) / args.rounds, sum(rates[False]) / args.rounds
        print(f"throughput: sweeper on {on:.0f}/min, off {off:.0f}/min, ratio {on / off:.3f}")
        print(f"rounds on: {[round(r) for r in rates[True]]}, off: {[round(r) for r in rates[False]]}")
    finally:
        platform.kill_workers()
        platform.stop()


if __name__ == "__main__":
    main()
