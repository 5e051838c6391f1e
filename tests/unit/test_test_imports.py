"""Tests use the project's public names only (issue 12): no test or test helper imports a
private module (`lab._seed`) or a private name (`from lab.hosts import _links`), reads one off a
project module (`audit._GOSSIP_CAPTURE`) or patches one by name (`setattr(database, "_X", ...)`).
Pulumi's own private names are not the project's and are not checked."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("components", "lab", "tools", "bench", "tests")


def _private(name: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in name.split("."))


def private_uses(source: str) -> list[str]:
    """What `source` takes from the project that is private, one line each."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to a project module or name
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            for alias in node.names:
                if _private(f"{node.module}.{alias.name}"):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROJECT:
                    if _private(alias.name):
                        found.append(f"{node.lineno}: import {alias.name}")
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Call):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _private(arg.value):
                    head = arg.value.split(".")[0]
                    if head in PROJECT:  # __import__("lab._names"), importlib.import_module(...)
                        found.append(f"{node.lineno}: {arg.value!r}")
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("setattr", "getattr", "delattr", "hasattr") and len(node.args) >= 2:
                target, attr = node.args[0], node.args[1]
                if (
                    isinstance(target, ast.Name)
                    and target.id in modules
                    and isinstance(attr, ast.Constant)
                    and isinstance(attr.value, str)
                    and _private(attr.value)
                ):
                    found.append(f"{node.lineno}: {name}({target.id}, {attr.value!r})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_sees_each_kind_of_private_use() -> None:
    source = """
from lab import _seed
from lab.hosts import _links
import lab._names
from tools import audit
from lab.standin.mmstandin import database
import pulumi
x = audit._GOSSIP_CAPTURE
__import__("lab._names")
def t(monkeypatch):
    monkeypatch.setattr(database, "_SYSTEM_ROOTS", None)
    pulumi.runtime.settings._private_thing
"""
    found = private_uses(source)
    assert sorted(int(f.split(":")[0]) for f in found) == [2, 3, 4, 8, 9, 11], found
    assert not private_uses("from lab import seeding\nimport pulumi\npulumi._x\nseeding.GUIDE_SITE\n")


def test_no_test_uses_a_private_project_name() -> None:
    offenders = {
        str(path.relative_to(REPO)): uses
        for path in sorted((REPO / "tests").rglob("*.py"))
        if (uses := private_uses(path.read_text()))
    }
    assert not offenders, offenders
