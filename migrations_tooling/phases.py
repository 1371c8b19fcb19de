"""The move's state machine: its phases, what each command may do in which phase, and the diagram.

One table (``ACTIONS``) says, for every command that acts on a move, which
phases it runs in and which phase it leaves the move in; which phases mean it
has nothing left to do; and, for the phases where it is refused, what the
operator should do instead. ``require_phase`` is the one check every command
makes, ``sources`` gives the conditional update of a phase change its
expected phases, and ``mermaid`` draws the diagram in docs/data-moves.md
(``manage.py shardmove phases`` prints it; a test keeps the page equal to it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import MoveError
from .models import MoveRange, Phase

DOC_BEGIN = (
    "<!-- phases: generated from migrations_tooling/phases.py by "
    "`manage.py shardmove phases --update-doc docs/data-moves.md`; do not edit -->"
)
DOC_END = "<!-- end of phases -->"


@dataclass(frozen=True)
class Action:
    """What one command does to a move's phase."""

    name: str
    # phase the command runs in -> phase it leaves the move in (the same phase: it changes none).
    moves: Mapping[Phase, Phase]
    # phases in which the command has nothing to do (it says so and succeeds).
    done: frozenset[Phase] = frozenset()
    # phase -> why the command is refused there and what to run instead ({id}, {source}, {target}).
    refusals: Mapping[Phase, str] = field(default_factory=dict)
    # drawn in the diagram (a command that changes no phase is not).
    drawn: bool = True

    def advice(self, move: MoveRange) -> str:
        phase = Phase(move.phase)
        template = self.refusals.get(phase)
        if template is None:
            allowed = ", ".join(p.value for p in self.moves)
            template = f"Move {{id}} is {phase.value}; `{self.name}` only runs in phase(s) {allowed}."
        return template.format(id=move.id, source=move.source, target=move.target, phase=phase.value)


_STILL_COPYING = "Move {id} is still copying; {what} once `shardmove status {id}` shows catching_up."
_ENDED = "Move {id} is {phase}; there is nothing to {what} any more."

COPY_FINISHED = Action("copy finished", {Phase.COPYING: Phase.CATCHING_UP})

SWITCH_READS = Action(
    "switch-reads",
    {Phase.CATCHING_UP: Phase.READS_SWITCHED, Phase.ROLLED_BACK: Phase.READS_SWITCHED},
    done=frozenset({Phase.READS_SWITCHED, Phase.WRITES_SWITCHED}),
    refusals={
        Phase.COPYING: _STILL_COPYING.replace("{what}", "switch reads"),
        Phase.COMPLETE: "Move {id} is complete; its reads cannot be switched any more.",
        Phase.CANCELLED: "Move {id} is cancelled; its reads cannot be switched any more.",
    },
)

SWITCH_READS_BACK = Action(
    "switch-reads --back",
    {Phase.READS_SWITCHED: Phase.CATCHING_UP},
    done=frozenset({Phase.COPYING, Phase.CATCHING_UP, Phase.ROLLED_BACK}),
    refusals={
        Phase.WRITES_SWITCHED: "Move {id} has switched writes too; `shardmove rollback {id}` brings reads and "
        "writes back.",
        Phase.COMPLETE: "Move {id} is complete; its reads cannot be switched any more.",
        Phase.CANCELLED: "Move {id} is cancelled; its reads cannot be switched any more.",
    },
)

SWITCH_WRITES = Action(
    "switch-writes",
    {Phase.READS_SWITCHED: Phase.WRITES_SWITCHED},
    done=frozenset({Phase.WRITES_SWITCHED}),
    refusals={
        phase: "Move {id} still reads from {source}: switch reads first (`shardmove switch-reads {id}`), check the "
        "application, then switch writes."
        for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.ROLLED_BACK)
    }
    | {phase: _ENDED.replace("{what}", "switch") for phase in (Phase.COMPLETE, Phase.CANCELLED)},
)

ROLLBACK = Action(
    "rollback",
    # Before the write cut-over, a rollback is `switch-reads --back`.
    {Phase.READS_SWITCHED: Phase.CATCHING_UP, Phase.WRITES_SWITCHED: Phase.ROLLED_BACK},
    refusals={
        phase: "Move {id} has nothing to roll back: reads and writes are on {source}. `shardmove cancel {id}` "
        "abandons the move and removes the copy."
        for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.ROLLED_BACK)
    }
    | {
        phase: "Move {id} is {phase}; it can no longer be rolled back (move the range back with a new move)."
        for phase in (Phase.COMPLETE, Phase.CANCELLED)
    },
)

COMPLETE = Action(
    "complete",
    {Phase.WRITES_SWITCHED: Phase.COMPLETE},
    done=frozenset({Phase.COMPLETE}),
    refusals={
        phase: "Move {id} is {phase}: complete deletes the rows from {source}, which is only safe once writes go to "
        "{target}. Run `shardmove switch-reads {id}` and `shardmove switch-writes {id}` first."
        for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.READS_SWITCHED, Phase.ROLLED_BACK)
    }
    | {Phase.CANCELLED: "Move {id} is cancelled; there is nothing to complete. Start a new move."},
)

CANCEL = Action(
    "cancel",
    {
        Phase.COPYING: Phase.CANCELLED,
        Phase.CATCHING_UP: Phase.CANCELLED,
        Phase.READS_SWITCHED: Phase.CANCELLED,
        Phase.ROLLED_BACK: Phase.CANCELLED,
    },
    done=frozenset({Phase.CANCELLED}),
    refusals={
        Phase.WRITES_SWITCHED: "Move {id} has switched writes to {target}; cancelling now would lose them. Run "
        "`shardmove rollback {id}` first (then cancel), or `shardmove complete {id}` to keep the move.",
        Phase.COMPLETE: "Move {id} is complete; to move the range back, start a new move to {source}.",
    },
)

VERIFY = Action(
    "verify",
    {phase: phase for phase in (Phase.CATCHING_UP, Phase.READS_SWITCHED, Phase.WRITES_SWITCHED, Phase.ROLLED_BACK)},
    refusals={Phase.COPYING: _STILL_COPYING.replace("{what}", "verify")}
    | {phase: _ENDED.replace("{what}", "compare") for phase in (Phase.COMPLETE, Phase.CANCELLED)},
    drawn=False,
)

# `migrate_shards --on-ddl stop`: replication stops and the copy on the target is discarded, so the schema can
# change on both sides; the copy restarts afterwards. Only while reads and writes are on the source.
PAUSE_FOR_DDL = Action(
    "migrate_shards --on-ddl stop",
    {Phase.COPYING: Phase.COPYING, Phase.CATCHING_UP: Phase.COPYING, Phase.ROLLED_BACK: Phase.COPYING},
    refusals={
        Phase.READS_SWITCHED: "Move {id} reads from {target}: stopping its replication would serve stale rows. Run "
        "`manage.py shardmove switch-reads {id} --back` first, then migrate with --on-ddl stop.",
        Phase.WRITES_SWITCHED: "Move {id} writes to {target}. Run `manage.py shardmove rollback {id}` first (then "
        "migrate with --on-ddl stop), or finish it with `manage.py shardmove complete {id}` and migrate after.",
        Phase.COMPLETE: "Move {id} is complete; nothing to pause.",
        Phase.CANCELLED: "Move {id} is cancelled; nothing to pause.",
    },
)
# The step of a move paused for a schema change (phase copying, no copy running); a re-run of
# `migrate_shards` (or `shardmove start`) restarts its copy.
PAUSED_FOR_DDL = "paused for a schema change"

ACTIONS: tuple[Action, ...] = (
    COPY_FINISHED,
    SWITCH_READS,
    SWITCH_READS_BACK,
    SWITCH_WRITES,
    ROLLBACK,
    COMPLETE,
    CANCEL,
    VERIFY,
    PAUSE_FOR_DDL,
)
INITIAL = Phase.COPYING  # what `start` creates
FINAL = (Phase.COMPLETE, Phase.CANCELLED)


def require_phase(move: MoveRange, action: Action) -> Phase | None:
    """The phase ``action`` leaves ``move`` in; None if it has nothing to do; MoveError if it may not run now."""
    phase = Phase(move.phase)
    if phase in action.done:
        return None
    if phase in action.moves:
        return action.moves[phase]
    raise MoveError(action.advice(move))


def sources(action: Action, to: Phase) -> tuple[Phase, ...]:
    """The phases from which ``action`` reaches ``to`` (the expected phases of the conditional update)."""
    return tuple(phase for phase, after in action.moves.items() if after == to)


def transitions() -> list[tuple[Phase, Phase, str]]:
    """Every phase change the engine makes: (from, to, command)."""
    return [
        (before, after, action.name)
        for action in ACTIONS
        if action.drawn
        for before, after in action.moves.items()
        if before != after
    ]


def mermaid() -> str:
    """The phase diagram (a mermaid state diagram), drawn from the table above."""
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL.value}: start"]
    lines += [f"    {before.value} --> {after.value}: {name}" for before, after, name in transitions()]
    lines += [f"    {phase.value} --> [*]" for phase in FINAL]
    return "\n".join(lines) + "\n"


def doc_section() -> str:
    """The diagram as it appears in docs/data-moves.md, between its markers."""
    return f"{DOC_BEGIN}\n```mermaid\n{mermaid()}```\n{DOC_END}"


_SECTION = re.compile(re.escape(DOC_BEGIN) + r".*?" + re.escape(DOC_END), re.DOTALL)


def update_doc(text: str) -> str:
    """``text`` with its generated phase diagram replaced by the current one."""
    if not _SECTION.search(text):
        raise MoveError(f"The page has no generated phase diagram: add a line {DOC_BEGIN!r} and one {DOC_END!r}.")
    return _SECTION.sub(lambda _match: doc_section(), text, count=1)


# What an operator runs next in each phase ({id}: the move). The console and `--format json` show these.
NEXT_STEPS: Mapping[Phase, tuple[str, ...]] = {
    Phase.COPYING: ("manage.py shardmove refresh {id}", "manage.py shardmove status {id} --watch"),
    Phase.CATCHING_UP: ("manage.py shardmove verify {id}", "manage.py shardmove switch-reads {id}"),
    Phase.READS_SWITCHED: (
        "manage.py shardmove switch-writes {id} --dry-run",
        "manage.py shardmove switch-writes {id}",
    ),
    Phase.WRITES_SWITCHED: ("manage.py shardmove complete {id} --dry-run", "manage.py shardmove complete {id}"),
    Phase.ROLLED_BACK: ("manage.py shardmove switch-reads {id}", "manage.py shardmove cancel {id}"),
    Phase.COMPLETE: (),
    Phase.CANCELLED: (),
}


def next_steps(move: MoveRange) -> list[str]:
    """The exact commands an operator would run next for ``move``, most likely first."""
    step = move.step or ""
    if step == PAUSED_FOR_DDL and Phase(move.phase) == Phase.COPYING:
        return ["manage.py migrate_shards --plan", "manage.py migrate_shards"]
    for ending in ("complete", "cancel"):
        if Phase(move.phase) not in FINAL and step.startswith(ending):
            return [f"manage.py shardmove {ending} {move.id}"]  # an interrupted ending is finished by re-running it
    return [command.format(id=move.id) for command in NEXT_STEPS[Phase(move.phase)]]
