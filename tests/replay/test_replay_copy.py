"""`remote.CopyToRemote` in the replay engine, on a throwaway program with the local runner
(a relative remote path lands in $HOME, as SFTP's does in the SSH user's home).

What is copied from pulumi-command (provider/pkg/provider/remote/copyController.go) and the
engine (sdk/go/common/resource/asset/asset.go): the state holds the asset's path and SHA-256,
never its content; an update copies only when the hash or the remote path changed; a source at
another path with the same bytes is no change (assets compare by hash); a preview copies
nothing; delete leaves the copied file where it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lab.replay import State, evaluate
from lab.replay import destroy as replay_destroy
from lab.replay.props import ASSET_SIG, SIG_KEY
from lab.replay.runners import LocalRunner
from lab.replay.state import save
from lab.replay.testing import write_project

PROGRAM = """
import pulumi
from pulumi_command import remote

cfg = pulumi.Config()
remote.CopyToRemote(
    "up", connection=remote.ConnectionArgs(host="127.0.0.1"),
    source=pulumi.FileAsset(cfg.require("source")), remote_path=cfg.require("dest"),
)
"""


class Copy:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = write_project(tmp_path / "proj", PROGRAM)
        self.runner = LocalRunner()
        self.state: State | None = None

    def run(self, source: Path, dest: str, preview: bool = False) -> Any:
        ev = evaluate(self.dir, "dev", config={"source": str(source), "dest": dest}, state=self.state,
                      preview=preview, runner=self.runner, raise_on_error=False)
        assert ev.ok, ev.failed_steps
        if not preview:
            self.state = ev.state
        return ev

    def copies(self) -> list[dict[str, Any]]:
        return [c for c in self.runner.calls if "copy" in c]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    return h


def test_the_state_holds_the_hash_and_a_copy_happens_only_for_new_bytes_or_a_new_path(tmp_path: Path, home: Path) -> None:
    c = Copy(tmp_path)
    src = tmp_path / "helper.sh"
    src.write_text("echo one\n")
    assert c.run(src, ".staged.sh", preview=True).get("up").status == "create" and not c.copies()
    assert not (home / ".staged.sh").exists(), "a preview copied"
    ev = c.run(src, ".staged.sh")
    assert (home / ".staged.sh").read_text() == "echo one\n" and len(c.copies()) == 1
    source = ev.get("up").inputs["source"]
    assert source == {SIG_KEY: ASSET_SIG, "path": str(src), "hash": hashlib.sha256(b"echo one\n").hexdigest()}
    assert c.state is not None and "echo one" not in json.dumps(c.state.to_json())
    # the same bytes at another path (another checkout): no change, nothing copied
    moved = tmp_path / "elsewhere.sh"
    moved.write_text("echo one\n")
    assert c.run(moved, ".staged.sh").get("up").status == "same" and len(c.copies()) == 1
    # new bytes: an update that copies
    src.write_text("echo two\n")
    assert c.run(src, ".staged.sh").get("up").status == "update" and len(c.copies()) == 2
    assert (home / ".staged.sh").read_text() == "echo two\n"
    # a new remote path: an update that copies there; the old copy stays (no delete)
    assert c.run(src, "sub/dir/new.sh").get("up").status == "update" and len(c.copies()) == 3
    assert (home / "sub/dir/new.sh").read_text() == "echo two\n" and (home / ".staged.sh").exists()
    # destroy copies and deletes nothing
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert c.state is not None
    state_path = tmp_path / "state.json"
    save(state_path, c.state)
    gone = replay_destroy(c.dir, "dev", state_path, runner=c.runner)
    assert not gone.state.resources and len(c.copies()) == 3
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == before


def test_a_file_lands_inside_an_existing_directory(tmp_path: Path, home: Path) -> None:
    """copy.go's table: file source, destination an existing directory -> dest/<basename>."""
    c = Copy(tmp_path)
    src = tmp_path / "helper.sh"
    src.write_text("x\n")
    (home / "drop").mkdir()
    c.run(src, "drop")
    assert (home / "drop" / "helper.sh").read_text() == "x\n"
