"""Project and stack configuration, read the way the Pulumi CLI reads them.

Owns: `Pulumi.yaml` (name, main, stackConfigDir, project-level `config` defaults) and
`<stackConfigDir>/Pulumi.<stack>.yaml` (`config:`). Keys without a namespace get the project's;
objects and lists become JSON strings, scalars strings, as the CLI hands them to the program.
A `secure:` value is refused: the replay engine has no secrets provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.replay.model import ReplayError


@dataclass
class Project:
    name: str
    root: Path
    main: Path
    """The Python file to run (`__main__.py` of the project dir, or of `main:`)."""
    stack_config_dir: Path
    defaults: dict[str, Any] = field(default_factory=dict)


def load_project(project_dir: str | Path) -> Project:
    root = Path(project_dir).resolve()
    path = root / "Pulumi.yaml"
    if not path.is_file():
        raise ReplayError(f"no Pulumi.yaml in {root}")
    data = yaml.safe_load(path.read_text()) or {}
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ReplayError(f"{path}: `name` is missing")
    main = root / str(data.get("main") or ".")
    if main.is_dir():
        main = main / "__main__.py"
    defaults: dict[str, Any] = {}
    for key, spec in (data.get("config") or {}).items():
        # Project-level config: either a bare value or a {type, default, ...} declaration.
        if isinstance(spec, dict) and ("default" in spec or "type" in spec or "value" in spec):
            if "value" in spec:
                defaults[key] = spec["value"]
            elif "default" in spec:
                defaults[key] = spec["default"]
        else:
            defaults[key] = spec
    return Project(
        name=name,
        root=root,
        main=main,
        stack_config_dir=root / str(data.get("stackConfigDir") or "."),
        defaults=defaults,
    )


class Secret(str):
    """A config override the program sees as secret, as `pulumi config set --secret` would set it
    (the replay engine decrypts no `secure:` values, so tests hand secrets in this way)."""


def secret_keys(project: Project, overrides: dict[str, Any] | None) -> list[str]:
    """The fully qualified keys of the overrides that are `Secret`."""
    return [qualify(project.name, str(k)) for k, v in (overrides or {}).items() if isinstance(v, Secret)]


def stack_file(project: Project, stack: str) -> Path:
    return project.stack_config_dir / f"Pulumi.{stack}.yaml"


def load_config(project: Project, stack: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """The config map the program sees: `{"<namespace>:<key>": "<string>"}`.

    Project defaults, then the stack file, then `overrides` (same key rules), later wins.
    """
    merged: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = [("Pulumi.yaml", project.defaults)]
    path = stack_file(project, stack)
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        sources.append((str(path.relative_to(project.root)), data.get("config") or {}))
    if overrides:
        sources.append(("overrides", overrides))
    for origin, values in sources:
        if not isinstance(values, dict):
            raise ReplayError(f"{origin}: `config` must be a mapping")
        for key, value in values.items():
            full = qualify(project.name, str(key))
            _refuse_secure(full, value, origin)
            merged[full] = value
    return {k: to_config_string(v) for k, v in merged.items()}


def qualify(project_name: str, key: str) -> str:
    return key if ":" in key else f"{project_name}:{key}"


def to_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    return str(value)


def _refuse_secure(key: str, value: Any, origin: str) -> None:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            raise ReplayError(
                f"config `{key}` in {origin} is a secret (`secure:`): the replay engine does not decrypt "
                "secrets. Run this stack with the pulumi CLI (`pulumi up`), or give the lab stack a value in "
                "clear (for the lab, generated values come from the inventory file)."
            )
        for v in value.values():
            _refuse_secure(key, v, origin)
    elif isinstance(value, list):
        for v in value:
            _refuse_secure(key, v, origin)
