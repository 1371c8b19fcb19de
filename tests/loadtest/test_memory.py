"""The soak's memory samples: gunicorn's workers found through the socket they listen on, and a leak told
from warm-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from locustfiles.memory import GunicornMemory, MemorySample, children, find_listening_master, memory_trend
from tests.support import wait_until

# A master that listens and forks two workers inheriting the socket, as gunicorn does; each worker holds
# 40 MiB more than the master, so the sample can tell workers from master.
PREFORK_SERVER = """
import os, signal, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
workers = []
master = os.getpid()
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        ballast = bytearray(os.urandom(40 * 1024 * 1024))
        while os.getppid() == master:  # a worker never outlives its master
            time.sleep(0.2)
        os._exit(0)
    workers.append(pid)
print(listener.getsockname()[1], flush=True)
time.sleep(120)
"""


@pytest.fixture
def prefork_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    server = subprocess.Popen(
        [sys.executable, "-c", PREFORK_SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert server.stdout is not None
        yield server, int(server.stdout.readline())
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the master and its workers
        server.wait(10)


@pytest.mark.slow
def test_the_app_server_is_the_master_of_the_processes_listening_on_the_port(
    prefork_server: tuple[subprocess.Popen[str], int],
) -> None:
    server, port = prefork_server
    assert find_listening_master(port) == server.pid
    memory = GunicornMemory.discover(port=port)
    assert memory.master_pid == server.pid and memory.available
    wait_until(lambda: len(children(server.pid)) == 2, timeout=30, what="both workers to start")
    sample = wait_until(
        # Two workers' 40 MiB of ballast each (less a little for pages not touched yet): the sum is theirs.
        lambda: (s := memory.sample()) is not None and s.workers_rss_mb > 75 and s,
        timeout=30,
        what="the workers to hold their 40 MiB each",
    )
    assert sample.workers == 2


def test_no_app_server_on_this_machine_means_no_samples() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening
        assert find_listening_master(port) is None
        memory = GunicornMemory.discover(port=port)
    assert not memory.available
    assert memory.sample() is None


def samples(values: list[float], every_s: float = 60) -> list[MemorySample]:
    return [MemorySample(i * every_s, 2, value, 30.0) for i, value in enumerate(values)]


def test_growth_during_warm_up_is_not_a_leak() -> None:
    trend = memory_trend(samples([100, 140, 150, 150, 150.5, 150, 150.2, 150, 150.1, 150]))
    assert trend is not None
    assert trend.late_slope_mb_per_hour <= 1
    assert trend.reading == "flat"
    assert (trend.first_mb, trend.last_mb, trend.peak_mb, trend.warmup_samples) == (100, 150, 150.5, 2)


def test_growth_that_slows_down_reads_as_warm_up_and_is_judged_on_its_late_pace() -> None:
    # Caches filling: fast at first, then slower and slower (the shape a 10-minute soak showed).
    trend = memory_trend(samples([280 + 8 * (1 - 0.8**i) for i in range(30)], every_s=20))
    assert trend is not None
    assert trend.late_slope_mb_per_hour < 0.75 * trend.slope_mb_per_hour
    assert trend.reading == "growth slowing (warming up)"


def test_steady_growth_reads_as_a_leak_and_is_reported_per_hour() -> None:
    trend = memory_trend(samples([100 + i for i in range(20)]))  # 1 MiB a minute, all along
    assert trend is not None
    assert trend.slope_mb_per_hour == trend.late_slope_mb_per_hour == 60
    assert trend.reading.startswith("steady growth")


def test_too_few_samples_give_no_trend() -> None:
    assert memory_trend(samples([100, 101, 102, 103, 104])) is None
