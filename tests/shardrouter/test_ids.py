"""64-bit IDs: documented layout, time-ordered, unique across threads and processes, never issued on a clock rewind."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from shardrouter.control import control_connection
from shardrouter.errors import ClockMovedBackwardsError
from shardrouter.ids import EPOCH_MS, ControlDatabaseLease, FixedWorker, IdGenerator, compose_id, decode_id, new_id
from tests.conftest import ALL_DATABASES, child_env


class SteppingClock:
    """A clock the test moves by hand (a real clock cannot be made to run backwards safely)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_the_layout_is_41_bits_of_time_10_of_worker_12_of_sequence() -> None:
    value = compose_id(EPOCH_MS + 1, worker_id=3, sequence=5)
    assert value == (1 << 22) | (3 << 12) | 5
    assert decode_id(value).timestamp_ms == EPOCH_MS + 1
    assert decode_id(value).worker_id == 3
    assert decode_id(value).sequence == 5
    assert compose_id(EPOCH_MS + (1 << 41) - 1, 1023, 4095) < 2**63


def test_ids_within_one_millisecond_use_the_sequence_and_stay_ordered() -> None:
    clock = SteppingClock(EPOCH_MS + 10_000)
    generator = IdGenerator(FixedWorker(7), clock_ms=clock)
    ids = [generator.next_id() for _ in range(3)]
    assert [decode_id(i).sequence for i in ids] == [0, 1, 2]
    clock.now_ms += 1
    later = generator.next_id()
    assert decode_id(later).sequence == 0 and later > ids[-1]


def test_a_clock_that_runs_backwards_stops_id_issue_until_it_catches_up() -> None:
    clock = SteppingClock(EPOCH_MS + 50_000)
    generator = IdGenerator(FixedWorker(1), clock_ms=clock)
    last = generator.next_id()
    clock.now_ms -= 5
    with pytest.raises(ClockMovedBackwardsError, match="moved back 5 ms"):
        generator.next_id()
    clock.now_ms += 5
    assert generator.next_id() > last


def test_ids_are_unique_across_threads() -> None:
    generator = IdGenerator(FixedWorker(2))
    results: list[list[int]] = [[] for _ in range(4)]

    def work(bucket: list[int]) -> None:
        bucket.extend(generator.next_id() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(bucket,)) for bucket in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for bucket in results for i in bucket]
    assert len(set(every)) == len(every) == 20_000
    for bucket in results:
        assert bucket == sorted(bucket)


PRODUCER = """
import sys
import django
django.setup()
from shardrouter.ids import new_id, _process_generator
ids = [new_id() for _ in range(3000)]
print(_process_generator.get().worker_id, *ids, flush=True)
sys.stdin.readline()  # stay alive (holding the lease) until every producer has its worker ID
"""


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_concurrent_processes_lease_distinct_worker_ids_and_never_collide() -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER], env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    try:
        outputs = [p.stdout.readline().split() for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.communicate(input="done\n", timeout=60)
    assert all(p.returncode == 0 for p in procs)
    workers = [int(out[0]) for out in outputs]
    ids = [int(v) for out in outputs for v in out[1:]]
    assert len(set(workers)) == 4, f"live processes shared worker IDs: {workers}"
    assert len(set(ids)) == len(ids) == 12_000
    assert {decode_id(i).worker_id for i in ids} == set(workers)


@pytest.fixture
def only_worker_777_free() -> Iterator[None]:
    """Every worker ID but 777 held by live leases, as on a busy cluster; removed afterwards.

    Leases that earlier tests' processes released or let expire are free IDs too: they are held for the
    test (their ``last_ms`` kept) and released again afterwards, so which tests ran before does not matter.
    """
    with control_connection.cursor() as cur:
        cur.execute(
            "UPDATE shardrouter_idworkerlease SET owner = 'test-holder-took-over', expires_at = now() + interval "
            "'1 hour' WHERE worker_id <> 777 AND expires_at <= now()"
        )
        cur.execute(
            "INSERT INTO shardrouter_idworkerlease (worker_id, owner, expires_at, last_ms) "
            "SELECT g, 'test-holder', now() + interval '1 hour', 0 FROM generate_series(0, 1023) g WHERE g <> 777 "
            "ON CONFLICT (worker_id) DO NOTHING"
        )
    yield
    with control_connection.cursor() as cur:
        cur.execute("DELETE FROM shardrouter_idworkerlease WHERE owner = 'test-holder' OR worker_id = 777")
        cur.execute(
            "UPDATE shardrouter_idworkerlease SET owner = '', expires_at = now() WHERE owner = 'test-holder-took-over'"
        )


def set_lease_777(*, owner: str, expires_ms: int, last_ms: int) -> None:
    with control_connection.cursor() as cur:
        cur.execute("DELETE FROM shardrouter_idworkerlease WHERE worker_id = 777")
        cur.execute(
            "INSERT INTO shardrouter_idworkerlease (worker_id, owner, expires_at, last_ms) "
            "VALUES (777, %s, to_timestamp(%s / 1000.0), %s)",
            [owner, expires_ms, last_ms],
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES)
def test_a_released_worker_id_is_reused_only_after_its_previous_holders_last_millisecond(
    only_worker_777_free: None,
) -> None:
    # The previous holder released 777 after issuing IDs up to 1.5 s ahead of this host's clock.
    high_water = now_ms() + 1500
    set_lease_777(owner="", expires_ms=now_ms() - 1, last_ms=high_water)
    generator = IdGenerator(ControlDatabaseLease(ttl_seconds=60))
    first = decode_id(generator.next_id())
    assert first.worker_id == 777
    assert first.timestamp_ms > high_water
    generator.release()


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_a_worker_id_whose_holder_died_is_reused_only_after_its_last_renewed_millisecond(
    only_worker_777_free: None,
) -> None:
    # The holder died without releasing; its last renewal recorded IDs up to 1 s ahead of this host's clock.
    high_water = now_ms() + 1000
    set_lease_777(owner="dead-host:123", expires_ms=now_ms() - 1, last_ms=high_water)
    generator = IdGenerator(ControlDatabaseLease(ttl_seconds=60))
    first = decode_id(generator.next_id())
    assert first.worker_id == 777 and first.timestamp_ms > high_water
    generator.release()


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_a_host_whose_clock_lags_far_behind_a_worker_ids_history_refuses_to_issue_ids(
    only_worker_777_free: None,
) -> None:
    set_lease_777(owner="", expires_ms=now_ms() - 1, last_ms=now_ms() + 60_000)
    generator = IdGenerator(ControlDatabaseLease(ttl_seconds=60))
    with pytest.raises(ClockMovedBackwardsError, match="Check NTP"):
        generator.next_id()


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_releasing_a_worker_id_records_the_last_millisecond_used(only_worker_777_free: None) -> None:
    set_lease_777(owner="", expires_ms=now_ms() - 1, last_ms=0)
    generator = IdGenerator(ControlDatabaseLease(ttl_seconds=60))
    last = decode_id(generator.next_id())
    generator.release()
    with control_connection.cursor() as cur:
        cur.execute("SELECT owner, last_ms, expires_at <= now() FROM shardrouter_idworkerlease WHERE worker_id = 777")
        assert cur.fetchone() == ("", last.timestamp_ms, True)


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_the_process_generator_holds_a_lease_in_the_control_database() -> None:
    from shardrouter.ids import _process_generator
    from tests.conftest import raw_rows

    value = new_id()
    worker = decode_id(value).worker_id
    assert worker == _process_generator.get().worker_id
    rows = raw_rows(
        "default", "SELECT owner FROM shardrouter_idworkerlease WHERE worker_id = %s AND expires_at > now()", [worker]
    )
    assert len(rows) == 1
