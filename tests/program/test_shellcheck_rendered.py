"""shellcheck over every script the program renders: the stacks' commands as the program
registers them on Pulumi's mock runtime (command text, every script the helper input carries, every read-only check and
every installed file that is a sh script), with real keys and the lab's values. tests/unit/test_shellcheck.py checks
the .sh files themselves and that the check fails on a broken script."""

from __future__ import annotations

from typing import Any

from components.remote_files_render import read_manifest, read_script_source
from tests.helpers.program import Program, Secret
from tests.helpers.scripts import shellcheck

EVERYTHING_ON = {
    "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab"},
    "teleport": {"enabled": True, "host": "plugin"},
    "teleportToken": Secret("bot-token-abcdefghijklmnop"),
}


def _scripts(name: str, ev: Program) -> dict[str, str]:
    assert not ev.program_error, ev.program_error
    out: dict[str, str] = {}
    for r in ev.resources:
        for key in ("create", "update", "delete"):
            if isinstance(r.inputs.get(key), str):
                out[f"{name} {r.name} {key}"] = r.inputs[key]
        stdin = r.inputs.get("stdin")
        stdin = getattr(stdin, "value", stdin)
        if isinstance(stdin, str) and stdin.startswith("# read-only check"):
            out[f"{name} {r.name} read-only"] = read_script_source(stdin)
            out[f"{name} {r.name} stdin"] = stdin  # the unpacking, or the read from the host's copy
        if not isinstance(stdin, str) or not stdin.startswith("mattermost-transport-encryption helper input"):
            continue
        for section, text in read_manifest(stdin).sections.items():
            if section == "input" or (section.startswith("content-") and not text.startswith("#!/bin/sh")):
                continue  # a script's input, or a file that is not a script
            out[f"{name} {r.name} {section}"] = text
    return out


def test_every_rendered_script_is_shellcheck_clean(program: Any, lab_config: dict[str, Any]) -> None:
    cases = {
        "lab": ("lab", lab_config),
        "lab, GitLab and Teleport on": ("lab", {**lab_config, **EVERYTHING_ON}),
        "lab, CA rotation staged": ("lab", {**lab_config, "ca": {"generation": 4, "rotation": "stage"}}),
        "lab-mysql": ("lab-mysql", lab_config),
        "lab-replicas": ("lab-replicas", lab_config),
    }
    scripts: dict[str, str] = {}
    for name, (stack, config) in cases.items():
        for key, text in _scripts(name, program(config, stack=stack)).items():
            if text not in scripts.values():
                scripts[key] = text
    kinds = {key.rsplit(" ", 1)[1] for key in scripts}
    assert {"create", "delete", "validate", "activate", "restore-activate", "content-0", "read-only"} <= kinds, kinds
    assert len(scripts) > 120, len(scripts)
    assert any("gitlab" in key for key in scripts) and any("teleport" in key for key in scripts)
    assert shellcheck(scripts) == []
