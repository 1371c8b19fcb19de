"""The second Django project of the adoption tests, installed for real in a virtualenv of its own.

``AdoptionSandbox`` builds the toolkit's wheels, creates a fresh virtualenv
holding only them, the example project and its declared dependencies (pinned
as in our requirements), and runs the project's commands there: nothing of
QuantumQuill is on that interpreter's path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PROJECT = HERE / "notebook"
FIXES = HERE / "fixed"
# The example project's own dependencies, at the versions our requirements pin.
PROJECT_DEPENDENCIES = ("Django", "psycopg[binary]", "celery", "pytest", "pytest-django")


def pinned(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each name, read from requirements*.txt (one source for versions)."""
    pins: dict[str, str] = {}
    for path in (REPO_ROOT / "requirements.txt", REPO_ROOT / "requirements-dev.txt"):
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)", line.strip())
            if match:
                pins[match.group(1).lower()] = match.group(2)
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise AssertionError(f"not pinned in requirements*.txt: {missing}")
    return [f"{n}=={pins[n.lower()]}" for n in names]


def database_url_named(base_url: str, name: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr
    stdout: str


class AdoptionSandbox:
    """A virtualenv with the wheels and a copy of the example project, plus a private database for it."""

    def __init__(self, root: Path, server_url: str, dbname: str, shard_servers: dict[str, str] | None = None) -> None:
        self.root = root
        self.venv = root / "venv"
        self.wheels = root / "wheels"
        self.project = root / "notebook"
        self.server_url = server_url
        self.dbname = dbname
        # shard alias -> URL of a database of its own (on another server) for the live-move step
        self.shard_urls = {
            alias: database_url_named(url, f"{dbname}_{alias}") for alias, url in (shard_servers or {}).items()
        }
        self.fixed = False

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def build(self) -> list[Path]:
        """Build the wheels, create the virtualenv and install them with the project's dependencies."""
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "build_dists.py"), "--out", str(self.wheels)],
            check=True,
            capture_output=True,
        )
        wheels = sorted(self.wheels.glob("*.whl"))
        venv.EnvBuilder(with_pip=True, clear=True).create(self.venv)
        self.pip("install", "--quiet", *pinned(PROJECT_DEPENDENCIES), *map(str, wheels))
        shutil.copytree(PROJECT, self.project, ignore=shutil.ignore_patterns("__pycache__"))
        self.pip("install", "--quiet", "--no-deps", str(self.project))
        return wheels

    def apply_fixes(self) -> None:
        """Lay the fixed files over the project copy and reinstall it (once)."""
        if self.fixed:
            return
        self.fixed = True
        for source in FIXES.rglob("*.py"):
            target = self.project / source.relative_to(FIXES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        self.pip("install", "--quiet", "--no-deps", "--force-reinstall", str(self.project))

    def pip(self, *args: str) -> None:
        result = subprocess.run([str(self.python), "-m", "pip", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def env(self, **extra: str) -> dict[str, str]:
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "notebook_site.settings",
                "NOTEBOOK_DATABASE_URL": database_url_named(self.server_url, self.dbname),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 300, **extra_env: str) -> Run:
        """Run ``python ARGS`` in the virtualenv, in the project copy's folder."""
        result = subprocess.run(
            [str(self.python), *args],
            cwd=self.project,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(result.returncode, result.stdout + result.stderr, result.stdout)

    def sharded_env(self) -> dict[str, str]:
        """Settings for the live-move step: the shard databases, and the move engine installed."""
        urls = ",".join(f"{alias}={url}" for alias, url in self.shard_urls.items())
        return {"NOTEBOOK_SHARD_URLS": urls, "NOTEBOOK_MOVES": "1"}

    def _databases(self) -> list[tuple[str, str]]:
        """(server URL, database name) of every database the sandbox may create."""
        found = [(self.server_url, self.dbname), (self.server_url, f"test_{self.dbname}")]
        for url in self.shard_urls.values():
            found.append((url, urlsplit(url).path.lstrip("/")))
        return found

    def popen(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """Start ``python ARGS`` in the virtualenv, in the project copy's folder, in the background."""
        return subprocess.Popen(
            [str(self.python), *args],
            cwd=self.project,
            env=self.env(**extra_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def drop_databases(self) -> None:
        ours = [(url, name) for url, name in self._databases() if name != f"test_{self.dbname}"]
        # Replication state first: a subscription keeps its slot on another server busy.
        for url, name in ours:
            _drop_subscriptions(url, name)
        for url, name in self._databases():
            with psycopg.connect(database_url_named(url, "postgres"), autocommit=True) as conn:
                slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", [name])
                for (slot,) in slots.fetchall():
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_database(self) -> None:
        self.drop_databases()
        for url, name in self._databases():
            if name.startswith("test_"):
                continue
            with psycopg.connect(database_url_named(url, "postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')

    def rows(self, alias: str, sql: str) -> list[tuple[object, ...]]:
        url = database_url_named(self.server_url, self.dbname) if alias == "default" else self.shard_urls[alias]
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())


def _drop_subscriptions(url: str, name: str) -> None:
    with psycopg.connect(database_url_named(url, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
    with psycopg.connect(database_url_named(url, name), autocommit=True) as db:
        subs = db.execute(
            "SELECT subname FROM pg_subscription WHERE subdbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
        for (sub,) in subs:
            db.execute(f'ALTER SUBSCRIPTION "{sub}" DISABLE')
            db.execute(f'ALTER SUBSCRIPTION "{sub}" SET (slot_name = NONE)')
            db.execute(f'DROP SUBSCRIPTION "{sub}"')


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``text`` in ``path`` (the planted problems are found by their code, not by number)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} is not in {path}")
