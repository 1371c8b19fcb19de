"""gunicorn settings for a QuantumQuill app server, all from the environment.

    gunicorn -c deploy/gunicorn.conf.py        (from the repository root)

GUNICORN_BIND            address(es) to listen on, comma-separated        127.0.0.1:8000
GUNICORN_WORKERS         worker processes                                 2 x CPUs + 1
GUNICORN_THREADS         threads per worker (>1 selects gthread, which    4
                         also keeps nginx's upstream connections alive)
GUNICORN_TIMEOUT         seconds before a silent worker is killed         30
GUNICORN_GRACEFUL_TIMEOUT seconds a stopping worker gets to finish        30
GUNICORN_KEEPALIVE       idle seconds on a kept-alive connection; longer  75
                         than nginx's upstream keepalive_timeout (60s), so
                         nginx, not gunicorn, closes idle connections
GUNICORN_MAX_REQUESTS    recycle a worker after this many requests        2000 (0: never)
GUNICORN_MAX_REQUESTS_JITTER  random extra, so workers don't recycle      max_requests / 10
                         all at once
GUNICORN_ACCESS_LOG      access log path, "-" for stdout, "" for none     -
GUNICORN_LOG_LEVEL       error log level                                  info
GUNICORN_CONTROL_SOCKET  gunicornc control socket path; unset: disabled   (disabled)
FORWARDED_ALLOW_IPS      proxies trusted for X-Forwarded-*                127.0.0.1,::1
QQ_INSTANCE_NAME         names this server in X-Served-By and the logs    host name
PROMETHEUS_MULTIPROC_DIR where the workers' metrics are summed from;     a temporary
                         one folder per server, emptied at start         folder

Graceful restart: SIGHUP starts new workers and lets old ones finish within
GUNICORN_GRACEFUL_TIMEOUT; SIGTERM does the same on shutdown. The access log
carries the request ID nginx assigned and the instance that answered.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, whatever the cwd

# Metrics of every worker summed on /metrics (docs/observability.md): the workers write their samples to
# PROMETHEUS_MULTIPROC_DIR (a private temporary folder unless set, removed at exit), emptied when the server
# starts; an exiting worker first writes what it still holds in memory, then its live-gauge files are dropped.
# Set before prometheus_client is first imported: it picks its mode at import, and anything imported from
# quantumquill/ imports it.
_own_metrics_dir = ""
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qq-metrics-")

from apps.observability import exposition  # noqa: E402
from quantumquill.env import env_int, env_list, env_str  # noqa: E402

_cpus = os.cpu_count() or 1

wsgi_app = "quantumquill.wsgi:application"
chdir = str(Path(__file__).resolve().parent.parent)
bind = env_list("GUNICORN_BIND", ["127.0.0.1:8000"])
workers = env_int("GUNICORN_WORKERS", 2 * _cpus + 1, minimum=1, maximum=256)
threads = env_int("GUNICORN_THREADS", 4, minimum=1, maximum=256)
worker_class = "gthread" if threads > 1 else "sync"
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
keepalive = env_int("GUNICORN_KEEPALIVE", 75, minimum=0)
max_requests = env_int("GUNICORN_MAX_REQUESTS", 2000, minimum=0)
max_requests_jitter = env_int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 10, minimum=0)

accesslog = env_str("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = env_str("GUNICORN_LOG_LEVEL", "info") or "info"
# %(M)s: milliseconds; {x-request-id}o / {x-served-by}o: response headers set by apps.platform.middleware.
access_log_format = (
    '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s served_by=%({x-served-by}o)s "%(a)s"'
)

forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = f"quantumquill:{env_str('QQ_INSTANCE_NAME', '') or socket.gethostname()}"
# The heartbeat file on tmpfs: a disk-backed /tmp can stall workers (gunicorn's own advice).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# gunicorn's control socket defaults to one path per user, which two servers on one host would share.
_control_socket = env_str("GUNICORN_CONTROL_SOCKET", "")
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True


def on_starting(server: object) -> None:
    exposition.prepare_multiprocess_dir()


def worker_exit(server: object, worker: object) -> None:
    exposition.process_exiting()  # in the worker: write the metrics it still holds in memory before it goes


def child_exit(server: object, worker: object) -> None:
    exposition.process_exited(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
