"""Helpers for the warehouse tests: the rows the warehouse must hold, read independently from the owners."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections

from apps.analytics.conf import WarehouseConfig
from apps.analytics.engines import warehouse
from apps.analytics.sync import Syncer
from quantumquill.devstack.stack import REPO_ROOT
from shardrouter.mapstore import load_map_from_database
from tests.conftest import child_env
from tests.moves.support import on_db
from tests.support import wait_until


def owners_rows() -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """Generations and usage events as the databases that own them (per the current map) hold them."""
    shard_map = load_map_from_database()
    generations: dict[int, tuple[Any, ...]] = {}
    usage: dict[int, tuple[Any, ...]] = {}
    for alias in settings.DATABASES:
        ranges = [(r.lo, r.hi) for r in shard_map.ranges if r.alias == alias]
        if not ranges:
            continue
        where = " OR ".join(f"(user_id >= {lo} AND user_id < {hi})" for lo, hi in ranges)
        for row in on_db(
            alias,
            "SELECT id, user_id, status, octet_length(prompt), octet_length(output), prompt_tokens "
            f"FROM content_generation WHERE {where}",
        ):
            assert row[0] not in generations, f"generation {row[0]} owned twice"
            generations[row[0]] = tuple(row[1:])
        for row in on_db(alias, f"SELECT id, user_id, kind, generation_id FROM content_usageevent WHERE {where}"):
            usage[row[0]] = tuple(row[1:])
    return generations, usage


def warehouse_rows(config: WarehouseConfig) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """The live facts by id; an id held twice (tombstones included) fails: DuckDB's facts have no key to refuse it."""
    with warehouse(config, read_only=True) as wh:
        for fact in ("fact_generation", "fact_usage"):
            twice = wh.fetchall(f"SELECT id, count(*) FROM {fact} GROUP BY id HAVING count(*) > 1 LIMIT 5")
            assert not twice, f"{fact}: ids held more than once: {twice}"
        generations = {
            int(r[0]): tuple(r[1:])
            for r in wh.fetchall(
                "SELECT id, user_id, status, prompt_bytes, output_bytes, prompt_tokens FROM fact_generation WHERE NOT deleted"
            )
        }
        usage = {
            int(r[0]): tuple(r[1:])
            for r in wh.fetchall("SELECT id, user_id, kind, generation_id FROM fact_usage WHERE NOT deleted")
        }
    return generations, usage


def assert_warehouse_equals_owners(config: WarehouseConfig) -> None:
    """Row for row: the warehouse's live facts are exactly the owners' rows, with their last values."""
    for what, expected, found in zip(
        ("generation", "usage event"), owners_rows(), warehouse_rows(config), strict=False
    ):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        stale = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        assert not (missing or extra or stale), {
            f"{what}s missing": missing[:5],
            f"{what}s extra (duplicated or resurrected)": extra[:5],
            f"{what}s stale": [(k, expected[k], found[k]) for k in stale[:5]],
            "counts": (len(expected), len(found)),
        }


@contextmanager
def following(syncer: Syncer) -> Iterator[list[BaseException]]:
    """The sync following changes in a background thread; yields the list of errors it raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            syncer.follow(stop.is_set)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="warehouse-sync", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(timeout=60)


class SyncProcess:
    """``manage.py warehouse sync --follow`` as a real child process (so a test can SIGKILL it)."""

    def __init__(self, config: WarehouseConfig, *, pause_at: str | None = None) -> None:
        extra = {"WAREHOUSE_DUCKDB_PATH": str(config.duckdb_path), "WAREHOUSE_URL": config.url}
        if pause_at:
            extra["QQ_WAREHOUSE_PAUSE_AT"] = pause_at
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "warehouse", "sync", "--follow"],
            cwd=REPO_ROOT,
            env=child_env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_for(self, text: str, *, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and not any(text in line for line in self.output):
                raise AssertionError(f"warehouse sync exited before {text!r}:\n{''.join(self.output)}")
            return any(text in line for line in self.output)

        wait_until(seen, timeout=timeout, what=f"{text!r} from warehouse sync")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return "".join(self.output)
