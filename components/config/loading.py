"""Reading the stack configuration: every key of the project once, the secret keys checked to
be secret, unknown keys refused with a suggestion, validation errors as one message naming each
key. A lab stack's `inventoryFile` is merged in by lab/stack_inventory.py (not part of the schema)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from components.config.fields import PROJECT, SECRET_KEYS, SECRET_SET_COMMANDS, ConfigError, KeyedError
from components.config.schema import StackConfig

# Keys that existed once and did nothing: a stack file still carrying one gets this instead of a guess.
REMOVED_KEYS = {
    ("mattermost", "serviceUser"): "the node key is readable by the service group (serviceGroup), not by a user, so it had no effect",
    ("nodes", "serviceUser"): "the node key is readable by the service group (serviceGroup), not by a user, so it had no effect",
}




def _key_of(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def fields_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields by the name a stack file uses (camelCase)."""
    return {f.alias or to_camel(n): f.annotation for n, f in model.model_fields.items()}


def section_of(tp: Any) -> type[BaseModel] | None:
    """The config section (a Model) inside an annotation such as `HostSsh`, `list[Node]`, `X | None`."""
    import typing

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        found = section_of(arg)
        if found is not None:
            return found
    return None


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: section_of already looked through the list
        if model is None:
            return None
        model = section_of(fields_of(model).get(str(part)))
    return model


def _unknown_key_message(loc: tuple[Any, ...]) -> str:
    name = str(loc[-1])
    section = next((p for p in loc if isinstance(p, str)), "")
    removed = REMOVED_KEYS.get((section, name)) if len(loc) in (2, 3) else None
    if removed:
        return f"removed: {removed}; delete it from the stack file (pulumi config rm --path '{_key_of(loc)}')"
    model = _section_at(loc[:-1])
    known = sorted(fields_of(model)) if model else []
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
        k for k in known if k.lower() == name.lower()
    ]
    if close:
        return f"unknown key (did you mean {_key_of((*loc[:-1], close[0]))!r}?)"
    where = _key_of(loc[:-1])
    return f"unknown key; {where} takes {', '.join(known)}" if known else "unknown key"


def _not_text_message(value: Any, loc: tuple[Any, ...]) -> str | None:
    """A YAML scalar that was meant as text but arrived as a number or boolean."""
    leaf = str(loc[-1])
    if isinstance(value, bool):
        text = "true" if value else "false"
        return f"is a boolean (YAML reads an unquoted {text} as one), but this key takes text: quote it, {leaf}: \"{text}\""
    if isinstance(value, (int, float)):
        hint = ""
        if isinstance(value, float):
            hint = f" (YAML reads it as the number {value!r} and drops trailing zeros, so 10.10 becomes 10.1)"
        example = '"10.11.3"' if leaf == "version" else f'"{value}"'
        return f"is a number{hint}, but this key takes text: quote it, e.g. {leaf}: {example}"
    return None


def _format_errors(err: ValidationError) -> str:
    lines = []
    # inputs are used to explain type errors, never printed: they may be secrets
    for e in err.errors(include_url=False, include_input=True):
        loc = tuple(e.get("loc", ()))
        ctx_err = (e.get("ctx") or {}).get("error")
        msg = None
        if isinstance(ctx_err, KeyedError):
            key, msg = ctx_err.key, str(ctx_err)
        else:
            key = _key_of(loc)
            if e["type"] == "extra_forbidden" and loc:
                msg = _unknown_key_message(loc)
            elif e["type"] == "missing" and loc and str(loc[-1]) in SECRET_SET_COMMANDS and len(loc) == 1:
                msg = f"missing: set it with `{SECRET_SET_COMMANDS[str(loc[-1])]}`"
            elif e["type"] == "string_type" and loc and str(loc[0]) not in SECRET_KEYS:
                msg = _not_text_message(e.get("input"), loc)
            if msg is None:
                msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{PROJECT}:{key}: {msg}" if key else f"{PROJECT}: {msg}")
    return "invalid stack configuration:\n  " + "\n  ".join(lines)


def parse(raw: Mapping[str, Any], base_dir: Path | None = None) -> StackConfig:
    """Validate a raw config mapping (keys without namespace, objects already decoded)."""
    data: dict[str, Any] = json.loads(json.dumps(dict(raw)))  # deep copy, plain types
    inv_file = data.pop("inventoryFile", None) or None
    if inv_file is not None:
        # a lab stack: addresses, host keys and the SSH key come from the lab's inventory
        from lab.stack_inventory import merge_inventory_file

        data = merge_inventory_file(data, inv_file, base_dir or Path.cwd())
    try:
        return StackConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from None


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# Pulumi.yaml declares these optional keys with `default: ""`: the CLI makes a declared key without
# a default required (pkg/workspace/config.go, mergeConfig), and merges a default into the config
# the program reads. Empty therefore means "not set" for them.
EMPTY_DEFAULT_KEYS = frozenset({"inventoryFile", *SECRET_KEYS})


def known_keys() -> list[str]:
    return ["inventoryFile", *[f.alias or to_camel(n) for n, f in StackConfig.model_fields.items()]]


def _set_keys() -> set[str]:
    from pulumi.runtime import config as runtime_config

    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env() or {})
    return {k.split(":", 1)[1] for k in names if k.startswith(PROJECT + ":")}


def load(
    get_config: Callable[[str], str | None] | None = None,
    set_keys: set[str] | None = None,
    is_secret: Callable[[str], bool] | None = None,
) -> StackConfig:
    """Read every key of this project's config once (secrets included, as plain values for
    validation only) and validate it. Raises ConfigError before any resource is registered."""
    from pulumi.runtime import config as runtime_config

    getter = get_config or runtime_config.get_config
    secret = is_secret or runtime_config.is_config_secret
    keys = known_keys()
    unknown = sorted((set_keys if set_keys is not None else _set_keys()) - set(keys))
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, keys, n=1)
            hints.append(f"{PROJECT}:{k}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(hints))
    raw: dict[str, Any] = {}
    for key in keys:
        value = getter(f"{PROJECT}:{key}")
        if value is None or (value == "" and key in EMPTY_DEFAULT_KEYS):
            continue
        if key in SECRET_KEYS and not secret(f"{PROJECT}:{key}"):
            raise ConfigError(
                f"{PROJECT}:{key}: this value is a secret but is stored in plain text; "
                f"set it with `pulumi config set --secret {key}`"
            )
        raw[key] = value if key in SECRET_KEYS or key == "inventoryFile" else _decode(value)
    return parse(raw, base_dir=Path.cwd())
