"""Property values between the Pulumi SDK's wire format and plain Python.

Owns: decoding a RegisterResource `Struct` into plain values plus the exact set of secret paths
(the SDK's own deserializer pushes secretness up to the enclosing object, we keep it where it
is), encoding outputs back with secret markers and unknowns, path helpers, and the redactor that
masks secret config values in what the engine prints (as the Pulumi engine does, and no more).

Paths are strings: `connection`, `subject.commonName`, `triggers[0]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format, struct_pb2

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
"""pulumi sdk/go/common/resource/sig/sig.go `AssetSig` (the Python SDK's `_ASSET_SIG`)."""
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


def is_asset(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == ASSET_SIG


def with_asset_hashes(value: Any, wd: str) -> Any:
    """`value` with every asset given its `hash` where it has none, as the engine does when a
    program registers a resource (resmon `RegisterResource` unmarshals with
    `ComputeAssetHashes`; asset.go `EnsureHashWithWD`: SHA-256 of the file's bytes, a relative
    path read against the working directory). Only path assets: the program sends no others."""
    if is_asset(value):
        if value.get("hash") or not value.get("path"):
            return value
        path = value["path"] if os.path.isabs(value["path"]) else os.path.join(wd, value["path"])
        with open(path, "rb") as f:
            return {**value, "hash": hashlib.sha256(f.read()).hexdigest()}
    if isinstance(value, dict):
        return {k: with_asset_hashes(v, wd) for k, v in value.items()}
    if isinstance(value, list):
        return [with_asset_hashes(v, wd) for v in value]
    return value


def by_asset_hash(value: Any) -> Any:
    """`value` with each asset reduced to its hash: assets are equal when their hashes are,
    wherever their contents come from (asset.go `Asset.Equals`)."""
    if is_asset(value):
        return (ASSET_SIG, value.get("hash"))
    if isinstance(value, dict):
        return {k: by_asset_hash(v) for k, v in value.items()}
    if isinstance(value, list):
        return [by_asset_hash(v) for v in value]
    return value


def contains_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return value == UNKNOWN


def get_path(values: dict[str, Any], path: str) -> Any:
    """Value at a dotted path, or None."""
    cur: Any = values
    for part in split_path(path):
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return None
            cur = cur[part]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
    return cur


def split_path(path: str) -> Iterator[str | int]:
    """`a.b[0]` -> `a`, `b`, `0`."""
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
    """The engine's masking of what it prints: secret CONFIG values only, whole values.

    Copies pulumi/pulumi `pkg/engine/events.go` (`makeEventEmitter` hands every decrypted
    `secure:` config value to `logging.AddGlobalSecretFilter`) and
    `sdk/go/common/util/logging/log.go` (`replacements`, `FilterString`): each value of 3 or
    more characters other than "true"/"false", and its JSON-escaped form, becomes "[secret]" in
    one left-to-right pass where the value registered first wins at a position. Nothing else is
    masked: generated secrets (random passwords, private keys) and stdin contents are printed
    as the provider returned them, so the program itself must keep them out of command text
    and output.
    """

    MASK = "[secret]"

    def __init__(self) -> None:
        self._values: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value.encode()) < 3 or value.lower() in ("true", "false"):
            return
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        # Go's json.Marshal also escapes <, > and & (HTML-safe) and U+2028/U+2029.
        for ch in "<>&\u2028\u2029":
            escaped = escaped.replace(ch, f"\\u{ord(ch):04x}")
        with self._lock:
            changed = False
            for candidate in (value, escaped):
                if candidate not in self._values:
                    self._values.append(candidate)
                    changed = True
            if changed:
                self._pattern = re.compile("|".join(re.escape(v) for v in self._values))

    def add_all(self, values: Iterable[str]) -> None:
        for v in values:
            self.add(v)

    def __call__(self, text: str) -> str:
        with self._lock:
            pattern = self._pattern
        return pattern.sub(self.MASK, text) if pattern is not None and text else text
