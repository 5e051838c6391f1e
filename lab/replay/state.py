"""The replay engine's state file: what exists after the last run.

Owns reading and writing `.lab/state/<stack>.json` (mode 0600, atomic replace). The file holds
generated keys and passwords in clear, like an unencrypted Pulumi checkpoint, which is why it
is private to its owner and lives under the git-ignored `.lab/`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.replay import props
from lab.replay.model import ReplayError, Resource

VERSION = 1


@dataclass
class State:
    project: str = ""
    stack: str = ""
    resources: list[Resource] = field(default_factory=list)
    pending_deletes: list[Resource] = field(default_factory=list)
    """Old versions of replaced resources whose delete has not run (yet)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def by_urn(self) -> dict[str, Resource]:
        return {r.urn: r for r in self.resources}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "project": self.project,
            "stack": self.stack,
            "resources": [r.to_json() for r in self.resources],
            "pendingDeletes": [r.to_json() for r in self.pending_deletes],
            "outputs": self.outputs,
            "secretOutputs": sorted(self.secret_outputs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        if data.get("version") != VERSION:
            raise ReplayError(f"unsupported state version {data.get('version')!r} (expected {VERSION})")
        return cls(
            project=data.get("project", ""),
            stack=data.get("stack", ""),
            resources=[Resource.from_json(r) for r in data.get("resources", [])],
            pending_deletes=[Resource.from_json(r) for r in data.get("pendingDeletes", [])],
            outputs=data.get("outputs", {}),
            secret_outputs=set(data.get("secretOutputs", [])),
        )


NONCE_BYTES, TAG_BYTES = 12, 16
"""AES-256-GCM as Pulumi's passphrase and service secrets managers use it: a 12-byte nonce and a
16-byte tag (pulumi sdk/go/common/resource/config/crypt.go `symmetricCrypter.EncryptValue`:
`v1:<base64 nonce>:<base64 sealed>`)."""


def encrypted_bytes(state: State, *, compact: bool = False) -> int:
    """Bytes of this state's file if every secret value were stored as a Pulumi backend stores
    it: `{sig: secret, ciphertext: "v1:<nonce>:<sealed>"}` of the value's compact JSON (Go's
    `json.Marshal`, which also writes <, > and & as \\u003c...). The replay keeps secrets in clear,
    which is smaller: a figure from this file alone would flatter the program. `compact`: the
    whole checkpoint as the diy backend writes a `.json` stack file, compact and with <, > and &
    as they are (pulumi pkg/backend/diy/state.go `compactJSONMarshaler`, at 1b5949891b), each
    resource as the engine serializes it (`_resource_v3`)."""
    data = state.to_json()
    records = data["resources"] + data["pendingDeletes"]
    for record, res in zip(records, [*state.resources, *state.pending_deletes], strict=True):
        for side, paths in (("inputs", res.secret_inputs), ("outputs", res.secret_outputs)):
            record[side] = _sealed(record.get(side) or {}, paths)
    data["outputs"] = _sealed(data["outputs"], state.secret_outputs)
    if compact:
        data["resources"] = [_resource_v3(r) for r in data["resources"]]
        data["pendingDeletes"] = [{**_resource_v3(r), "delete": True} for r in data["pendingDeletes"]]
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    return len(json.dumps(data, indent=1)) + 1


def _resource_v3(record: dict[str, Any]) -> dict[str, Any]:
    """A (sealed) record as the engine writes a resource: apitype.ResourceV3 (pulumi
    sdk/go/common/apitype/core.go, filled by pkg/resource/stack/deployment.go `SerializeResource`
    at 1b5949891b). It has no name, no object of options (the ones the engine keeps are fields
    of their own, left out when empty or false: `omitempty`) and no lists of secret paths (a
    sealed value marks itself); `custom` and `type` are always written."""
    options = record.get("options") or {}
    out: dict[str, Any] = {"urn": record["urn"], "custom": record["custom"]}
    candidates = {
        "id": record.get("id"),
        "type": record["type"],
        "inputs": record.get("inputs"),
        "outputs": record.get("outputs"),
        "parent": record.get("parent"),
        "protect": options.get("protect"),
        "dependencies": record.get("dependencies"),
        "provider": record.get("provider"),
        "propertyDependencies": record.get("propertyDependencies"),
        "additionalSecretOutputs": options.get("additionalSecretOutputs"),
        "retainOnDelete": options.get("retainOnDelete"),
        "created": record.get("created"),
        "modified": record.get("modified"),
        "sourcePosition": record.get("sourcePosition"),
        "stackTrace": record.get("stackTrace"),
        "ignoreChanges": options.get("ignoreChanges"),
        "replaceOnChanges": options.get("replaceOnChanges"),
    }
    out.update({k: v for k, v in candidates.items() if v or k == "type"})
    return out


def _sealed(values: dict[str, Any], paths: set[str]) -> dict[str, Any]:
    out = json.loads(json.dumps(values))
    # outermost first: a secret inside a sealed value is not sealed again (pulumi
    # pkg/resource/stack/deployment.go `SerializePropertyValue` encrypts the outer value whole)
    for path in sorted(paths, key=len):
        *head, last = props.split_path(path)
        parent: Any = out
        for part in head:
            parent = parent[part] if _holds(parent, part) else None
        if not _holds(parent, last):
            continue
        plain = json.dumps(parent[last], separators=(",", ":"), ensure_ascii=False)
        plain = plain.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        sealed = len(plain.encode()) + TAG_BYTES
        ciphertext = f"v1:{'A' * _b64(NONCE_BYTES)}:{'A' * _b64(sealed)}"
        parent[last] = {props.SIG_KEY: props.SECRET_SIG, "ciphertext": ciphertext}
    return out


def _holds(container: Any, key: str | int) -> bool:
    """`container[key]` exists (a key of an object, or an index of a list: `a[0]` paths)."""
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and key < len(container)


def _b64(n: int) -> int:
    return 4 * ((n + 2) // 3)


def load(path: Path) -> State:
    """The state at `path`, or an empty state if the file does not exist."""
    if not path.exists():
        return State()
    try:
        return State.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError) as exc:
        raise ReplayError(f"cannot read state file {path}: {exc}") from exc


def save(path: Path, state: State) -> None:
    """Write atomically with mode 0600 (a crash leaves the old or the new file, never half)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state.to_json(), fh, indent=1, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
