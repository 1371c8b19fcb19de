"""Leases: one process at a time drives a move.

A command takes the move's lease with a conditional UPDATE that succeeds only
if the lease is free, expired, or already its own, and renews it from a
background thread every third of its length. A lease whose holder ran on this
host and is gone (killed, crashed) is taken over at once instead of waiting for
the expiry, so re-running a killed command works immediately. A holder on
another host is waited out (its expiry is in the error message).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connections

from shardrouter.conf import get_settings as shardrouter_settings

from .conf import get_settings
from .direct import direct_conninfo
from .errors import LeaseHeld, LeaseLost
from .models import MoveRange

_TABLE = MoveRange._meta.db_table


def lease_owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_gone(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _control_alias() -> str:
    return shardrouter_settings().control_database


def acquire(move_id: int, owner: str) -> None:
    seconds = get_settings().lease_seconds
    with connections[_control_alias()].cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} SET lease_owner = %s, lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE id = %s AND (lease_owner = '' OR lease_owner = %s OR lease_expires_at IS NULL "
            "OR lease_expires_at < now())",
            [owner, seconds, move_id, owner],
        )
        if cursor.rowcount == 1:
            return
        cursor.execute(f"SELECT lease_owner, lease_expires_at FROM {_TABLE} WHERE id = %s", [move_id])
        row = cursor.fetchone()
        if row is None:
            raise LeaseHeld(f"Move {move_id} does not exist.")
        holder, expires = row
        if _holder_is_gone(holder):
            cursor.execute(
                f"UPDATE {_TABLE} SET lease_owner = %s, lease_expires_at = now() + make_interval(secs => %s) "
                "WHERE id = %s AND lease_owner = %s",
                [owner, seconds, move_id, holder],
            )
            if cursor.rowcount == 1:
                return
    raise LeaseHeld(
        f"Move {move_id} is being driven by {holder} (lease valid until {expires:%Y-%m-%d %H:%M:%S %Z}). "
        "Wait for that command to finish; if its process is gone, re-run after the lease expires."
    )


def release(move_id: int, owner: str) -> None:
    with connections[_control_alias()].cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} SET lease_owner = '', lease_expires_at = NULL WHERE id = %s AND lease_owner = %s",
            [move_id, owner],
        )


class Heartbeat:
    """Renews a held lease in a background thread; ``lost`` is set if a renewal fails."""

    def __init__(self, move_id: int, owner: str) -> None:
        self.move_id = move_id
        self.owner = owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{move_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(
                f"Lost the lease on move {self.move_id} (could not renew it in time); stopped at a safe point. "
                "Re-run the command to resume."
            )

    def _run(self) -> None:
        seconds = get_settings().lease_seconds
        conn: psycopg.Connection[Any] | None = None
        renewed_at = time.monotonic()
        try:
            while not self._stop.wait(seconds / 3):
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(direct_conninfo(_control_alias()), autocommit=True, connect_timeout=5)
                    renewed = conn.execute(
                        f"UPDATE {_TABLE} SET lease_expires_at = now() + make_interval(secs => %s) "
                        "WHERE id = %s AND lease_owner = %s",
                        [seconds, self.move_id, self.owner],
                    ).rowcount
                    if renewed != 1:
                        self.lost.set()
                        return
                    renewed_at = time.monotonic()
                except psycopg.Error:
                    if conn is not None:
                        conn.close()
                    conn = None
                    if time.monotonic() - renewed_at > seconds:
                        self.lost.set()  # it may have expired: someone else may hold it now
                        return
        finally:
            if conn is not None:
                conn.close()


@contextmanager
def held(move_id: int) -> Iterator[Heartbeat]:
    """Hold the move's lease for the duration of the block."""
    owner = lease_owner_name()
    acquire(move_id, owner)
    heartbeat = Heartbeat(move_id, owner)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        release(move_id, owner)
