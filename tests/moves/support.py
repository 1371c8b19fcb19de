"""Helpers for the live-move tests: a write load with an independent ledger, operator processes, waits."""

from __future__ import annotations

import io
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.db.models import Model
from psycopg import sql

from apps.content.models import Generation, UsageEvent
from apps.content.services import generation_create, generation_delete
from migrations_tooling.models import MoveRange
from migrations_tooling.services import move_refresh
from quantumquill.devstack.stack import REPO_ROOT
from shardrouter.control import conninfo_for
from shardrouter.ids import new_id
from shardrouter.mapstore import load_map_from_database
from shardrouter.writes import run_sharded_write
from tests.conftest import child_env
from tests.support import wait_until


def shardmove(*args: str) -> str:
    """Run ``manage.py shardmove`` in this process and return its output."""
    out = io.StringIO()
    call_command("shardmove", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def latest_move() -> MoveRange:
    move = MoveRange.objects.order_by("-id").first()
    assert move is not None
    return move


def wait_for_phase(move_id: int, phase: str, *, timeout: float = 60) -> None:
    """Wait for the phase, recording copy progress meanwhile (as `start --wait` does; `status` only reads)."""

    def reached() -> bool:
        return move_refresh(MoveRange.objects.get(id=move_id)).phase == phase

    wait_until(reached, timeout=timeout, what=f"move {move_id} to reach {phase}", poll=0.1)


def on_db(alias: str, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on one database with a fresh autocommit connection (usable from any thread)."""
    with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
        cursor = conn.execute(query, list(params))  # type: ignore[arg-type]
        return list(cursor.fetchall()) if cursor.description else []


# --- operator processes --------------------------------------------------------------------------------


QUICK_SETTINGS = "tests.moves.settings"  # the project's settings with the shorter waits of tests/moves/fixtures.py
PROJECT_SETTINGS = "quantumquill.settings"


class Operator:
    """``manage.py shardmove ...`` as a real child process (so a test can SIGKILL it).

    It runs with ``settings_module``: by default the project's settings with the same shorter waits as the test
    process (``quick_moves``); ``PROJECT_SETTINGS`` for the project's own (the five-window throttle baseline).
    """

    def __init__(
        self,
        *args: str,
        pause_at: str | None = None,
        pause_seconds: float | None = None,
        settings_module: str = QUICK_SETTINGS,
    ) -> None:
        extra = {"DJANGO_SETTINGS_MODULE": settings_module}
        if pause_at:
            extra["QQ_MOVE_PAUSE_AT"] = pause_at
        if pause_seconds is not None:
            extra["QQ_MOVE_PAUSE_SECONDS"] = str(pause_seconds)
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "shardmove", *args],
            cwd=REPO_ROOT,
            env=child_env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, *, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if any(text in line for line in self.output):
                return
            if self.proc.poll() is not None and self.lines.empty():
                time.sleep(0.2)
                if any(text in line for line in self.output):
                    return
                raise AssertionError(f"shardmove {' '.join(self.args)} exited before {text!r}:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Timed out waiting for {text!r} from shardmove {' '.join(self.args)}:\n{self.text}"
                )
            try:
                self.lines.get(timeout=0.1)
            except queue.Empty:
                pass

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self, *, timeout: float = 180) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.1)
        return code, self.text

    @property
    def text(self) -> str:
        return "".join(self.output)


# --- the write load and its ledger ---------------------------------------------------------------------


@dataclass
class Ledger:
    """What the application was told succeeded, recorded independently of the databases."""

    generations: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (user, prompt)
    usage: dict[int, int] = field(default_factory=dict)  # generation id -> user (its usage event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    writes: int = 0

    def created(self, generation_id: int, user_id: int, prompt: str, *, with_usage: bool = True) -> None:
        with self.lock:
            self.generations[generation_id] = (user_id, prompt)
            if with_usage:
                self.usage[generation_id] = user_id
            self.writes += 1

    def updated(self, generation_id: int, user_id: int, prompt: str) -> None:
        with self.lock:
            self.generations[generation_id] = (user_id, prompt)
            self.writes += 1

    def removed(self, generation_id: int) -> None:
        with self.lock:
            self.generations.pop(generation_id)
            self.writes += 1


def seed(ledger: Ledger, alias: str, users: Iterable[int], per_user: int) -> None:
    """Insert generations (and their usage events) on ``alias``, recording them in the ledger."""
    generations, events = [], []
    for user in users:
        for n in range(per_user):
            gid = new_id()
            prompt = f"seed {user}/{n}"
            generations.append(Generation(id=gid, user_id=user, prompt=prompt))
            events.append(UsageEvent(user_id=user, kind=UsageEvent.Kind.GENERATION_REQUESTED, generation_id=gid))
            ledger.created(gid, user, prompt)
    copy_into(alias, generations)
    copy_into(alias, events)


def copy_into(alias: str, objects: Sequence[Model]) -> None:
    """Insert model instances on ``alias`` with one ``COPY``: the rows ``bulk_create`` would insert (defaults and
    ``auto_now`` fields filled the same way), without compiling an INSERT of every row (seconds for 60,000 rows)."""
    if not objects:
        return
    connection = connections[alias]
    fields = type(objects[0])._meta.concrete_fields
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(type(objects[0])._meta.db_table), sql.SQL(", ").join(sql.Identifier(f.column) for f in fields)
    )
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for obj in objects:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])


class Load:
    """Threads creating, updating and deleting generations of their own users through the app's services.

    Every acknowledged write goes into the ledger; any exception a user would
    have seen is collected in ``errors``.
    """

    def __init__(self, ledger: Ledger, users: list[int], *, threads: int = 4, pause: float = 0.01) -> None:
        self.ledger = ledger
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(users[i::threads], pause, i), name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for_writes(self, count: int, *, timeout: float = 30) -> None:
        """Let at least ``count`` more writes be acknowledged (the load keeps running meanwhile)."""
        target = self.ledger.writes + count
        wait_until(lambda: self.ledger.writes >= target or self.errors, timeout=timeout, what=f"{count} writes")

    def _run(self, users: list[int], pause: float, seed_value: int) -> None:
        rng = random.Random(seed_value)
        mine: dict[int, list[int]] = {u: [] for u in users}
        try:
            while not self.stop.is_set():
                user = rng.choice(users)
                roll = rng.random()
                if roll < 0.5 or len(mine[user]) < 3:
                    prompt = f"u{user} {rng.random():.6f}"
                    generation = generation_create(user_id=user, prompt=prompt)
                    self.ledger.created(generation.id, user, prompt)
                    mine[user].append(generation.id)
                elif roll < 0.8:
                    gid = rng.choice(mine[user])
                    prompt = f"u{user} edited {rng.random():.6f}"

                    def edit(gid: int = gid, prompt: str = prompt, user: int = user) -> int:
                        return Generation.objects.for_user(user).filter(id=gid).update(prompt=prompt)

                    if run_sharded_write(user_id=user, work=edit) != 1:
                        raise AssertionError(f"generation {gid} of user {user} vanished (update matched no row)")
                    self.ledger.updated(gid, user, prompt)
                else:
                    gid = mine[user].pop(rng.randrange(len(mine[user])))
                    generation_delete(user_id=user, generation_id=gid)
                    self.ledger.removed(gid)
                time.sleep(pause)
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            connections.close_all()


# --- the final check -------------------------------------------------------------------------------------


def assert_every_write_in_place(ledger: Ledger) -> None:
    """Every acknowledged row exists exactly once, where the map says, with its last value; nothing else does."""
    shard_map = load_map_from_database()
    found: dict[int, tuple[str, int, str]] = {}
    seen: Counter[int] = Counter()
    misplaced: list[str] = []
    usage_seen: Counter[int] = Counter()
    for alias in settings.DATABASES:
        for gid, user, prompt in on_db(alias, "SELECT id, user_id, prompt FROM content_generation"):
            seen[gid] += 1
            found[gid] = (alias, user, prompt)
            if shard_map.write_alias(user) != alias:
                misplaced.append(
                    f"generation {gid} of user {user} is on {alias}, the map says {shard_map.write_alias(user)}"
                )
        for _eid, user, gid in on_db(alias, "SELECT id, user_id, generation_id FROM content_usageevent"):
            usage_seen[gid] += 1
            if shard_map.write_alias(user) != alias:
                misplaced.append(f"usage event of generation {gid} (user {user}) is on {alias}")
    duplicates = sorted(gid for gid, n in seen.items() if n > 1)
    missing = sorted(set(ledger.generations) - set(found))
    extra = sorted(set(found) - set(ledger.generations))
    stale = sorted(
        gid for gid, (user, prompt) in ledger.generations.items() if gid in found and found[gid][1:] != (user, prompt)
    )
    usage_missing = sorted(gid for gid in ledger.usage if usage_seen[gid] != 1)
    usage_extra = sorted(set(usage_seen) - set(ledger.usage))
    problems = {
        "misplaced": misplaced[:10],
        "duplicated": duplicates[:10],
        "missing": missing[:10],
        "resurrected or unknown": extra[:10],
        "stale value": stale[:10],
        "usage events not exactly once": usage_missing[:10],
        "unknown usage events": usage_extra[:10],
    }
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}
