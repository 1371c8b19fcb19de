"""The next steps shown for each phase are commands the state machine accepts in that phase."""

from __future__ import annotations

import shlex

from migrations_tooling import phases
from migrations_tooling.models import MoveRange, Phase

BY_NAME = {
    "switch-reads": phases.SWITCH_READS,
    "switch-writes": phases.SWITCH_WRITES,
    "complete": phases.COMPLETE,
    "cancel": phases.CANCEL,
    "verify": phases.VERIFY,
}
READ_ONLY = {"status", "refresh"}


def test_every_next_step_is_allowed_in_its_phase_and_only_final_phases_have_none() -> None:
    for phase in Phase:
        move = MoveRange(id=7, lo=0, hi=10, source="a", target="b", phase=phase)
        steps = phases.next_steps(move)
        assert bool(steps) == (phase not in phases.FINAL), phase
        for step in steps:
            words = shlex.split(step)
            assert words[:2] == ["manage.py", "shardmove"] and "7" in words, step
            if words[2] in READ_ONLY:
                continue
            assert phases.require_phase(move, BY_NAME[words[2]]) is not None or phase in BY_NAME[words[2]].moves, step


def test_an_interrupted_ending_is_finished_by_running_it_again() -> None:
    move = MoveRange(id=3, lo=0, hi=10, source="a", target="b", phase=Phase.WRITES_SWITCHED, step="complete: deleting")
    assert phases.next_steps(move) == ["manage.py shardmove complete 3"]
    move = MoveRange(id=3, lo=0, hi=10, source="a", target="b", phase=Phase.CATCHING_UP, step="cancel: dropped")
    assert phases.next_steps(move) == ["manage.py shardmove cancel 3"]
