"""Signals other code can listen to (metrics), so the toolkit depends on no monitoring library."""

from __future__ import annotations

from django.dispatch import Signal

# Sent each time a write is refused by a frozen (``reason="frozen"``) or moved (``"moved"``) range and
# retried; keyword arguments ``alias`` (the database that refused it) and ``reason``.
write_retried = Signal()
