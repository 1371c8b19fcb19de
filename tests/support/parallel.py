"""Parallel runs (pytest-xdist, ``-n N``): every worker gets a private embedded stack of its own.

Loaded by ``-p tests.support.parallel`` (pyproject's addopts), it does nothing in a serial run. In an xdist
worker it starts a fresh stack before pytest-django reads the settings, so tests that stop a shard server or
restart the session Redis only ever disturb their own worker.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator

import pytest

from quantumquill.devstack.stack import PROFILES, Stack, private_profile


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Iterator[None]:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        stack = Stack(private_profile(PROFILES["test"], f"run-{os.getpid()}-{worker}"))
        atexit.register(stack.down)
        os.environ.update(stack.up())
    return (yield)
