"""Each setting is declared in one place: the app lists are written out once, never patched afterwards."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "quantumquill" / "settings.py"
DECLARED_ONCE = {"INSTALLED_APPS", "SHARDROUTER", "CONTENTGEN"}


def changes_after_declaration(tree: ast.Module) -> list[str]:
    """Lines that assign to, or call a method of, a setting in DECLARED_ONCE after its declaration."""
    found: list[str] = []
    declared: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                base = target
                while isinstance(base, ast.Subscript | ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in DECLARED_ONCE:
                    if base is target and base.id not in declared and not isinstance(node, ast.AugAssign):
                        declared.add(base.id)
                    else:
                        found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in DECLARED_ONCE:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_app_lists_and_the_router_settings_are_declared_once_and_never_patched() -> None:
    assert changes_after_declaration(ast.parse(SETTINGS_FILE.read_text())) == []


def test_the_check_finds_a_patched_app_list() -> None:
    patched = ast.parse('INSTALLED_APPS = ["a"]\nINSTALLED_APPS.append("b")\nSHARDROUTER = {}\nSHARDROUTER["X"] = 1\n')
    assert len(changes_after_declaration(patched)) == 2


def test_the_storage_app_overrides_collectstatic_and_exports_live_on_the_shards() -> None:
    apps = settings.INSTALLED_APPS
    assert apps.index("apps.storage") < apps.index("django.contrib.staticfiles")
    assert "apps.exports" in apps
    assert settings.SHARDROUTER["SHARDED_APPS"] == ["content", "exports"]
