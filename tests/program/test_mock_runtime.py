"""One program's failure stays with it: the SDK keeps a process-wide set of pending outputs
(pulumi/runtime/settings.py `Settings.outputs`, which `set_mocks`'s `MockSettings` never replaces,
pulumi/runtime/mocks.py) and `wait_for_rpcs` (pulumi/runtime/stack.py) awaits every task in it,
so an output that failed in an earlier program failed the next whole-program run with the
earlier error: tests/program/test_live_site_gate.py's refused site, run before
tests/program/test_db_replicas.py, failed its run with that LiveSiteError."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.pulumi_mocks import ProviderMocks, RecordingMonitor, fail_a_program, run_main

PROGRAM = """import pulumi
pulumi.export("answer", pulumi.Output.from_input(41).apply(lambda v: v + 1))
"""


def test_a_whole_program_run_after_a_failed_program_does_not_inherit_its_error(tmp_path: Path) -> None:
    fail_a_program()
    (tmp_path / "__main__.py").write_text(PROGRAM)
    monitor = RecordingMonitor(ProviderMocks())
    error = run_main(tmp_path, monitor, project="isolation", stack="test", config={})
    assert error == ""
    (exports,) = [v for urn, v in monitor.outputs.items() if "::pulumi:pulumi:Stack::" in urn]
    assert exports == {"answer": 42.0}
