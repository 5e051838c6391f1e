"""The whole program (`__main__.py`) as the replay engine evaluates it (lab.replay), for the
program tests that look at the complete graph of a committed stack.

Owns the prod stack's evaluation inputs (`prod_config`), the transitive dependency walk (`deps`)
and reading a managed-files command's payload (`files_in`). The fixtures built on them
(`replay`, `replay_lab_config`, ...) are in tests/program/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from components.remote_files import stdin_contents
from lab.replay import Evaluation, Resource, Secret, evaluate
from tests.helpers.stack_config import SSH_KEY

PROJECT_DIR = Path(__file__).resolve().parents[2]
KEY = SSH_KEY
"""The SSH private key a prod evaluation is given (the committed stack keeps it out)."""


def prod_config(**overrides: Any) -> dict[str, Any]:
    """Config for evaluating stacks/Pulumi.prod.yaml: the SSH key it needs, plus `overrides`."""
    return {"sshPrivateKey": Secret(KEY), **overrides}


def evaluate_prod(**overrides: Any) -> Evaluation:
    return evaluate(PROJECT_DIR, "prod", config=prod_config(**overrides))


def prod_nodes() -> list[dict[str, Any]]:
    """The nodes the committed prod stack lists."""
    data = yaml.safe_load((PROJECT_DIR / "stacks" / "Pulumi.prod.yaml").read_text())
    return data["config"]["mattermost-transport-encryption:nodes"]


def deps(ev: Evaluation, name: str) -> set[str]:
    """Names of everything `name` waits for (transitively)."""
    seen: set[str] = set()
    todo = [ev.get(name)]
    while todo:
        r = todo.pop()
        for urn in r.all_dependencies():
            if "::pulumi:pulumi:Stack::" in urn:
                continue
            d = ev.by_urn(urn)
            if d.name not in seen:
                seen.add(d.name)
                todo.append(d)
    return seen


def files_in(res: Resource) -> list[str]:
    """The file contents a managed_files command carries in stdin, in order."""
    return stdin_contents(res.inputs["stdin"])
