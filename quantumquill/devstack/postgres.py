"""Run a private PostgreSQL server from the binaries in the ``pgserver`` wheel."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .preflight import DevstackError, PortInUse, first_unreachable_folder, require_free_port, require_reachable

# PostgreSQL refuses to run as root; pgserver's convention is a system user of this name.
SYSTEM_USER = "pgserver"
SUPERUSER = "postgres"


# Where the server's files go when the project sits in a folder the server's user cannot enter (a clone in
# root's 0700 home, or in a `mktemp -d` folder): a place every user can enter.
REACHABLE_ROOT = Path("/var/tmp/quantumquill")


def _reachable_place(path: Path, kind: str) -> Path:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return REACHABLE_ROOT / f"{kind}-{digest}"


def reachable_folder(path: Path) -> Path:
    """``path``, or a place under REACHABLE_ROOT when the servers' user cannot enter the folders on the way to it."""
    return reachable_place_of(path) if _needs_reachable_place(path.parent) else path


def reachable_place_of(path: Path) -> Path:
    """The folder under REACHABLE_ROOT that stands in for ``path`` when the servers' user cannot reach it."""
    return _reachable_place(path, "data")


def reachable_data_folder(parent: Path) -> Path:
    """Where the servers with data folders in ``parent`` keep their data (``parent`` itself when reachable)."""
    return reachable_place_of(parent) if _needs_reachable_place(parent) else parent


def _needs_reachable_place(path: Path) -> bool:
    owner = _system_user()
    return owner is not None and first_unreachable_folder(path, owner) is not None


# Servers of one stack are set up side by side: one thread at a time copies the binaries or creates the user.
_SETUP_LOCK = threading.RLock()


def _bin_dir() -> Path:
    with _SETUP_LOCK:
        return _locate_bin_dir()


@functools.cache
def _locate_bin_dir() -> Path:
    # Locate the wheel without importing it: its import touches per-user runtime folders we don't use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The pgserver package is not installed; run `pip install -r requirements.txt`.")
    install = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"
    if not _needs_reachable_place(install):
        return install / "bin"
    # The server's user cannot reach the wheel's binaries: run a copy of them (about 40 MB, made once per
    # install), laid out as in site-packages, since the binaries find their libraries at
    # $ORIGIN/../../../pgserver.libs.
    copy = _reachable_place(install, "pginstall")
    if not (copy / ".complete").exists():
        REACHABLE_ROOT.mkdir(parents=True, exist_ok=True)
        REACHABLE_ROOT.chmod(0o755)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(install, copy / "pgserver" / "pginstall", symlinks=True)
        libs = install.parent.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / "pgserver.libs", symlinks=True)
        (copy / ".complete").touch()
    return copy / "pgserver" / "pginstall" / "bin"


def _system_user() -> str | None:
    """The user PostgreSQL runs as: ourselves, or a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return None
    with _SETUP_LOCK:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
            )
    return SYSTEM_USER


@dataclass(frozen=True)
class PostgresServer:
    """One PostgreSQL server process listening on 127.0.0.1:``port``."""

    name: str
    data_dir: Path
    port: int

    @property
    def pg_dir(self) -> Path:
        """The server's data folder: ``data_dir``, or a place its user can reach when ``data_dir`` is not."""
        return reachable_data_folder(self.data_dir.parent) / self.name

    @property
    def log_file(self) -> Path:
        return self.pg_dir.parent / f"{self.name}.log"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=3"

    def url(self, dbname: str) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_bin_dir() / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=_system_user(),
        )

    def _check_reachable(self) -> None:
        """As root the server runs as an unprivileged user: it must be able to reach binaries and data."""
        owner = _system_user()
        if owner:
            require_reachable(_bin_dir(), owner, "its binaries")
            require_reachable(self.pg_dir.parent, owner, "its data folder")

    def init(self, *, durable: bool, template_root: Path | None = None) -> None:
        """Create the data folder once, configured for logical replication.

        ``template_root``: a folder keeping one pristine ``initdb`` result, copied instead of running initdb
        again (for throwaway servers: initdb is seconds of CPU on a busy machine, a copy is a fraction of it).
        """
        self._check_reachable()
        if (self.pg_dir / "PG_VERSION").exists():
            return
        owner = _system_user()
        # (In a clone the servers' user cannot enter, the template lives where the data folders do.)
        if template_root is not None:
            self._copy_of(self._initdb_template(reachable_folder(template_root)))
        else:
            self.pg_dir.mkdir(parents=True, exist_ok=True)
            if owner:
                shutil.chown(self.pg_dir, user=owner, group=owner)
                shutil.chown(self.pg_dir.parent, user=owner, group=owner)
            self._initdb(self.pg_dir, sync=durable)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.pg_dir}'",
            # Live data moves use logical replication (publications with row filters).
            "wal_level": "logical",
            "max_wal_senders": "40",
            "max_replication_slots": "40",
            "max_logical_replication_workers": "16",
            "max_worker_processes": "24",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "wal_sender_timeout": "10s",
            "wal_receiver_status_interval": "1s",
        }
        if not durable:
            # Test servers trade crash safety for speed; their data is thrown away. An exited logical replication
            # worker (a table copy that failed until its test fixed the cause) starts again after 200 ms, not 5 s.
            settings.update(
                {
                    "fsync": "off",
                    "synchronous_commit": "off",
                    "full_page_writes": "off",
                    "wal_retrieve_retry_interval": "200ms",
                }
            )
        with (self.pg_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# QuantumQuill embedded server\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        with (self.pg_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def init_replica_of(self, primary: PostgresServer) -> None:
        """Create the data folder as a streaming replica of the running ``primary`` (``pg_basebackup -R``).

        ``start`` then runs it as a hot standby that reports itself as ``name`` in the primary's
        ``pg_stat_replication``.
        """
        self._check_reachable()
        if (self.pg_dir / "PG_VERSION").exists():
            return
        self.pg_dir.parent.mkdir(parents=True, exist_ok=True)
        owner = _system_user()
        if owner:
            shutil.chown(self.pg_dir.parent, user=owner, group=owner)
        self._pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER,
                 "-D", str(self.pg_dir), "-R", "-X", "stream", "-c", "fast", "--no-sync", timeout=300)  # fmt: skip
        with (self.pg_dir / "postgresql.conf").open("a") as conf:  # later lines win over the primary's
            conf.write(f"\n# QuantumQuill replica of {primary.name}\nport = {self.port}\n")
            conf.write(f"unix_socket_directories = '{self.pg_dir}'\ncluster_name = '{self.name}'\n")

    def _initdb(self, target: Path, *, sync: bool) -> None:
        # --no-sync skips initdb's final fsync of every file: pointless for a server thrown away after a run.
        options = [] if sync else ["--no-sync"]
        self._pg("initdb", "-D", str(target), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C",
                 *options)  # fmt: skip

    def _initdb_template(self, root: Path) -> Path:
        """The pristine initdb result for these binaries under ``root``, made on first use.

        Made in a folder of its own and renamed into place, so runs starting together never see half a template.
        """
        initdb = _bin_dir() / "initdb"
        key = hashlib.sha1(f"{initdb.resolve()}:{initdb.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        template = root / f"initdb-{key}"
        if (template / "PG_VERSION").exists():
            return template
        owner = _system_user()
        root.mkdir(parents=True, exist_ok=True)
        if owner:
            shutil.chown(root, user=owner, group=owner)
        scratch = root / f".initdb-{key}-{os.getpid()}-{threading.get_ident()}"
        self._initdb(scratch, sync=False)
        try:
            scratch.rename(template)
        except OSError:  # another run put its template there first: use that one
            shutil.rmtree(scratch, ignore_errors=True)
        return template

    def _copy_of(self, template: Path) -> None:
        """Copy ``template`` to the data folder as the server's user (it owns the copy, as initdb would)."""
        self.pg_dir.parent.mkdir(parents=True, exist_ok=True)
        owner = _system_user()
        if owner:
            shutil.chown(self.pg_dir.parent, user=owner, group=owner)
        subprocess.run(["cp", "-a", str(template), str(self.pg_dir)], check=True, capture_output=True, user=owner)

    def is_running(self) -> bool:
        try:
            self._pg("pg_ctl", "status", "-D", str(self.pg_dir), timeout=10)
        except subprocess.CalledProcessError:
            return False
        return True

    def start(self) -> bool:
        """Start the server unless it runs already; True when this call started it."""
        self._check_reachable()
        if self.is_running():
            return False
        server = f"PostgreSQL server {self.name}"
        require_free_port(self.port, server)
        # The log lives outside the data folder, writable by the server's user.
        self.log_file.touch(exist_ok=True)
        owner = _system_user()
        if owner:
            shutil.chown(self.log_file, user=owner, group=owner)
        seen = self.log_file.stat().st_size
        try:
            # -p: the port chosen now wins over the one written at init (a test stack picks a new one on a clash).
            self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pg_dir), "-l", str(self.log_file),
                     "-o", f"-p {self.port}")  # fmt: skip
        except subprocess.CalledProcessError:
            with self.log_file.open(errors="replace") as log:
                log.seek(seen)
                problem = log.read()
            if "Address already in use" in problem:
                raise PortInUse(self.port, server) from None
            last = next((line for line in reversed(problem.splitlines()) if line.strip()), "no log output")
            raise DevstackError(
                f"The embedded {server} did not start: {last.strip()} (log: {self.log_file})."
            ) from None
        self.wait_ready()
        return True

    def postmaster_pid(self) -> int | None:
        """The server's main process (first line of ``postmaster.pid``), or None when it is not running."""
        try:
            return int((self.pg_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        if not self.is_running():
            return
        self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.pg_dir))

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.conninfo(), autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def ensure_database(self, dbname: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{dbname}"')
