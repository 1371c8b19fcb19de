"""Sessions on a real Redis Cluster (3 masters, 3 replicas): spread, outages per slot range, resharding, copying."""

from __future__ import annotations

import subprocess
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from redis.cluster import key_slot

from apps.platform.session_store import SessionStore
from quantumquill.devstack.redis_cluster import RedisClusterStack, node_client
from quantumquill.redis_env import default_cache
from tests.conftest import ALL_DATABASES
from tests.stateless.cluster import master_port_of_session
from tests.stateless.conftest import PASSWORD, session_cache_key

SLOTS_MOVED = 1100  # of the source master's ~5461

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES), pytest.mark.slow]


def _log_in(username: str) -> Client:
    client = Client()
    response = client.post(reverse("accounts:login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def _key(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _sessions_on_each_master(stack: RedisClusterStack, count: int) -> dict[int, list[str]]:
    """Create ``count`` sessions through the engine; their keys grouped by the master that holds them."""
    by_master: dict[int, list[str]] = {master.port: [] for master in stack.masters()}
    for n in range(count):
        store = SessionStore()
        store["n"] = n
        store.create()
        assert store.session_key is not None
        by_master[master_port_of_session(stack, store.session_key)].append(store.session_key)
    return by_master


def test_sessions_land_on_all_three_masters_under_djangos_own_untagged_keys(
    cluster_sessions: RedisClusterStack,
    make_user: Any,
) -> None:
    make_user(3000, "ann", password=PASSWORD)
    browser = _log_in("ann")
    key = _key(browser)
    owner = master_port_of_session(cluster_sessions, key)
    assert node_client(owner).exists(session_cache_key(key)), "the login is stored on the master owning its slot"
    assert browser.get(reverse("content:list")).status_code == 200

    by_master = _sessions_on_each_master(cluster_sessions, 30)
    assert len(by_master) == 3 and all(by_master.values()), {port: len(keys) for port, keys in by_master.items()}
    for port, keys in by_master.items():
        for session_key in keys:
            assert "{" not in session_cache_key(session_key)  # no hash tag pinning sessions to one slot
            assert node_client(port).exists(session_cache_key(session_key))
    assert len({key_slot(session_cache_key(k).encode()) for keys in by_master.values() for k in keys}) > 25


def test_a_slot_range_without_a_master_answers_503_to_its_users_only_and_recovers_without_a_restart(
    cluster_sessions: RedisClusterStack,
    make_user: Any,
) -> None:
    stack = cluster_sessions
    browsers: dict[int, Client] = {}
    user_id = 3010
    # Sign users in until each master holds one of them.
    while len(browsers) < 3:
        make_user(user_id, f"u{user_id}", password=PASSWORD)
        browser = _log_in(f"u{user_id}")
        browsers.setdefault(master_port_of_session(stack, _key(browser)), browser)
        user_id += 1
    lost_master = stack.masters()[0]
    lost_replica = stack.replica_of(lost_master)
    keys_before = {port: _key(browser) for port, browser in browsers.items()}

    # Master and replica both gone: its slots have no master at all (the cluster runs without full coverage).
    stack.kill(lost_replica.port)
    stack.kill(lost_master.port)

    for port, browser in browsers.items():
        response = browser.get(reverse("content:list"))
        if port == lost_master.port:
            assert response.status_code == 503
            assert int(response["Retry-After"]) > 0
            assert "can't confirm your sign-in" in response.content.decode()
            assert response.cookies.get(settings.SESSION_COOKIE_NAME) is None, "the cookie is left alone"
        else:
            assert response.status_code == 200, f"users on the master at {port} are not affected"
    assert Client().get(reverse("home")).status_code == 200  # anonymous pages keep working

    stack.restart(lost_master.port)
    stack.restart(lost_replica.port)
    stack.wait_healthy()

    for port, browser in browsers.items():
        assert browser.get(reverse("content:list")).status_code == 200, "still signed in, no app restart"
        assert _key(browser) == keys_before[port]


def test_live_resharding_loses_and_reverts_no_session_while_users_sign_in_read_and_write(
    cluster_sessions: RedisClusterStack,
    make_user: Any,
    tmp_path: Path,
) -> None:
    stack = cluster_sessions
    source, target = stack.masters()[0], stack.masters()[1]
    sessions = _sessions_on_each_master(stack, 90)
    on_source = sessions[source.port]
    ledger: dict[str, int] = {}  # what each session's counter must read: the last acknowledged write
    errors: list[BaseException] = []
    stop = threading.Event()

    def user(keys: list[str]) -> None:
        try:
            while not stop.is_set():
                for session_key in keys:
                    store = SessionStore(session_key)
                    expected = ledger.get(session_key, 0)
                    seen = store.get("counter", 0)
                    assert seen == expected, f"{session_key}: read {seen}, last write was {expected}"
                    store["counter"] = seen + 1
                    store.save()
                    ledger[session_key] = seen + 1
                fresh = SessionStore()  # a new sign-in while slots move
                fresh["counter"] = 0
                fresh.create()
                assert fresh.session_key is not None
                ledger[fresh.session_key] = 0
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    make_user(3100, "rey", password=PASSWORD)
    workers = [threading.Thread(target=user, args=(on_source[i::3],), daemon=True) for i in range(3)]
    try:
        for worker in workers:
            worker.start()
        # A fifth of the source's slots move to the target, keys and all, with MIGRATE in batches of 10.
        log = tmp_path / "reshard.log"
        with log.open("w") as output:
            reshard = subprocess.Popen(
                stack.reshard_command(source=source.node_id, target=target.node_id, slots=SLOTS_MOVED, pipeline=10),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            signed_in = []
            while reshard.poll() is None:
                signed_in.append(_log_in("rey"))  # real logins through the app during the move
        assert reshard.returncode == 0, log.read_text()[-2000:]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not errors, errors[0]

    moved = [k for k in on_source if master_port_of_session(stack, k) == target.port]
    assert moved, "some of the sessions under load moved to the other master"
    for session_key, counter in ledger.items():
        assert SessionStore(session_key).get("counter") == counter, session_key
    assert min(ledger[k] for k in on_source) > 0
    for browser in signed_in[-3:]:
        assert browser.get(reverse("content:list")).status_code == 200


def test_copy_sessions_to_redis_copies_into_the_cluster_with_a_marker_in_the_sessions_slot(
    cluster_sessions: RedisClusterStack,
) -> None:
    encoded = DatabaseSessionStore().encode({"_auth_user_id": "1"})
    expires = timezone.now() + timedelta(days=1)
    keys = [f"clustercopy{n:021d}" for n in range(60)]
    Session.objects.bulk_create(Session(session_key=k, session_data=encoded, expire_date=expires) for k in keys)

    first = StringIO()
    call_command("copy_sessions_to_redis", "--batch-size", "25", stdout=first)
    second = StringIO()
    call_command("copy_sessions_to_redis", stdout=second)

    assert "60 copied" in first.getvalue()
    assert "0 copied" in second.getvalue() and "60 copied by an earlier run" in second.getvalue()
    masters = {master_port_of_session(cluster_sessions, k) for k in keys}
    assert len(masters) == 3, "copied sessions spread over the masters"
    for session_key in keys:
        assert SessionStore(session_key)["_auth_user_id"] == "1"
        marker = f"qq:1:qq.sessions.copied:{{{session_cache_key(session_key)}}}"
        assert key_slot(marker.encode()) == key_slot(session_cache_key(session_key).encode())
        assert node_client(master_port_of_session(cluster_sessions, session_key)).exists(marker)


def test_the_sessions_cache_clears_every_master(cluster_sessions: RedisClusterStack) -> None:
    by_master = _sessions_on_each_master(cluster_sessions, 15)
    caches[settings.SESSION_CACHE_ALIAS].clear()
    for port in by_master:
        assert node_client(port).dbsize() == 0


def test_the_general_cache_on_the_cluster_keeps_djangos_cache_api_across_slots(
    redis_cluster: RedisClusterStack,
) -> None:
    config = default_cache({"REDIS_CLUSTER_NODES": redis_cluster.startup_nodes}, hint="")
    with override_settings(CACHES={**settings.CACHES, "default": config}):
        cache = caches["default"]
        values = {f"item{n}": {"n": n} for n in range(40)}
        cache.set_many(values, timeout=60)
        assert cache.get_many(list(values)) == values  # keys on every master in one call
        assert cache.add("counter", 1) and not cache.add("counter", 5)
        assert cache.incr("counter", 4) == 5
        cache.delete_many(list(values)[:20])
        assert len(cache.get_many(list(values))) == 20
        cache.clear()
        assert cache.get("counter") is None and cache.get_many(list(values)) == {}


def test_a_cache_that_ignores_errors_reads_a_slot_without_a_master_as_a_miss(redis_cluster: RedisClusterStack) -> None:
    config = default_cache({"REDIS_CLUSTER_NODES": redis_cluster.startup_nodes}, hint="")
    config["OPTIONS"]["IGNORE_EXCEPTIONS"] = True
    with override_settings(CACHES={**settings.CACHES, "default": config}):
        cache = caches["default"]
        keys = [f"pin{n}" for n in range(30)]
        for key in keys:
            cache.set(key, "v", 60)
        lost = redis_cluster.masters()[0]
        redis_cluster.kill(redis_cluster.replica_of(lost).port)
        redis_cluster.kill(lost.port)
        answers = {key: cache.get(key) for key in keys}
        assert set(answers.values()) == {"v", None}, "keys on the lost master miss, the others are still read"


def test_a_session_in_a_slot_being_migrated_is_read_and_written_through_ask_then_moved(
    cluster_sessions: RedisClusterStack,
) -> None:
    stack = cluster_sessions
    store = SessionStore()
    store["version"] = 1
    store.create()
    assert store.session_key is not None
    key = session_cache_key(store.session_key)
    slot = key_slot(key.encode())
    source = stack.master_for_slot(slot)
    target = next(master for master in stack.masters() if master.port != source.port)
    src, dst = node_client(source.port), node_client(target.port)
    SessionStore(store.session_key).load()  # the app's client knows the slot map before the move
    # Half-way through moving the slot, as `redis-cli --cluster reshard` leaves it between two MIGRATE calls:
    # the key already lives on the target, the slot still belongs to the source, which answers ASK.
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
    assert src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key) == b"OK"

    during = SessionStore(store.session_key)
    assert during["version"] == 1
    during["version"] = 2
    during.save()

    for node in (dst, src, *(node_client(m.port) for m in stack.masters() if m.port not in (source.port, target.port))):
        node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    assert dst.exists(key), "the write during the move went to the key's new master"
    after = SessionStore(store.session_key)  # the client's map is now stale: MOVED, then the new master
    assert after["version"] == 2
    after["version"] = 3
    after.save()
    assert SessionStore(store.session_key)["version"] == 3
