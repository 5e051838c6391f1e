"""The replay engine runs each program with its own set of pending outputs (lab/replay/runtime.py
`_run`): an output that failed in an earlier program in the same process (Pulumi's mock runtime
keeps them process-wide, pulumi/runtime/mocks.py `MockSettings`) does not fail the next run."""

from __future__ import annotations

from pathlib import Path

from lab.replay import evaluate
from lab.replay.testing import write_project
from tests.helpers.pulumi_mocks import fail_a_program

PROGRAM = """
import pulumi
pulumi.export("answer", pulumi.Output.from_input(41).apply(lambda v: v + 1))
"""


def test_a_replay_after_a_failed_program_does_not_inherit_its_error(tmp_path: Path) -> None:
    fail_a_program()
    ev = evaluate(write_project(tmp_path, PROGRAM), "dev")
    assert ev.program_error == ""
    assert ev.outputs == {"answer": 42}
