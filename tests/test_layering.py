"""Imports point one way: platform (quantumquill/) above apps/, apps/ above the toolkit, and no cycles.

Read from the source (every import statement, at module level or inside a function), so a cycle cannot hide
behind an import moved into a function.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLKIT = ("shardrouter", "migrations_tooling")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``path``, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            yield node.lineno, module
            for alias in node.names:  # `from . import checks` imports a module too
                yield node.lineno, f"{module}.{alias.name}"


def sources(package: str) -> list[Path]:
    return [p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts]


def test_the_toolkit_never_imports_the_platform_or_its_apps() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for package in TOOLKIT
        for path in sources(package)
        for line, name in imports(path)
        if name.split(".")[0] in ("apps", "quantumquill")
    ]
    assert wrong == []


ENV_READERS = re.compile(r"^quantumquill\.(env|db_env|redis_env|redis_cluster_env)(\.|$)")


def test_the_apps_never_import_the_project_package_except_its_typed_env_readers() -> None:
    # quantumquill.env and its siblings (db_env, redis_env, redis_cluster_env): the typed environment readers
    # the settings are built with, which apps.storage.conf and apps.platform share; everything else
    # (middleware, URLs, settings) sits above the apps.
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sources("apps")
        for line, name in imports(path)
        if name.split(".")[0] == "quantumquill" and not ENV_READERS.match(name)
    ]
    assert wrong == []


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in sources(package)}
    return {
        name: {imported for _, imported in imports(path) if imported in modules and imported != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_shard_routers_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph("shardrouter")
    # The package itself and its AppConfig (which loads the checks in ready()) are entry points, not layers.
    for entry in ("shardrouter", "shardrouter.apps"):
        graph.pop(entry, None)
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
