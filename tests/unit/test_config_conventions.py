"""The config schema (components/config.py), Pulumi.yaml's `config:` block and the README's config
table describe the same keys, and Pulumi.yaml and the committed stack files pass the checks the
Pulumi CLI runs on them, so none of the three can drift from the others."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from components.config import SECRET_KEYS, StackConfig, fields_of, known_keys, section_of

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
DECLARED: dict[str, Any] = PROJECT["config"]
HOST_SECTIONS = ("nodes[]", "proxy", "database", "gitlab", "teleport")


def readme_rows() -> list[tuple[list[str], str]]:
    """(the keys of column 1, column 3) of every row of the README's config table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Config reference\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[2]))
    assert len(rows) > 20, "the README has a config table"
    return rows


def documented_keys() -> set[str]:
    return {k for keys, _ in readme_rows() for k in keys}


def schema_paths(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, Any]:
    """Every key path of the schema (`proxy.tls.source`, `nodes[].name`) -> its annotation."""
    paths: dict[str, Any] = {}
    for name, annotation in fields_of(model).items():
        path = f"{prefix}{name}"
        sub = section_of(annotation)
        is_list = "list[" in str(annotation)
        paths[path + ("[]" if is_list else "")] = annotation
        if sub is not None:
            paths.update(schema_paths(sub, f"{path}{'[]' if is_list else ''}."))
    return paths


def _expand(key: str) -> list[str]:
    return [key.replace("<host>", s) for s in HOST_SECTIONS] if key.startswith("<host>") else [key]


def top_level(key: str) -> str:
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def test_pulumi_yaml_declares_every_key_and_only_those() -> None:
    assert set(DECLARED) == set(known_keys())


def test_readme_table_names_every_key_and_only_those() -> None:
    documented = {top_level(k) for k in documented_keys() if not k.startswith("<host>")}
    assert documented == set(known_keys()), (
        f"in the README but not the schema: {sorted(documented - set(known_keys()))}; "
        f"in the schema but not the README: {sorted(set(known_keys()) - documented)}"
    )


def test_every_key_the_readme_documents_exists() -> None:
    paths = set(schema_paths()) | {"inventoryFile"}
    for key in documented_keys():
        for path in _expand(key):
            if path.endswith(".*"):
                assert any(p.startswith(path[:-1]) for p in paths), key
            else:
                assert path in paths, f"the README documents {key}, which the schema does not have"


def test_every_schema_key_is_documented() -> None:
    documented = {p for k in documented_keys() for p in _expand(k)}
    nodes_row = next(meaning for keys, meaning in readme_rows() if keys == ["nodes[]"])
    missing = []
    for path, annotation in schema_paths().items():
        if section_of(annotation) is not None and not path.endswith("[]"):
            continue  # a section: its keys are checked one by one
        if path.startswith("nodes[]."):
            field = path.split(".")[1]
            if path.count(".") == 1 and f"`{field}`" not in nodes_row:
                missing.append(path)
            continue
        if path in documented or any(path.startswith(d.removesuffix("*")) for d in documented if d.endswith(".*")):
            continue
        # a documented section (`proxy.ssh`) covers what is inside it
        if any(path.startswith(d + ".") for d in documented):
            continue
        missing.append(path)
    assert missing == [], f"keys the README's config table does not document: {missing}"


@pytest.mark.parametrize("key", sorted(DECLARED))
def test_declaration_follows_the_schema_and_the_cli_rules(key: str) -> None:
    """Pulumi's project schema (sdk/go/common/workspace/project.json, configTypeDeclaration:
    type, items, description, secret, default, value; array needs items) and how the CLI merges
    it (pkg/workspace/config.go): no default = required; secrecy checked only on typed keys."""
    decl = DECLARED[key]
    assert set(decl) <= {"type", "items", "description", "secret", "default", "value"}, decl
    assert decl.get("description", "").strip(), f"{key} needs a description"
    assert decl.get("type", "string") in {"string", "integer", "boolean", "array", "object"}
    if key == "inventoryFile":
        assert decl == {**decl, "type": "string", "default": ""}
        return
    field = next(f for n, f in StackConfig.model_fields.items() if (f.alias or _camel(n)) == key)
    if key in SECRET_KEYS:
        assert field.annotation in (SecretStr, SecretStr | None), key
        # typed + secret + an empty default would be refused by the CLI whenever the key is unset
        assert decl.get("secret") is True and "type" not in decl and decl.get("default") == "", decl
    elif section_of(field.annotation) is not None and "list[" in str(field.annotation):
        assert decl["type"] == "array" and decl["items"] == {"type": "object"}
        assert ("default" in decl) == (not field.is_required()), "required exactly when the schema requires it"
    else:
        assert section_of(field.annotation) is not None, key
        assert decl["type"] == "object" and decl["default"] == {}, "an optional section defaults to {}"


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.title() for p in rest)


def cli_check(stack_config: dict[str, Any]) -> list[str]:
    """The CLI's checks of a stack's config against the project's declarations
    (pkg/workspace/config.go: mergeConfig reports keys without default missing from the stack;
    validateStackConfigValue checks secrecy and workspace.ValidateConfigValue the type)."""
    prefix = PROJECT["name"] + ":"
    values = {k.removeprefix(prefix): v for k, v in stack_config.items()}
    errors = []
    for key, decl in DECLARED.items():
        if key not in values:
            if "default" not in decl and "value" not in decl:
                errors.append(f"missing required {key}")
            continue
        value = values[key]
        if "type" not in decl:
            continue
        if decl.get("secret") and not (isinstance(value, dict) and set(value) == {"secure"}):
            errors.append(f"{key} must be encrypted")
        ok = {
            "string": lambda v: isinstance(v, str),
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
        }[decl["type"]](value)
        if not ok:
            errors.append(f"{key} must be of type {decl['type']}")
    return errors


@pytest.mark.parametrize("stack_file", sorted(p.name for p in (ROOT / "stacks").glob("Pulumi.*.yaml")))
def test_committed_stacks_pass_the_cli_checks(stack_file: str) -> None:
    data = yaml.safe_load((ROOT / "stacks" / stack_file).read_text())
    assert cli_check(data["config"]) == []


def test_cli_check_catches_what_the_cli_refuses() -> None:
    """The stand-in above is not kinder than the CLI on the cases it covers."""
    assert cli_check({}) == ["missing required nodes"]
    assert cli_check({"nodes": {"name": "mm1"}}) == ["nodes must be of type array"]
    assert cli_check({"nodes": [], "proxy": "x"}) == ["proxy must be of type object"]
