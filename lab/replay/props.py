"""Property values between the Pulumi SDK's wire format and plain Python.

Owns: decoding a RegisterResource `Struct` into plain values plus the exact set of secret paths
(the SDK's own deserializer pushes secretness up to the enclosing object, we keep it where it
is), encoding outputs back with secret markers and unknowns, path helpers, and the redactor that
keeps secret values out of everything the engine prints.

Paths are strings: `connection`, `subject.commonName`, `triggers[0]`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format, struct_pb2

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The SDK's sentinel for a value not known yet (preview, or an input from a failed resource)."""


def child_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def top_key(path: str) -> str:
    """`a.b[0]` -> `a`; `triggers[*]` -> `triggers`."""
    for i, ch in enumerate(path):
        if ch in ".[":
            return path[:i]
    return path


def decode_struct(struct: struct_pb2.Struct) -> tuple[dict[str, Any], set[str]]:
    """A wire Struct -> (plain dict, secret paths). Secret markers are removed, unknowns kept."""
    raw = json_format.MessageToDict(struct, preserving_proto_field_name=True)
    secrets: set[str] = set()
    plain = _strip(raw, "", secrets)
    return plain, secrets


def _strip(value: Any, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            secrets.add(path)
            return _strip(value.get("value"), path, secrets)
        return {k: _strip(v, child_path(path, k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v, child_path(path, i), secrets) for i, v in enumerate(value)]
    return value


def encode_struct(values: dict[str, Any], secrets: Iterable[str]) -> struct_pb2.Struct:
    """Plain dict + secret paths -> wire Struct with secret markers (unknowns pass through)."""
    wanted = set(secrets)
    struct = struct_pb2.Struct()
    struct.update(_wrap(values, "", wanted))
    return struct


def _wrap(value: Any, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        inner: Any = {k: _wrap(v, child_path(path, k), secrets) for k, v in value.items() if v is not None}
    elif isinstance(value, list):
        inner = [_wrap(v, child_path(path, i), secrets) for i, v in enumerate(value)]
    else:
        inner = value
    if path and path in secrets:
        return {SIG_KEY: SECRET_SIG, "value": inner}
    return inner


def contains_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return value == UNKNOWN


def get_path(values: dict[str, Any], path: str) -> Any:
    """Value at a dotted path, or None."""
    cur: Any = values
    for part in _split(path):
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return None
            cur = cur[part]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
    return cur


def _split(path: str) -> Iterator[str | int]:
    for dotted in path.split("."):
        name, _, rest = dotted.partition("[")
        if name:
            yield name
        while rest:
            idx, _, rest = rest.partition("]")
            yield int(idx) if idx.isdigit() else idx
            rest = rest.lstrip("[")


# remote.Command's SDK marks the whole `connection` secret; its address, user and the (public)
# host key are not, and masking them would hide which host an error is about.
NOT_SENSITIVE = frozenset({"connection.host", "connection.port", "connection.user", "connection.hostKey"})


def secret_strings(values: dict[str, Any], secrets: Iterable[str]) -> Iterator[str]:
    """Every string leaf under a secret path (except the non-credential parts of a connection)."""
    for path in secrets:
        value = get_path(values, path)
        if path == "connection" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if f"connection.{k}" not in NOT_SENSITIVE}
        elif path in NOT_SENSITIVE:
            continue
        yield from _strings(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class Redactor:
    """Replaces known secret values in text meant for humans.

    Whole values and, for multi-line values (keys, stdin bundles), each long line, so a script
    that echoes one line of its secret stdin is still masked. Very short values are skipped:
    masking "1" everywhere would destroy the output and protects nothing.
    """

    MASK = "[secret]"
    MIN_LEN = 6

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        candidates = {value, value.strip()}
        candidates.update(line.strip() for line in value.splitlines())
        with self._lock:
            self._values.update(c for c in candidates if len(c) >= self.MIN_LEN and c != UNKNOWN)

    def add_all(self, values: Iterable[str]) -> None:
        for v in values:
            self.add(v)

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for v in values:
            if v in text:
                text = text.replace(v, self.MASK)
        return text
