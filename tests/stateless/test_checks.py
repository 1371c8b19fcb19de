"""Statelessness checks: each kind of server-local state is flagged (with an ID and a hint) in horizontal mode."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from apps.platform.checks import _databases_are_shared, _no_in_process_scheduler, check_statelessness, horizontal_mode
from quantumquill.devstack.stack import REPO_ROOT

REDIS_ENGINE = "apps.platform.session_store"
S3 = {"default": {"BACKEND": "storages.backends.s3.S3Storage"}, "staticfiles": {"BACKEND": "x.Static"}}
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def _caches(**changes: dict[str, Any]) -> dict[str, Any]:
    caches = copy.deepcopy(settings.CACHES)
    caches.update(changes)
    return caches


def _ids(**overrides: Any) -> list[str]:
    base: dict[str, Any] = {"QQ_HORIZONTAL": True, "SESSION_ENGINE": REDIS_ENGINE, "STORAGES": S3}
    with override_settings(**{**base, **overrides}):
        return sorted(message.id for message in check_statelessness() if message.id)


def test_the_production_shape_passes_every_check() -> None:
    assert _ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SESSION_ENGINE": "django.contrib.sessions.backends.file"}, "platform.E101"),
        ({"CACHES": _caches(sessions=LOCMEM)}, "platform.E101"),
        (
            {"SESSION_ENGINE": "django.contrib.sessions.backends.cached_db", "CACHES": _caches(sessions=LOCMEM)},
            "platform.E101",
        ),
        ({"SESSION_ENGINE": "django.contrib.sessions.backends.db"}, "platform.W102"),
        ({"SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies"}, "platform.W103"),
        ({"SESSION_ENGINE": "no.such.engine"}, "platform.E100"),
        ({"CACHES": _caches(default=LOCMEM)}, "platform.E106"),
        (
            {"CACHES": _caches(ratelimit={"BACKEND": "django.core.cache.backends.filebased.FileBasedCache"})},
            "platform.W107",
        ),
        ({"STORAGES": {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}}, "platform.E108"),
        ({"CRONJOBS": [("*/5 * * * *", "apps.jobs.tick")]}, "platform.W110"),
        ({"CELERY_BEAT_SCHEDULE": {"tick": {"task": "t", "schedule": 60}}}, "platform.W111"),
    ],
)
def test_server_local_state_is_flagged_in_horizontal_mode(overrides: dict[str, Any], expected: str) -> None:
    assert expected in _ids(**overrides)
    assert expected not in _ids(**overrides, QQ_HORIZONTAL=False)


def test_a_shared_celery_beat_schedule_is_not_flagged() -> None:
    assert (
        _ids(
            CELERY_BEAT_SCHEDULE={"tick": {"task": "t", "schedule": 60}},
            CELERY_BEAT_SCHEDULER="django_celery_beat.schedulers:DatabaseScheduler",
        )
        == []
    )


def test_a_session_cache_that_ignores_redis_errors_is_an_error_even_on_one_server() -> None:
    sessions = copy.deepcopy(settings.CACHES["sessions"])
    sessions["OPTIONS"]["IGNORE_EXCEPTIONS"] = True
    assert "platform.E104" in _ids(CACHES=_caches(sessions=sessions), QQ_HORIZONTAL=False)
    sessions["OPTIONS"].pop("IGNORE_EXCEPTIONS")
    assert "platform.E104" in _ids(CACHES=_caches(sessions=sessions), DJANGO_REDIS_IGNORE_EXCEPTIONS=True)


def test_a_session_store_sharing_its_redis_with_the_cache_or_broker_is_flagged() -> None:
    location = settings.CACHES["sessions"]["LOCATION"]
    shared = {**settings.CACHES["default"], "LOCATION": location.rsplit("/", 1)[0] + "/5"}
    assert "platform.W105" in _ids(CACHES=_caches(default=shared))
    assert "platform.W105" in _ids(CELERY_BROKER_URL=location.rsplit("/", 1)[0] + "/1")


def test_sqlite_and_in_process_schedulers_are_flagged() -> None:
    messages = list(_databases_are_shared({"default": {"ENGINE": "django.db.backends.sqlite3"}}))
    assert [m.id for m in messages] == ["platform.E109"] and messages[0].hint
    messages = list(_no_in_process_scheduler(["django.contrib.auth", "django_apscheduler"]))
    assert [m.id for m in messages] == ["platform.W110"] and "APScheduler" in messages[0].msg


@pytest.mark.parametrize("debug", [False, True])
def test_horizontal_mode_defaults_to_on_exactly_when_debug_is_off(debug: bool) -> None:
    with override_settings(DEBUG=debug):
        del settings.QQ_HORIZONTAL
        assert horizontal_mode() is (not debug)


@pytest.mark.slow
def test_check_deploy_shows_the_statelessness_checks_with_their_hints() -> None:
    env = {
        **os.environ,
        "QQ_HORIZONTAL": "1",
        "QQ_SESSION_STORE": "database",
        "DJANGO_SETTINGS_MODULE": "quantumquill.settings",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert "(platform.W102)" in output and "copy_sessions_to_redis" in output
    assert "(platform.E108)" in output
    assert result.returncode != 0  # E108 is an error: check --deploy fails the deploy
