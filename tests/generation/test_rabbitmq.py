"""RabbitMQ as the job broker: a quorum queue, publisher confirms, late acknowledgements.

The machine's RabbitMQ (127.0.0.1:5672, guest/guest) is used through a vhost
of this test's own, created with ``rabbitmqctl`` and removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apps.content.services import generation_create
from quantumquill.devstack.stack import REPO_ROOT
from tests.conftest import ALL_DATABASES
from tests.generation.conftest import GenerationStack, completion_events, wait_for_row, wait_for_status, wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is missing: install rabbitmq-server (scripts/system-deps.sh does)")
    vhost = f"qq-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def queue_types(vhost: str) -> dict[str, str]:
    lines = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "--quiet", "name", "type").splitlines()
    return dict(line.split("\t")[:2] for line in lines if "\t" in line)


def test_jobs_run_through_a_rabbitmq_quorum_queue_and_retry_with_a_countdown_until_the_service_is_back(
    rabbitmq_url: str, stack: GenerationStack, make_user: Any
) -> None:
    user = make_user(1080, "ivy")
    generation = generation_create(user_id=user.id, prompt="The socket module", max_tokens=10, job_delay=None)
    broker = {"CELERY_BROKER_URL": rabbitmq_url}
    stack.worker(**broker)
    # Publish from another process configured for RabbitMQ: the operator's command sends the job.
    subprocess.run(
        [sys.executable, "manage.py", "generations_requeue", "--queued-for", "0"],
        cwd=REPO_ROOT,
        env=stack.env(**broker),
        check=True,
        capture_output=True,
        timeout=120,
    )

    # No service yet: the job fails and retries itself with a countdown (RabbitMQ's delayed delivery).
    waiting = wait_for_row(
        user.id, generation.id, lambda row: row["attempts"] >= 2, what="the job to retry through RabbitMQ"
    )
    assert waiting["status"] in {"queued", "running"}
    vhost = rabbitmq_url.rsplit("/", 1)[-1]
    assert queue_types(vhost).get("celery") == "quorum"
    stack.server()

    row = wait_for_status(user.id, generation.id, "succeeded", "failed")
    assert row["status"] == "succeeded" and completion_events(user.id, generation.id) == 1
    wait_until(lambda: "succeeded" in stack.workers[0].log(), what="the worker to log the result")
