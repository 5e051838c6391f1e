"""Stack outputs as a consumer sees them: every output of a stack with every feature on is in the
README's outputs table (and nothing else is), secrecy as the table says, and no number reaches a
consumer as a float (Pulumi carries output numbers as doubles: 8074 would read 8074.0 in Python)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.program import PROJECT_DIR, Program, Secret


@pytest.fixture(scope="module")
def everything(program: Any, lab_config: dict[str, Any]) -> Program:
    """The lab stack (cluster on) with GitLab and the Teleport plugin on as well."""
    config = {
        **lab_config,
        "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab"},
        "teleport": {"enabled": True, "host": "plugin"},
        "teleportToken": Secret("bot-token-abcdefghijklmnop"),
    }
    ev = program(config)
    assert not ev.program_error, ev.program_error
    return ev


def readme_outputs() -> dict[str, bool]:
    """The README's outputs table: output name -> secret."""
    text = (PROJECT_DIR / "README.md").read_text()
    section = text.split("\n## Outputs\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Za-z]+)` \| (no|\*\*yes\*\*) \|", section, re.M)
    assert rows, "the README has an outputs table"
    return {name: secret != "no" for name, secret in rows}


def _floats(value: Any, path: str = "") -> list[str]:
    if isinstance(value, float):
        return [f"{path} = {value!r}"]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _floats(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _floats(v, f"{path}[{i}]")]
    return []


def test_readme_outputs_table_matches_the_program(everything: Program) -> None:
    documented = readme_outputs()
    assert set(documented) == set(everything.outputs), (
        f"README lists {sorted(set(documented) - set(everything.outputs))} that the program does not export; "
        f"the program exports {sorted(set(everything.outputs) - set(documented))} that the README does not list"
    )
    assert {k for k, secret in documented.items() if secret} == set(everything.secret_outputs)


def test_no_output_number_reaches_a_consumer_as_a_float(everything: Program) -> None:
    assert _floats(everything.outputs) == []
    cluster = everything.outputs["cluster"]
    assert cluster["ports"] == ["8074"]
    assert cluster["gossipEncryption"] is True, "booleans stay booleans"
    for node in cluster["nodes"].values():
        assert node["slot"].isdigit()
        assert node["localPorts"] and all(p.isdigit() and 1024 <= int(p) <= 65535 for p in node["localPorts"])
