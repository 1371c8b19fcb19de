"""``make run``: the whole platform on one machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .pgbouncer import pooled_env, start_dev_poolers
from .preflight import require_free_port
from .session_cluster import session_mode, start_session_cluster
from .stack import PROFILES, REPO_ROOT, Stack


@dataclass(frozen=True)
class AppProcess:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's env


# Metrics ports of `make run` (the web server's is :8000/metrics); `make observe` scrapes them.
WORKER_METRICS_PORT = 55808
CONTENTGEN_METRICS_PORT = 55464


WEB_PORT = 8000
# Pause after each generated token, so that text visibly streams into the page in the demo.
DEMO_TOKEN_INTERVAL_MS = 30


def app_processes(env: dict[str, str] | None = None, *, celery_concurrency: int = 2) -> list[AppProcess]:
    """The long-running processes of the platform, each started with the stack's env."""
    py = sys.executable
    env = env or {}
    return [
        AppProcess("web", (py, "manage.py", "runserver", f"127.0.0.1:{WEB_PORT}", "--noreload")),
        # Content generation (docs/generation.md): the gRPC service on the stack's CONTENTGEN_TARGET,
        # with the stack's CONTENTGEN_TOKEN (read from the env), and the Celery worker running the jobs.
        AppProcess(
            "contentgen",
            (
                py,
                "-m",
                "contentgen_service",
                "serve",
                "--bind",
                env.get("CONTENTGEN_TARGET", "127.0.0.1:50051"),
                "--token-interval-ms",
                str(DEMO_TOKEN_INTERVAL_MS),
                *("--metrics-port", str(CONTENTGEN_METRICS_PORT)),
            ),
        ),
        AppProcess(
            "worker",
            (
                *(py, "-m", "celery", "-A", "quantumquill", "worker", "--pool=prefork"),
                *(f"--concurrency={celery_concurrency}", "-l", "INFO"),
            ),
            # Every pool process's metrics summed on the worker's own port.
            {
                "QQ_WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
                "PROMETHEUS_MULTIPROC_DIR": str(PROFILES["dev"].data_dir / "worker-metrics"),
            },
        ),
        # The analytics warehouse (docs/analytics.md): loads var/warehouse.duckdb, then follows every shard.
        AppProcess("warehouse", (py, "manage.py", "warehouse", "sync", "--follow")),
    ]


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, check=True)


def run(*, pgbouncer: bool = False) -> int:
    stack = Stack(PROFILES["dev"])
    # The application's own ports, checked before any server starts (the servers check theirs as they start).
    require_free_port(WEB_PORT, "web server (manage.py runserver)", grace=0)
    require_free_port(stack.ports_to_use()["contentgen"], "generation service (contentgen)", grace=0)
    print("Starting embedded PostgreSQL (3 servers) and Redis under var/devstack ...", flush=True)
    env = {**os.environ, **stack.up()}
    cluster = None
    if session_mode(env) == "cluster":  # QQ_DEVSTACK_SESSIONS=cluster: sessions on a 6-node Redis Cluster
        cluster, cluster_env = start_session_cluster(stack)
        env.update(cluster_env)
    # `make run PGBOUNCER=1`: one PgBouncer per server; migrations and seeding still go to the servers directly.
    poolers = start_dev_poolers(stack) if pgbouncer else {}
    app_env = {**env, **pooled_env(stack, poolers)} if poolers else env
    children: list[tuple[AppProcess, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        _manage(env, "migrate_shards")
        _manage(env, "bootstrap_embedded")
        for proc in app_processes(app_env):
            children.append((proc, subprocess.Popen(proc.argv, cwd=REPO_ROOT, env={**app_env, **proc.env})))
        print("\nQuantumQuill is up: http://127.0.0.1:8000  (Ctrl-C stops everything)\n", flush=True)
        while not stopping:
            for proc, child in children:
                if child.poll() is not None:
                    print(f"{proc.name} exited with code {child.returncode}; stopping.", flush=True)
                    stopping = True
            time.sleep(0.3)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"Start-up step failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})", file=sys.stderr)
        return 1
    finally:
        for _proc, child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for _proc, child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        print("Stopping embedded servers ...", flush=True)
        if cluster is not None:
            cluster.stop()
        for pooler in poolers.values():
            pooler.stop()
        stack.down()
