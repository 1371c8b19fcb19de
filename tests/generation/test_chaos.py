"""Chaos: 100 generations through the API while a seeded schedule kills the worker, the service and the broker.

Invariants: every request is answered without a 5xx, every generation ends
``succeeded`` with exactly one stored result and one ``generation_completed``
event, and the last one finishes within ``BOUND_SECONDS`` of the last fault's
end. Faults are tied to progress (the n-th fault starts once so many
generations were created, and lasts for a seeded number of further creates),
not to wall-clock sleeps, so the schedule is the same on a slow machine.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from typing import Any

import psutil
import pytest
import requests

from apps.security.tokens import api_token_create
from quantumquill.devstack.redis import RedisServer
from tests.conftest import ALL_DATABASES, raw_rows
from tests.generation.conftest import SWEEPER, GenerationStack, kill_redis, shard_of
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

SEED = 20261204
GENERATIONS = 100
FAULTS = ["worker", "service", "broker", "cache", "worker", "service", "broker"]
# From the end of the last fault to the last generation succeeded: claim lease (13 s in the tests) plus
# sweeper interval and overdue time (1 s + 2 s) plus the backlog, with room for a loaded machine.
BOUND_SECONDS = 90.0
SERVER_OPTIONS = {"token_interval_ms": 5}


class Traffic:
    """Creates the generations and reads the list meanwhile, recording every status code."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.statuses: list[int] = []
        self.created: list[int] = []
        self.done = threading.Event()

    def create_all(self) -> None:
        try:
            for number in range(GENERATIONS):
                response = self.session.post(
                    f"{self.base_url}/api/v1/generations/",
                    json={"prompt": "The socket module", "max_tokens": 8},
                    headers={"Idempotency-Key": f"chaos-{SEED}-{number}"},
                    timeout=30,
                )
                self.statuses.append(response.status_code)
                if response.status_code in (200, 201):
                    self.created.append(int(response.json()["id"]))
        finally:
            self.done.set()

    def read_meanwhile(self) -> None:
        while not self.done.wait(0.2):
            try:
                response = self.session.get(f"{self.base_url}/api/v1/generations/", timeout=30)
            except requests.RequestException:
                self.statuses.append(0)  # no answer at all: as bad as a 5xx
                continue
            self.statuses.append(response.status_code)


def kill_tree(pid: int) -> None:
    process = psutil.Process(pid)
    for child in process.children(recursive=True):
        child.kill()
    process.kill()


def test_chaos_every_generation_succeeds_exactly_once_with_no_5xx(
    stack: GenerationStack, redis_servers: dict[str, RedisServer], make_user: Any
) -> None:
    rng = random.Random(SEED)
    user = make_user(1090, "chaos")
    token = api_token_create(user_id=user.pk, name="chaos").key
    services = [stack.server(**SERVER_OPTIONS)]
    stack.worker(**SWEEPER)
    web = stack.app_server()
    traffic = Traffic(web.url, token)
    threads = [threading.Thread(target=traffic.create_all), threading.Thread(target=traffic.read_meanwhile)]
    for thread in threads:
        thread.start()

    def live_worker() -> None:
        # A supervisor's job (systemd, Kubernetes): a worker that exited is started again.
        if all(worker.process.poll() is not None for worker in stack.workers):
            stack.worker(**SWEEPER)

    def restart_worker() -> None:
        stack.worker(**SWEEPER)

    def begin(fault: str) -> Callable[[], None]:
        """Start a fault; return what ends it."""
        if fault == "worker":
            worker = next(worker for worker in reversed(stack.workers) if worker.process.poll() is None)
            kill_tree(worker.process.pid)
            worker.process.wait()
            return restart_worker
        if fault == "service":
            services[-1].send_signal(signal.SIGKILL)
            services[-1].wait()
            return lambda: services.append(stack.server(**SERVER_OPTIONS))
        if fault == "broker":
            kill_redis(redis_servers["broker"])
            return redis_servers["broker"].start
        redis_servers["cache"].stop()
        return redis_servers["cache"].start

    def answered(count: int) -> None:
        wait_until(
            lambda: len(traffic.statuses) >= count or traffic.done.is_set(), timeout=120, what=f"{count} answers"
        )

    progress = 8
    for fault in rng.sample(FAULTS, len(FAULTS)):
        answered(progress)
        end = begin(fault)
        progress += rng.randint(4, 10)  # the outage lasts while this many more requests are answered
        answered(progress)
        end()
        live_worker()
        progress += rng.randint(4, 10)
    for thread in threads:
        thread.join(timeout=120)

    assert [status for status in traffic.statuses if status >= 500 or status == 0] == []
    assert len(traffic.created) == GENERATIONS and len(set(traffic.created)) == GENERATIONS

    def unfinished() -> list[tuple[int, str]]:
        live_worker()
        return raw_rows(
            shard_of(user.id),
            "SELECT id, status FROM content_generation WHERE user_id = %s AND status <> 'succeeded'",
            [user.id],
        )

    # The bound: counted from here, after the last fault ended and the traffic finished.
    wait_until(lambda: not unfinished(), timeout=BOUND_SECONDS, what="every generation to succeed", poll=0.5)
    completions = raw_rows(
        shard_of(user.id),
        "SELECT g.id, count(e.id) FROM content_generation g LEFT JOIN content_usageevent e "
        "ON e.generation_id = g.id AND e.kind = 'generation_completed' WHERE g.user_id = %s GROUP BY g.id",
        [user.id],
    )
    assert len(completions) == GENERATIONS
    assert {count for _, count in completions} == {1}
