"""Throwaway (test) servers copy one kept initdb result instead of running initdb for every server of every run.

The copy must be a server of its own: configured like a fresh one (logical replication, no fsync), started
from its own folder, and never changing the template it came from.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from quantumquill.devstack.postgres import PostgresServer, reachable_folder
from quantumquill.devstack.stack import INITDB_TEMPLATES, STATE_ENV, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the servers' unprivileged user can reach: next to this run's own test stack."""
    path = Path(os.environ[STATE_ENV]).parent / "initdb-template-test"
    yield path
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(reachable_folder(path / "templates"), ignore_errors=True)


def test_the_running_test_stack_was_copied_from_the_kept_template_and_configured_like_a_fresh_server() -> None:
    kept = reachable_folder(INITDB_TEMPLATES)  # the clone's own folder, or its place under /var/tmp
    templates = [path for path in kept.glob("initdb-*") if (path / "PG_VERSION").exists()]
    assert templates, f"no initdb template under {kept}"
    # The template stays pristine: the stack's settings went into the copies only.
    assert all("QuantumQuill embedded server" not in (t / "postgresql.conf").read_text() for t in templates)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)


def test_servers_made_side_by_side_from_a_template_not_yet_made_are_independent_servers(folder: Path) -> None:
    templates = folder / "templates"
    servers = [PostgresServer(f"pg{n}", folder / f"pg{n}", free_port()) for n in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # both find no template and race to make it
        list(pool.map(lambda server: server.init(durable=False, template_root=templates), servers))
    try:
        for server in servers:
            assert server.start()
        with psycopg.connect(servers[0].conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE only_on_the_first")
        with psycopg.connect(servers[1].conninfo(), autocommit=True) as conn:
            names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
        assert "only_on_the_first" not in names
        # One template was kept; the loser of the race removed its scratch copy.
        assert [path.name.startswith("initdb-") for path in reachable_folder(templates).iterdir()] == [True]
    finally:
        for server in servers:
            server.stop("immediate")
