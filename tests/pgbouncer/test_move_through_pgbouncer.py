"""A live move while the application goes through PgBouncer in transaction mode: the engine's own session work
(slots, subscriptions, the fence's locks, pg_stat_replication) goes to the servers directly, the application's
writes keep flowing through the poolers, and nothing acknowledged is lost."""

from __future__ import annotations

import os
import socket

import pytest
from django.db import connections

from migrations_tooling.pgconn import connect
from quantumquill.devstack.pgbouncer import PgBouncer
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES
from tests.moves.conftest import no_move_leftovers  # noqa: F401 - autouse: no replication objects between tests
from tests.moves.support import Ledger, Load, assert_every_write_in_place, latest_move, seed, shardmove, wait_for_phase
from tests.pgbouncer.conftest import pooler_stats

pytestmark = [pytest.mark.slow, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2. The move takes [0, 500) from shard1 (server pg1)
# to shard2 (server pg2), back, and forward again to the end.
IN_RANGE = [7, 130, 499]
OUTSIDE = [500, 900, 1000, 8000]


def routes() -> list[tuple[int, int, str, str]]:
    return [(r.lo, r.hi, r.alias, r.read_alias) for r in load_map_from_database().ranges]


def server_sees_our_port(alias: str, *, engine: bool) -> bool:
    """Whether the server's view of the client port is this connection's own (no pooler in between)."""
    if engine:
        conn = connect(alias)
        try:
            port = conn.execute("SELECT inet_client_port()").fetchone()[0]  # type: ignore[index]
            return _local_port(conn.pgconn.socket) == port
        finally:
            conn.close()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT inet_client_port()")
        port = cursor.fetchone()[0]
    return _local_port(connections[alias].connection.pgconn.socket) == port


def _local_port(fd: int) -> int:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return int(sock.getsockname()[1])


def test_the_app_goes_through_the_pooler_and_the_engine_goes_to_the_server() -> None:
    for alias in ("default", "shard1", "shard2"):
        assert not server_sees_our_port(alias, engine=False), f"the app reaches {alias} without the pooler"
        assert server_sees_our_port(alias, engine=True), f"the move engine reaches {alias} through a pooler"


def test_switch_reads_switch_writes_and_rollback_under_write_load_through_pgbouncer_lose_nothing(
    pgbouncers: dict[str, PgBouncer],
) -> None:
    ledger = Ledger()
    seed(ledger, "shard1", [*IN_RANGE, 500, 900], per_user=40)
    seed(ledger, "shard2", [1000, 8000], per_user=40)
    before = routes()
    stats_before = pooler_stats(pgbouncers)
    with Load(ledger, IN_RANGE + OUTSIDE, threads=4) as load:
        shardmove("start", "0", "500", "--to", "shard2")
        move = latest_move()
        wait_for_phase(move.id, "catching_up")
        shardmove("switch-reads", str(move.id))
        load.wait_for_writes(40)
        assert "Writes switched" in shardmove("switch-writes", str(move.id))
        load.wait_for_writes(60)  # these land on shard2 only

        assert "Rolled back" in shardmove("rollback", str(move.id))
        assert routes() == before
        load.wait_for_writes(60)  # and these on shard1 again

        # Forward once more, to the end: the range ends on shard2, its copy on shard1 is removed.
        shardmove("switch-reads", str(move.id))
        shardmove("switch-writes", str(move.id))
        load.wait_for_writes(40)
        assert "Complete" in shardmove("complete", str(move.id))
        load.wait_for_writes(20)
    assert load.errors == [], load.errors[0]
    assert_every_write_in_place(ledger)

    # The application's transactions went through the poolers of both shard servers.
    stats_after = pooler_stats(pgbouncers)
    for database in (connections["shard1"].settings_dict["NAME"], connections["shard2"].settings_dict["NAME"]):
        assert stats_after.get(database, 0) > stats_before.get(database, 0) + 50, database
