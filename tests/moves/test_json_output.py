"""`--format json` of shardmove and shardmap holds to the fields docs/data-moves.md documents, with next steps that run."""

from __future__ import annotations

import io
import json
import shlex
from typing import Any

import pytest
from django.core.management import call_command

from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES
from tests.moves.jsonfields import check_fields, documented_fields
from tests.moves.support import Ledger, latest_move, seed, shardmove, wait_for_phase

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def shardmap(*args: str) -> Any:
    out = io.StringIO()
    call_command("shardmap", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_every_documented_command_is_documented_with_fields() -> None:
    fields = documented_fields()
    for command in ("status", "list", "plan"):
        assert fields[f"shardmove {command}"], command
    for command in ("show", "validate", "advise"):
        assert fields[f"shardmap {command}"], command
    assert all("next_steps" in table for table in fields.values())


def test_json_output_has_the_documented_fields_and_its_next_steps_are_the_commands_to_run() -> None:
    fields = documented_fields()
    seed(Ledger(), "shard1", [10, 20, 30], per_user=10)
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()

    copying = json.loads(shardmove("status", str(move.id), "--format", "json"))
    check_fields("shardmove status", copying, fields)
    assert copying["phase"] == "copying"
    assert copying["next_steps"][0] in (
        f"manage.py shardmove refresh {move.id}",
        f"manage.py shardmove status {move.id}",
    )

    wait_for_phase(move.id, "catching_up")
    status = json.loads(shardmove("status", str(move.id), "--format", "json"))
    check_fields("shardmove status", status, fields)
    assert status["rows_copied"] == 60 and status["lag_bytes"] is not None
    assert status["next_steps"] == [
        f"manage.py shardmove verify {move.id}",
        f"manage.py shardmove switch-reads {move.id}",
    ]
    assert json.loads(shardmove("status", str(move.id), "--json"))["id"] == move.id  # the old flag still works
    listed = json.loads(shardmove("status", "--all", "--format", "json"))
    assert [item["id"] for item in listed] == [move.id]

    moves = json.loads(shardmove("list", "--format", "json"))
    assert [m["id"] for m in moves] == [move.id]
    check_fields("shardmove list", moves[0], fields)
    assert moves[0]["phase"] == "catching_up" and moves[0]["age_seconds"] > 0
    text = shardmove("list").split()
    assert text[text.index("[0,") - 1] == str(move.id) and "catching_up" in text  # the text form lists it too

    # The next steps are exact commands: running them moves the move on.
    for step in status["next_steps"]:
        words = shlex.split(step)
        assert words[:2] == ["manage.py", "shardmove"]
        shardmove(*words[2:])
    after = json.loads(shardmove("status", str(move.id), "--format", "json"))
    assert after["phase"] == "reads_switched" and after["verified"].startswith("run ")
    assert after["next_steps"][-1] == f"manage.py shardmove switch-writes {move.id}"

    plan = json.loads(shardmove("plan", "500", "1000", "--to", "shard3", "--format", "json"))
    check_fields("shardmove plan", plan, fields)
    assert plan["next_steps"] == ["manage.py shardmove start 500 1000 --to shard3 --wait"]
    assert plan["rows_total"] == sum(t["rows"] for t in plan["tables"])

    version = load_map_from_database().version
    shown = shardmap("show", "--rows", "--format", "json")
    check_fields("shardmap show", shown, fields)
    assert shown["version"] == version
    assert [(r["lo"], r["alias"], r["read_alias"]) for r in shown["ranges"]][:2] == [
        (0, "shard1", "shard3"),
        (500, "shard1", "shard1"),
    ]
    assert shown["ranges"][0]["rows"] == 60  # [0, 500) counted where its writes go: all 30 generations + events
    valid = shardmap("validate", "--format", "json")
    check_fields("shardmap validate", valid, fields)
    assert valid["valid"] is True and valid["databases"] == {"shard1": True, "shard2": True, "shard3": True}
    advice = shardmap("advise", "--format", "json")
    check_fields("shardmap advise", advice, fields)
    assert load_map_from_database().version == version  # show, validate and advise change nothing
