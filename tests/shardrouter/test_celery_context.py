"""A shard context never carries over from one Celery task to the next, in a real worker."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.cache import cache

from tests.conftest import ALL_DATABASES, child_env
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def worker() -> object:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "quantumquill",
            "worker",
            "--pool=solo",
            "-I",
            "tests.celery_probe",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            "probe",
        ],
        env=child_env(),
    )
    yield process
    process.terminate()
    process.wait(20)


def wait_for(key: str, timeout: float = 30) -> object:
    """The value the worker wrote under ``key`` (wrapped, so that a falsy value counts as written)."""
    return wait_until(lambda: (value := cache.get(key)) is not None and [value], timeout=timeout, what=key)[0]


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_a_context_left_behind_by_one_task_is_gone_in_the_next(worker: object) -> None:
    from tests.celery_probe import leave_context_behind, report_context

    cache.delete_many(["probe:left", "probe:after"])
    leave_context_behind.apply_async(args=[4242], queue="probe")
    assert wait_for("probe:left") == 4242
    report_context.apply_async(args=["after"], queue="probe")
    assert wait_for("probe:after") == "None"
