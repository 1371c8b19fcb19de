"""The move's state machine: one table decides what each command may do, and the runbook's diagram is drawn from it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from migrations_tooling import phases
from migrations_tooling.errors import MoveError
from migrations_tooling.models import MoveRange, Phase
from quantumquill.devstack.stack import REPO_ROOT

DOC = Path(REPO_ROOT) / "docs" / "data-moves.md"


def a_move(phase: Phase) -> MoveRange:
    return MoveRange(id=7, lo=0, hi=500, source="shard1", target="shard3", phase=phase)


def test_the_phase_diagram_in_the_runbook_is_the_one_drawn_from_the_table() -> None:
    assert phases.doc_section() in DOC.read_text(), (
        "docs/data-moves.md is out of date: run `manage.py shardmove phases --update-doc docs/data-moves.md`"
    )


def test_the_phases_command_prints_the_diagram_and_updates_a_page(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("shardmove", "phases", stdout=out)
    assert out.getvalue() == phases.mermaid()
    assert "    writes_switched --> rolled_back: rollback\n" in out.getvalue()

    page = tmp_path / "moves.md"
    page.write_text(f"# Moves\n\n{phases.DOC_BEGIN}\nan old diagram\n{phases.DOC_END}\n\nthe rest\n")
    call_command("shardmove", "phases", "--update-doc", str(page), stdout=io.StringIO())
    assert page.read_text() == f"# Moves\n\n{phases.doc_section()}\n\nthe rest\n"
    page.write_text("no markers here\n")
    with pytest.raises(CommandError, match="has no generated phase diagram"):
        call_command("shardmove", "phases", "--update-doc", str(page), stdout=io.StringIO())


@pytest.mark.parametrize("action", phases.ACTIONS, ids=lambda a: a.name)
def test_every_command_either_runs_has_nothing_to_do_or_is_refused_with_advice(action: phases.Action) -> None:
    for phase in Phase:
        move = a_move(phase)
        if phase in action.moves:
            assert phases.require_phase(move, action) == action.moves[phase]
            assert phase in phases.sources(action, action.moves[phase])
        elif phase in action.done:
            assert phases.require_phase(move, action) is None
        else:
            with pytest.raises(MoveError, match="Move 7"):
                phases.require_phase(move, action)


REFUSALS = [
    (phases.SWITCH_WRITES, Phase.CATCHING_UP, "switch reads first (`shardmove switch-reads 7`)"),
    (phases.COMPLETE, Phase.READS_SWITCHED, "`shardmove switch-reads 7` and `shardmove switch-writes 7` first"),
    (phases.ROLLBACK, Phase.CATCHING_UP, "nothing to roll back"),
    (phases.ROLLBACK, Phase.COMPLETE, "can no longer be rolled back"),
    (phases.CANCEL, Phase.WRITES_SWITCHED, "`shardmove rollback 7` first"),
    (phases.VERIFY, Phase.COPYING, "still copying"),
    (phases.SWITCH_READS_BACK, Phase.WRITES_SWITCHED, "`shardmove rollback 7` brings reads and writes back"),
]


def test_a_refusal_names_the_step_to_take() -> None:
    for action, phase, advice in REFUSALS:
        with pytest.raises(MoveError) as refused:
            phases.require_phase(a_move(phase), action)
        assert advice in str(refused.value), (action.name, phase)


def test_every_phase_is_reachable_and_only_the_final_ones_are_dead_ends() -> None:
    edges = phases.transitions()
    reachable = {phases.INITIAL} | {after for _, after, _ in edges}
    assert reachable == set(Phase)
    leaving = {before for before, _, _ in edges}
    assert set(Phase) - leaving == set(phases.FINAL)
