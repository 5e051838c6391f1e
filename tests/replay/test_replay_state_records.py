"""The state's per-resource record holds what the engine's does beyond inputs and outputs: the
provider reference, created/modified times, and where the program registered the resource (its
source position and stack, which the SDK sends with every registration). The state's size is
a measured target (issue 11); a record without them would flatter it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from lab.replay import State, evaluate
from lab.replay.runners import LocalRunner
from lab.replay.runtime import project_position
from lab.replay.state import load, save
from lab.replay.testing import write_project

PROGRAM = """import pulumi
from pulumi_command import remote


def make(name):
    return remote.Command(name, connection=remote.ConnectionArgs(host="127.0.0.1"), create=pulumi.Config().require("create"))


make("a")
"""
LINES = PROGRAM.splitlines()
MADE = 1 + next(i for i, line in enumerate(LINES) if "return remote.Command(" in line)
CALLED = 1 + LINES.index('make("a")')


def _run(project: Path, create: str, state: State | None, at: datetime) -> State:
    ev = evaluate(project, "dev", config={"create": create}, state=state, preview=False, runner=LocalRunner(), now=lambda: at)
    assert ev.ok, ev.failed_steps
    return ev.state


def test_a_record_names_its_provider_times_and_where_the_program_made_it(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", PROGRAM)
    t0 = datetime(2026, 11, 29, 9, 0, 0, 123456, tzinfo=UTC)
    state = _run(project, "true", None, t0)
    (a,) = [r for r in state.resources if r.name == "a"]
    assert a.provider.startswith("urn:pulumi:dev::demo::pulumi:providers:command::default_1_2_1::")
    assert a.created == a.modified == "2026-11-29T09:00:00.123456000Z"
    # the SDK's stack: the call in make(), then its caller at the module's level, then the runtime
    assert a.source_position == f"project:///__main__.py#{MADE}"
    assert a.stack_trace[:2] == [f"project:///__main__.py#{MADE}", f"project:///__main__.py#{CALLED}"]
    assert len(a.stack_trace) > 5
    # at the bottom the language host's shape (sdk/python/cmd/pulumi-language-python-exec: the loop
    # run at module level, its `run` calling runpy): two frames of the replay's launcher stand for
    # those two, and the thread that runs the program adds none (threading's bootstrap, `target`)
    assert not [f for f in a.stack_trace if "/threading.py#" in f], a.stack_trace
    launcher = [i for i, f in enumerate(a.stack_trace) if "/lab/replay/runtime.py#" in f]
    assert launcher[-1] == len(a.stack_trace) - 1 and len(launcher) == 2, a.stack_trace
    record = a.to_json()
    assert record["stackTrace"][0] == {"sourcePosition": a.source_position} and {} not in record["stackTrace"][:2]
    # kept through the state file
    save(tmp_path / "s.json", state)
    again = {r.name: r for r in load(tmp_path / "s.json").resources}["a"]
    assert (again.provider, again.created, again.source_position, again.stack_trace) == (
        a.provider, a.created, a.source_position, a.stack_trace
    )
    # a same keeps both times, an update moves `modified` only (pulumi step.go)
    same = {r.name: r for r in _run(project, "true", state, t0 + timedelta(hours=1)).resources}["a"]
    assert (same.created, same.modified) == (a.created, a.modified)
    updated = {r.name: r for r in _run(project, "echo 2", state, t0 + timedelta(hours=2)).resources}["a"]
    assert updated.created == a.created and updated.modified == "2026-11-29T11:00:00.123456000Z"


def test_positions_are_relative_to_the_project_as_the_engine_writes_them() -> None:
    def pos(uri: str, line: int, column: int = 0) -> SimpleNamespace:
        return SimpleNamespace(uri=uri, line=line, column=column)

    assert project_position(pos("file:///p/components/x.py", 12), "/p") == "project:///components/x.py#12"
    assert project_position(pos("file:///usr/lib/python3.11/asyncio/events.py", 80), "/p") == (
        "project:///../usr/lib/python3.11/asyncio/events.py#80"
    )
    assert project_position(pos("file:///p/a%20b.py", 3, 7), "/p") == "project:///a%20b.py#3,7"
    assert project_position(None, "/p") == "" and project_position(pos("", 1), "/p") == ""
    assert project_position(pos("http://x/y.py", 1), "/p") == ""  # not a file: the engine drops it
