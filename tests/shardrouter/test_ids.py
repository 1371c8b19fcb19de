"""64-bit IDs: documented layout, time-ordered, unique across threads and processes, never issued on a clock rewind."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from shardrouter.errors import ClockMovedBackwardsError
from shardrouter.ids import EPOCH_MS, FixedWorker, IdGenerator, compose_id, decode_id, new_id
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
import django
django.setup()
from shardrouter.ids import new_id, _process_generator
ids = [new_id() for _ in range(3000)]
print(_process_generator.get().worker_id, *ids)
"""


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_concurrent_processes_lease_distinct_worker_ids_and_never_collide() -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", PRODUCER], env=child_env(), stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    workers = [int(out[0]) for out in outputs]
    ids = [int(v) for out in outputs for v in out[1:]]
    assert len(set(workers)) == 4, f"worker IDs were shared: {workers}"
    assert len(set(ids)) == len(ids) == 12_000
    assert {decode_id(i).worker_id for i in ids} == set(workers)


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
