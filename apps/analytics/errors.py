from __future__ import annotations


class WarehouseError(Exception):
    """Something an operator can fix; the message says how."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse cannot be reached or opened right now (pages answer 503)."""


class RowsPresent(Exception):
    """A load found rows already in the warehouse; it is done again, skipping them (not an error to report)."""
