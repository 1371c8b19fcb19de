"""Parallel runs (pytest-xdist, ``-n N``): every worker gets a private embedded stack of its own.

Loaded by ``-p tests.support.parallel`` (pyproject's addopts), it does nothing in a serial run. In an xdist
worker it starts a fresh stack before pytest-django reads the settings, so tests that stop a shard server or
restart the session Redis only ever disturb their own worker. The stack stops in ``pytest_unconfigure``,
while the interpreter can still start the threads that stop the servers side by side (an ``atexit`` handler
runs too late for that and left every worker's servers running).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from quantumquill.devstack.stack import PROFILES, Stack, private_profile

_stacks: list[Stack] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Iterator[None]:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        stack = Stack(private_profile(PROFILES["test"], f"run-{os.getpid()}-{worker}"))
        _stacks.append(stack)
        os.environ.update(stack.up())
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    while _stacks:
        _stacks.pop().discard()
