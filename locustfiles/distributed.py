"""Distributed load generation: one Locust master, N worker processes (here or on other hosts).

One Locust process is one Python interpreter: it uses one core and tops out at
a few hundred simulated users doing real page work. To reach thousands, the
launcher runs a master (the web UI, the shape, the thresholds, every report)
and worker processes that run the users and send their statistics to the
master every few seconds. Workers on other machines join the same master with
``python -m locustfiles.run --master-host MASTER --workers N``.

Our options (account pool, max_tokens, contentgen target...) travel from the
master to the workers with every spawn message, so workers need only the
locustfile and the user classes; the secrets (``CONTENTGEN_TOKEN``,
``QQ_LOAD_PASSWORD``) come from each worker's own environment.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment

DEFAULT_MASTER_PORT = 5557  # Locust's own default


DRAIN, DRAINED = "qq_drain", "qq_drained"  # our messages between master and workers at the end of a run
DRAIN_TIMEOUT = 30.0


def attach_drain(environment: Environment) -> None:
    """Make a headless distributed run count every request its workers made before it ends.

    When a run ends, Locust's master sends "quit" and waits half a second for
    each worker's last statistics; a worker busy finishing its users (on a
    loaded machine, or with long server-sent event streams in flight) reports
    after that, and its last requests are lost from the master's totals. So
    the master first asks every worker to stop its users and say when it has,
    then waits for the workers' next statistics report, and only then quits.
    """
    from locust.runners import MasterRunner, WorkerRunner  # Locust only runs in its own processes

    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def on_drain(environment: Environment, msg: Any, **_kwargs: Any) -> None:
            environment.runner.stop()  # type: ignore[union-attr]  # the users end; their requests are in the stats
            environment.runner.send_message(DRAINED)  # type: ignore[union-attr]

        runner.register_message(DRAIN, on_drain, concurrent=True)
    elif isinstance(runner, MasterRunner):
        drained: set[str] = set()
        runner.register_message(DRAINED, lambda environment, msg, **_kwargs: drained.add(msg.node_id))

        def before_quitting(environment: Environment, **_kwargs: Any) -> None:
            import gevent
            from locust.runners import WORKER_REPORT_INTERVAL

            options = environment.parsed_options
            expected = {client.id for client in runner.clients.all}
            if not expected or not (options and options.headless):
                return  # in the web UI the workers keep reporting after a stop; nothing is lost
            runner.send_message(DRAIN)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while not expected <= drained and time.monotonic() < deadline:
                gevent.sleep(0.2)
            gevent.sleep(WORKER_REPORT_INTERVAL + 1)  # the workers' next report carries their last requests

        environment.events.test_stopping.add_listener(before_quitting)


@dataclass(frozen=True)
class MasterSettings:
    """Where the master listens for workers, and how many it waits for before a headless run starts."""

    bind_host: str = "127.0.0.1"
    port: int = DEFAULT_MASTER_PORT
    expect_workers: int = 1


def master_arguments(settings: MasterSettings, *, headless: bool) -> list[str]:
    """Locust options that make a run the master of ``settings.expect_workers`` workers."""
    arguments = [
        "--master",
        "--master-bind-host",
        settings.bind_host,
        "--master-bind-port",
        str(settings.port),
    ]
    if headless:
        # Without it a headless master starts the shape at once, with whichever workers happen to be connected.
        arguments += ["--expect-workers", str(settings.expect_workers), "--expect-workers-max-wait", "120"]
    return arguments


def worker_request_log(request_log: str, index: int) -> str:
    """Worker ``index``'s own request log next to ``request_log``: ``requests.csv`` -> ``requests.worker2.csv``."""
    path = Path(request_log)
    return str(path.with_name(f"{path.stem}.worker{index}{path.suffix or '.csv'}"))


def worker_command(
    locustfile: Path,
    *,
    master_host: str,
    master_port: int,
    classes: Sequence[str],
    request_log: str = "",
) -> list[str]:
    """A worker process: the master sends it the host, the users to run and our options."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
    ]
    if request_log:
        command += ["--request-log", request_log]
    return [*command, *classes]


@dataclass
class WorkerPool:
    """N local worker processes; ``stop`` ends any that did not leave with their master."""

    commands: list[list[str]]
    cwd: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        for command in self.commands:
            self.processes.append(subprocess.Popen(command, cwd=self.cwd, env=self.env))

    def wait(self) -> int:
        """Wait for every worker to exit (they do when their master quits); the worst exit status."""
        return max((process.wait() for process in self.processes), default=0)

    def stop(self, *, grace: float = 30) -> None:
        """Give the workers ``grace`` seconds to exit after their master, then terminate, then kill them."""
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
