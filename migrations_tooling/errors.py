"""Errors of the move engine. Each message says what was wrong and what to do next."""

from __future__ import annotations


class MoveError(Exception):
    """A move cannot proceed; the message tells the operator what to do."""


class LeaseHeld(MoveError):
    """Another live process drives this move."""


class LeaseLost(MoveError):
    """This process lost its lease while working (it could not renew it in time)."""


class CutOverAborted(MoveError):
    """A write cut-over gave up before its commit point; traffic stays where it was."""


class FreezeExpired(CutOverAborted):
    """The freeze ran out before the commit point (writes resumed on the old side): retrying can help."""


class LockTimedOut(CutOverAborted):
    """A transaction held the sharded tables longer than the lock timeout: ending it helps, a longer freeze does not."""


class MoveInterrupted(MoveError):
    """The command was asked to stop (SIGINT/SIGTERM) at a safe point; re-running resumes."""


class RowsDiffer(CutOverAborted):
    """Rows of the range differ between the two sides: retrying the cut-over cannot help."""
