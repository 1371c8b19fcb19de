"""A stopped shard server takes down only its own users' pages, with a clear 503, and recovery is automatic."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import Client

from apps.content.services import generation_create
from quantumquill.devstack.stack import stack_from_state
from tests.conftest import ALL_DATABASES
from tests.web.conftest import AppServer

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def session_for(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_only_the_users_of_a_stopped_shard_get_a_503_and_service_returns_by_itself(
    app_server: AppServer, make_user: Any
) -> None:
    on_shard1 = make_user(20, "stays-up")
    on_shard2 = make_user(1020, "goes-down")
    generation_create(user_id=on_shard1.id, prompt="shard1 survives")
    generation_create(user_id=on_shard2.id, prompt="shard2 returns")
    s1, s2 = session_for(on_shard1), session_for(on_shard2)
    assert app_server.get("/generations/", session=s2)[0] == 200

    shard2_server = stack_from_state().postgres("pg2")
    shard2_server.stop(mode="fast")
    try:
        status, headers, body = app_server.get("/generations/", session=s2)
        assert status == 503
        assert headers.get("Retry-After") == "30"
        assert "temporarily unavailable" in body and "Nothing you saved is lost" in body

        status, _, body = app_server.get("/generations/", session=s1)
        assert status == 200 and "shard1 survives" in body
        assert app_server.get("/")[0] == 200
    finally:
        shard2_server.start()
        # This test process's own connection to shard2 died with the server.
        connections["shard2"].close()

    status, _, body = app_server.get("/generations/", session=s2)
    assert status == 200 and "shard2 returns" in body
