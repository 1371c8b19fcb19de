"""Checks before the embedded servers start, so a newcomer gets one line naming the cause and the fix.

Two things break a first ``make run`` that the servers themselves report badly:

- a port already taken (another ``make run``, from this clone or another, or any other program): PostgreSQL's
  ``pg_ctl`` only exits non-zero, and a Redis started on a port another Redis answers would silently share it;
- a clone inside a folder only root can enter (a root home, mode 0700): PostgreSQL refuses to run as root, so
  as root it runs as the unprivileged ``pgserver`` user, which then cannot reach its binaries or data folder.
"""

from __future__ import annotations

import grp
import pwd
import socket
import stat
import time
from pathlib import Path


class DevstackError(Exception):
    """Something stops the embedded stack from starting; the message says what and what to do, in one line."""


class PortInUse(DevstackError):
    def __init__(self, port: int, server: str) -> None:
        self.port = port
        self.server = server
        super().__init__(
            f"Port {port} is already in use, so the embedded {server} cannot start on it. Another `make run` "
            f"(from this clone or another) or another program is listening there: find it with "
            f"`ss -ltnp 'sport = :{port}'` and stop it (`python -m quantumquill.devstack down` stops this "
            "clone's servers), then try again."
        )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (a socket in TIME_WAIT does not count as taken)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, server: str, *, grace: float = 2.0) -> None:
    """Raise PortInUse unless ``port`` is free, or frees up within ``grace`` seconds (a server just stopped)."""
    deadline = time.monotonic() + grace
    while not port_is_free(port):
        if time.monotonic() > deadline:
            raise PortInUse(port, server)
        time.sleep(0.05)


def first_unreachable_folder(path: Path, user: str) -> Path | None:
    """The first folder on the way to ``path`` that ``user`` may not enter (no search permission), or None."""
    account = pwd.getpwnam(user)
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            return None  # created later, by us, with the right owner
        if not stat.S_ISDIR(info.st_mode):
            continue
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def require_reachable(path: Path, user: str, what: str) -> None:
    """Fail in one line when ``user`` (the server's unprivileged account) cannot reach ``path``."""
    blocked = first_unreachable_folder(path, user)
    if blocked is None:
        return
    mode = stat.S_IMODE(blocked.stat().st_mode)
    owner = pwd.getpwuid(blocked.stat().st_uid).pw_name
    raise DevstackError(
        f"The embedded PostgreSQL runs as the unprivileged user {user!r} (PostgreSQL refuses to run as root), "
        f"which cannot enter {blocked} (mode {mode:04o}, owner {owner}) to reach {what} ({path}). "
        f"Clone the project into a folder every user can enter (for example /srv/quantumquill), "
        f"or let that user through with `chmod o+x {blocked}`."
    )
