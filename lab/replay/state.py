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
