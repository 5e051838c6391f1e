"""Aliases in the replay engine (pkg/resource/deploy/step_generator.go `getOldResource`,
`generateAliases`): a resource that moved under a new parent and names its old place in
`aliases` takes over its old record (no create, no delete, its delete script never runs); one that
moved without an alias is created anew and the old one deleted, as the real engine does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.replay import State, evaluate
from lab.replay.api import destroy
from lab.replay.runners import LocalRunner
from lab.replay.state import save
from lab.replay.testing import write_project

PROGRAM = """
import os
import pulumi
from pulumi_command import remote

LOG = {log!r}
MODE = pulumi.Config().require("mode")
conn = remote.ConnectionArgs(host="127.0.0.1")

def command(name, opts):
    return remote.Command(name, connection=conn, create=f"echo create {{name}} >> {{LOG}}",
                          delete=f"echo delete {{name}} >> {{LOG}}", opts=opts)

class Owner(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("x:index:Owner", name, None, opts)
        self.register_outputs({{}})

class Owner2(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("x:index:Owner2", name, None, opts)
        self.register_outputs({{}})

class Step(pulumi.ComponentResource):
    def __init__(self, name, owner, alias):
        super().__init__("x:index:Step", name, None, pulumi.ResourceOptions(parent=owner))
        command("proxy-site", pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=owner)] if alias else None))
        self.register_outputs({{}})

if MODE == "renamed":  # the owner itself renamed, with an alias: its child follows it
    owner = Owner("proxy2", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="proxy")]))
elif MODE == "unparented":  # the owner renamed AND of a new type, with an alias to both
    owner = Owner2("proxy2", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="proxy", type_="x:index:Owner")]))
else:
    owner = Owner("proxy")
if MODE == "before-prefixed":  # a child named with its parent's NEW name, under the old parent
    command("proxy2-site", pulumi.ResourceOptions(parent=owner))
elif MODE == "unparented":  # the child renamed too, its alias naming no parent
    command("z", pulumi.ResourceOptions(parent=owner, aliases=[pulumi.Alias(name="proxy2-site")]))
elif MODE == "before" or MODE == "renamed":
    command("proxy-site" if MODE == "before" else "proxy2-site", pulumi.ResourceOptions(parent=owner))
else:
    Step("final", owner, alias=MODE == "moved")
"""


def _run(project: Path, mode: str, state: State | None):
    ev = evaluate(project, "dev", config={"mode": mode}, state=state, preview=False, runner=LocalRunner(), raise_on_error=False)
    assert ev.ok, [s.error for s in ev.failed_steps] or ev.program_error
    return ev


def _project(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "log"
    log.touch()
    return write_project(tmp_path / "proj", PROGRAM.format(log=str(log))), log


def _upgrade(tmp_path: Path, mode: str, before_mode: str = "before") -> tuple[Path, Path, Any]:
    """`up` of the program as it was (`before_mode`), then of it in `mode`; the log holds the
    second run's commands only."""
    project, log = _project(tmp_path)
    before = _run(project, before_mode, None)
    log.write_text("")
    return project, log, _run(project, mode, before.state)


def test_a_moved_resource_with_its_alias_keeps_its_record(tmp_path: Path) -> None:
    _, log, after = _upgrade(tmp_path, "moved")
    ops = {s.name: s.op for s in after.steps}
    assert ops["proxy-site"] == "same" and "delete" not in ops.values(), ops
    assert log.read_text() == ""
    moved = after.get("proxy-site")
    assert moved.urn == "urn:pulumi:dev::demo::x:index:Owner$x:index:Step$command:remote:Command::proxy-site"
    assert moved.aliases == ["urn:pulumi:dev::demo::x:index:Owner$command:remote:Command::proxy-site"]
    assert [r.urn for r in after.state.resources].count(moved.urn) == 1
    assert moved.aliases[0] not in {r.urn for r in after.state.resources}


def test_a_moved_resource_without_an_alias_is_created_and_the_old_one_deleted(tmp_path: Path) -> None:
    _, log, after = _upgrade(tmp_path, "unaliased")
    assert sorted(log.read_text().splitlines()) == ["create proxy-site", "delete proxy-site"]
    assert [s.op for s in after.steps if s.name == "proxy-site"] == ["create", "delete"]


def test_a_child_follows_its_renamed_parent(tmp_path: Path) -> None:
    _, log, after = _upgrade(tmp_path, "renamed")
    ops = {s.name: s.op for s in after.steps}
    # inheritedChildAlias: "proxy2-site" under "proxy2" was "proxy-site" under "proxy"; an
    # update (its create text names it), never a create and a delete
    assert ops == {"proxy2": "same", "proxy2-site": "update"}, ops
    assert "delete" not in log.read_text()
    assert after.get("proxy2-site").aliases == ["urn:pulumi:dev::demo::x:index:Owner$command:remote:Command::proxy-site"]


def test_an_alias_naming_no_parent_stays_under_the_new_parent(tmp_path: Path) -> None:
    """`collapseAliasToUrn` takes only a NAMED alias parent at its old URN; an alias without one (the
    Python SDK sends no parentUrn for `Alias(name=...)`: runtime/resource.py `create_alias_spec`) is
    under the new parent, of a new type here, and reaches the old parent only through
    `inheritedChildAlias`, which swaps the name's parent prefix ("proxy2-site" -> "proxy-site"). So
    "proxy2-site" under the old `x:index:Owner` is not found: the engine creates "z" and deletes
    it (the replay once found it)."""
    _, log, after = _upgrade(tmp_path, "unparented", before_mode="before-prefixed")
    assert sorted(log.read_text().splitlines()) == ["create z", "delete proxy2-site"]
    assert [s.op for s in after.steps if s.name in ("z", "proxy2-site")] == ["create", "delete"]


def test_destroy_after_a_move_deletes_the_moved_resource_once(tmp_path: Path) -> None:
    project, log, after = _upgrade(tmp_path, "moved")
    log.write_text("")
    state_file = tmp_path / "state.json"
    save(state_file, after.state)
    ev = destroy(project, "dev", state_path=state_file, runner=LocalRunner())
    assert ev.ok
    assert log.read_text().splitlines() == ["delete proxy-site"]
