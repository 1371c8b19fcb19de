"""Test hook: make a command pause at a named step so a test can kill it at a deterministic point.

Set ``QQ_MOVE_PAUSE_AT`` to one or more step names (comma separated), for
example ``switch-writes:frozen``; the command prints ``paused at <step>`` on
stderr and sleeps ``QQ_MOVE_PAUSE_SECONDS`` (default 600) there, keeping its
lease alive. Unset (the normal case), ``pause_point`` does nothing. Step names
are listed in docs/data-moves.md ("Crash tests and the pause hook").
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "QQ_MOVE_PAUSE_AT"
PAUSE_SECONDS_ENV = "QQ_MOVE_PAUSE_SECONDS"


def pause_point(step: str) -> None:
    wanted = os.environ.get(PAUSE_ENV, "")
    if not wanted or step not in {name.strip() for name in wanted.split(",")}:
        return
    # stderr on purpose: this is for the test harness, not the operator's output.
    sys.stderr.write(f"paused at {step} (pid {os.getpid()})\n")
    sys.stderr.flush()
    time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "600")))
