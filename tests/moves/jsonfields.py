"""The JSON fields documented in docs/data-moves.md, read from its tables, and a check of output against them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-moves.md"
_MARK = re.compile(r"<!-- json-fields: (.+?) -->")
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list,),
    "list of str": (list,),
    "object": (dict,),
}


def documented_fields() -> dict[str, dict[str, str]]:
    """command -> {field: documented type} for every table marked ``<!-- json-fields: command -->``."""
    out: dict[str, dict[str, str]] = {}
    command = ""
    for line in DOC.read_text().splitlines():
        mark = _MARK.search(line)
        if mark:
            command = mark.group(1)
            out[command] = {}
            continue
        if not command or not line.startswith("| `"):
            if command and out[command] and not line.startswith("|"):
                command = ""
            continue
        names_cell, type_cell = line.split("|")[1:3]
        names = re.findall(r"`([a-z_]+)`", names_cell)
        types = [t.strip() for t in type_cell.split(",")] if type_cell.strip() else []
        for n, name in enumerate(names):
            out[command][name] = types[n] if len(types) == len(names) else (types[0] if len(types) == 1 else "")
    return out


def _type_ok(value: Any, documented: str) -> bool:
    if not documented or documented.startswith("as in"):
        return True
    nullable = documented.endswith(" or null")
    base = documented.removesuffix(" or null")
    if value is None:
        return nullable
    if base == "int" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[base])


def check_fields(command: str, data: dict[str, Any], fields: dict[str, dict[str, str]]) -> None:
    """``data`` has exactly the documented fields of ``command``, each of its documented type."""
    documented = fields[command]
    if "as in `status`" in documented.values() or any(t.startswith("as in") for t in documented.values()):
        reference = fields["shardmove status"]
        documented = {k: (reference.get(k, "") if v.startswith("as in") else v) for k, v in documented.items()}
    assert set(data) == set(documented), (
        f"{command}: undocumented {sorted(set(data) - set(documented))}, missing {sorted(set(documented) - set(data))}"
    )
    wrong = {k: (v, documented[k]) for k, v in data.items() if not _type_ok(v, documented[k])}
    assert not wrong, f"{command}: fields of the wrong type: {wrong}"
    assert all(isinstance(step, str) and step for step in data["next_steps"])
