"""A port handed to a server is one no outgoing connection on the machine can take before the server binds it.

``bind(0)`` picks from the kernel's ephemeral range, the range every outgoing connection's source port comes
from, so a probed port could be taken by another process's connection (seen as a test server failing to bind
under parallel tests). ``free_port`` draws from below that range instead.
"""

from __future__ import annotations

import socket

import pytest

from quantumquill.devstack.stack import EPHEMERAL_RANGE, free_port


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound() -> None:
    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    assert len(ports) > 1, "drawn at random, so parallel workers rarely probe the same port"
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports.pop()))


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        monkeypatch.setattr("quantumquill.devstack.stack.secrets.choice", lambda _span: taken)
        assert free_port() != taken  # every draw is busy: it falls back to a port the kernel picks
