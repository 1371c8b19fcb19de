"""Reading a source table for an initial load into DuckDB with ``psql``, in the load's own snapshot.

PostgreSQL sends a ``COPY ... TO STDOUT`` one message per row. Read through the
Python driver, each message costs the loading process about a microsecond of
CPU (the driver's wait loop, a buffer object, the relay): at a million rows,
a second of CPU on the cores the source backend and DuckDB need. ``psql``
reads the messages in C and writes large blocks into a pipe; the loader
passes blocks of up to a megabyte on to DuckDB's pipe.

``psql`` runs in the load's snapshot: the load's transaction exports it
(``pg_export_snapshot()``) and ``psql`` imports it (``SET TRANSACTION
SNAPSHOT``), so it reads exactly what the load's own connection would read,
and can read again (a load that meets rows already present reads its source
twice).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import WarehouseError

OFF = "off"  # WAREHOUSE_PSQL=off: read through the Python driver
PIPE_BYTES = 1 << 20  # the pipe from psql (64 KiB by default): fewer, larger reads


def find_psql(setting: str) -> str | None:
    """The ``psql`` the initial load runs: the setting's path, else one on PATH, else the embedded stack's.

    Returns None when the setting is ``off`` or no ``psql`` is found (the load then reads through the driver).
    """
    if setting.strip().lower() == OFF:
        return None
    if setting:
        path = shutil.which(setting)
        if path is None:
            raise WarehouseError(
                f"WAREHOUSE_PSQL={setting} is not an executable psql. Install the PostgreSQL client "
                f"(postgresql-client) and point WAREHOUSE_PSQL at its psql, or set WAREHOUSE_PSQL={OFF}."
            )
        return path
    return shutil.which("psql") or _embedded_psql()


def _embedded_psql() -> str | None:
    """The ``psql`` of the embedded stack's PostgreSQL wheel, found without importing the wheel (the apps do not
    import the project's devstack, which locates the same wheel for its servers)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "psql"
    return str(candidate) if os.access(candidate, os.X_OK) else None


class PsqlCopy:
    """``query`` (a ``COPY ... TO STDOUT``) run by ``psql`` in ``snapshot``; ``read()`` hands on what it wrote.

    ``on_rows`` gets the number of rows in each block (CSV: its line ends). A ``psql`` that failed raises when its
    output ends: ``psycopg.OperationalError`` when it could not reach the source (the sync retries that source
    later), ``WarehouseError`` otherwise, with psql's own message. ``close()`` stops a ``psql`` still running,
    which ends its COPY on the source; so does the loading process's death (psql's next write to the pipe fails).
    """

    def __init__(self, psql: str, conninfo: str, snapshot: str, query: str, on_rows: Callable[[int], None]) -> None:
        self._on_rows = on_rows
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
        env = {**os.environ, "PGTZ": "UTC", "PGDATESTYLE": "ISO", "PGAPPNAME": "qq-warehouse-load"}
        password = params.pop("password", None)
        if password is not None:  # not on the command line, where any user of the host can read it
            env["PGPASSWORD"] = password
        self._where = f"{params.get('host', 'localhost')}:{params.get('port', '5432')}/{params.get('dbname', '')}"
        command = [
            psql, "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", make_conninfo(**params),
            "--command", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            "--command", f"SET TRANSACTION SNAPSHOT '{snapshot}'",
            "--command", query,
            "--command", "COMMIT",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdout is not None
        self._out = self._process.stdout.fileno()
        with suppress(OSError):  # above the system's limit (fs.pipe-max-size) the default buffer will do
            fcntl.fcntl(self._out, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        if self._ended:
            return b""
        chunk = os.read(self._out, size if size > 0 else PIPE_BYTES)
        if chunk:
            self._on_rows(chunk.count(b"\n"))
            return chunk
        self._ended = True
        self._finish()
        return b""

    def _finish(self) -> None:
        assert self._process.stderr is not None
        code = self._process.wait()
        if code == 0:
            return
        message = " ".join(self._process.stderr.read().decode(errors="replace").split()) or f"exit status {code}"
        failed = f"Reading {self._where} with psql failed: {message}"
        if code == 2:  # psql: the connection to the server went bad
            raise psycopg.OperationalError(failed)
        raise WarehouseError(failed)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()  # the source sees its client go and ends the COPY
        self._process.wait()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> PsqlCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
