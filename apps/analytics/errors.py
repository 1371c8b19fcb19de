from __future__ import annotations


class WarehouseError(Exception):
    """Something an operator can fix; the message says how."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse cannot be reached or opened right now (pages answer 503)."""
