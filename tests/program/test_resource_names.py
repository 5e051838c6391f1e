"""`config.planned_resource_names` (which the config check uses to refuse node names that would
give two resources one name) predicts exactly the names the real program registers, so the check
cannot drift from the components' naming."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import parse, planned_resource_names
from tests.helpers.program import KEY, PROJECT_DIR, Secret, stack_values

HOSTS = {
    "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab"},
    "teleport": {"enabled": True, "host": "plugin"},
    "teleportToken": Secret("bot-token-abcdefghijklmnop"),
}


def _cases(lab: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "prod (mysql, generated password)": ("prod", {"sshPrivateKey": Secret(KEY)}),
        "lab (postgres, cluster)": ("lab", lab),
        "lab-mysql": ("lab-mysql", lab),
        "lab, everything on, own db password": ("lab", {**lab, **HOSTS, "dbPassword": Secret("Own-Passw0rd-xyz")}),
        "lab, CA rotation staged from generation 4": ("lab", {**lab, "ca": {"generation": 4, "rotation": "stage"}}),
    }


@pytest.mark.parametrize("case", list(_cases({})))
def test_planned_names_are_the_registered_names(case: str, program: Any, lab_config: dict[str, Any]) -> None:
    stack, overrides = _cases(lab_config)[case]
    ev = program(overrides, stack=stack)
    assert not ev.program_error, ev.program_error
    registered = sorted(r.name for r in ev.resources)
    raw = {k.split(":", 1)[1]: v for k, v in stack_values(stack, overrides).items()}
    cfg = parse({k: _decode(k, v) for k, v in raw.items() if v != ""}, base_dir=PROJECT_DIR)
    planned = sorted(name for name, _, _ in planned_resource_names(cfg))
    assert planned == registered


def _decode(key: str, value: str) -> Any:
    import json

    from components.config import SECRET_KEYS

    if key in SECRET_KEYS or key == "inventoryFile":
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
