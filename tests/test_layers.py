"""The floors of docs/architecture.md, checked on every import (module level and inside functions).

core (pg2edge/config.py, dsn.py, errors.py, statestore.py) imports nothing of the project; translators only the core;
analyzers and pipeline the core and translators; validators also pipeline (never pipeline.cutover);
pipeline.cutover also validators; flows the library; nothing in the library imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CORE = {"pg2edge.config", "pg2edge.dsn", "pg2edge.errors", "pg2edge.statestore"}
UNITS = ["core", "translators", "analyzers", "pipeline", "validators", "cutover", "flows", "cli", "tools"]
ALLOWED = {
    "core": {"core"},
    "translators": {"core", "translators"},
    "analyzers": {"core", "translators", "analyzers"},
    "pipeline": {"core", "translators", "pipeline"},
    "validators": {"core", "translators", "pipeline", "validators"},
    "cutover": {"core", "translators", "pipeline", "validators", "cutover"},
    "flows": {"core", "translators", "analyzers", "pipeline", "validators", "cutover", "flows", "tools"},
    "tools": {"core", "translators", "analyzers", "pipeline", "validators", "cutover", "tools"},
    "cli": set(UNITS),
}


def unit_of(module: str) -> str | None:
    if module != "pg2edge" and not module.startswith("pg2edge."):
        return None
    if any(module == c or module.startswith(c + ".") for c in CORE):
        return "core"
    parts = module.split(".")
    if len(parts) == 1:
        return "tools"  # the package itself (its __init__ holds only the version)
    head = parts[1]
    if head == "pipeline" and len(parts) > 2 and parts[2] == "cutover":
        return "cutover"
    if head in ("translators", "analyzers", "pipeline", "validators", "flows"):
        return head
    if head in ("commands", "cli", "__main__", "readme"):  # readme: the command reference, from argparse
        return "cli"
    return "tools"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] == "pg2edge" else ["pg2edge", *parts])


def sources() -> list[Path]:
    out = []
    for folder in ("pg2edge", "translators", "analyzers", "pipeline", "validators", "flows"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            if any((REPO / parent).is_symlink() for parent in rel.parents):
                continue  # pg2edge/pipeline -> ../pipeline: each file once, under its real folder
            out.append(path)
    return out


def imports(path: Path) -> list[tuple[int, str]]:
    module = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            for alias in node.names:  # `from pg2edge.pipeline import state` names a module too
                found.append((node.lineno, f"{name}.{alias.name}"))
    return found


def test_every_import_respects_the_floors() -> None:
    bad = []
    for path in sources():
        mine = unit_of(module_name(path))
        assert mine is not None
        for line, name in imports(path):
            if name == "pg2edge":
                continue  # `from pg2edge import dsn`: the names imported are checked one by one
            theirs = unit_of(name)
            if theirs is not None and theirs not in ALLOWED[mine]:
                bad.append(f"{path.relative_to(REPO)}:{line} ({mine}) imports {name} ({theirs})")
    assert not bad, "\n".join(sorted(set(bad)))


@pytest.mark.parametrize(("module", "unit"), [("pg2edge.dsn", "core"), ("pg2edge.pipeline.cutover.gates", "cutover"),
                                              ("pg2edge.commands.sync", "cli"), ("pg2edge.demo", "tools"),
                                              ("pg2edge.pipeline.engine", "pipeline"), ("psycopg", None)])
def test_units_are_told_apart(module: str, unit: str | None) -> None:
    assert unit_of(module) == unit
