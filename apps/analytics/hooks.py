"""Crash points for tests: ``QQ_WAREHOUSE_PAUSE_AT=<step>[,<step>...]`` makes the sync stop there.

It prints ``paused at <step>`` on stderr and sleeps, so a test can SIGKILL it
at a known point. Steps: ``load:copied`` (rows copied, warehouse transaction
not committed), ``load:committed`` (a source loaded and committed, the daily
aggregates of its days not yet recomputed), ``apply:written`` (changes written, not committed),
``apply:committed`` (warehouse committed, source slot not yet advanced).
"""

from __future__ import annotations

import os
import sys
import time


def pause_point(step: str) -> None:
    wanted = os.environ.get("QQ_WAREHOUSE_PAUSE_AT", "")
    if wanted and step in wanted.split(","):
        sys.stderr.write(f"paused at {step}\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get("QQ_WAREHOUSE_PAUSE_SECONDS", "600")))
