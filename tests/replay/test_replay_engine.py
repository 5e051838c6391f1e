"""Engine semantics of the replay engine, on throwaway programs with a local command runner.

Every command appends to a log file, so order and arguments of creates, updates and deletes
are observable without hosts.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest

from lab.replay import ReplayError, State, evaluate, up
from lab.replay import destroy as replay_destroy
from lab.replay.engine import Engine
from lab.replay.model import Resource
from lab.replay.runners import LocalRunner
from lab.replay.testing import write_project

# A program whose graph of remote.Commands comes from config, so each test states its graph.
SPEC_PROGRAM = """
import json
import pulumi
from pulumi_command import remote

cfg = pulumi.Config()
conn = remote.ConnectionArgs(host="127.0.0.1")
made = {}
for s in json.loads(cfg.require("spec")):
    stdin = s.get("stdin")
    if s.get("secretStdin"):
        stdin = pulumi.Output.secret(stdin)
    create = s.get("create")
    if s.get("secretCreate"):
        create = pulumi.Output.secret(create)
    opts = pulumi.ResourceOptions(
        depends_on=[made[d] for d in s.get("deps", [])],
        parent=made.get(s.get("parent")),
        delete_before_replace=s.get("dbr"),
        replace_on_changes=s.get("roc"),
        ignore_changes=s.get("ign"),
        additional_secret_outputs=s.get("aso"),
    )
    made[s["name"]] = remote.Command(
        s["name"], connection=conn, create=create, update=s.get("update"), delete=s.get("delete"),
        triggers=s.get("triggers"), stdin=stdin, environment=s.get("env"), opts=opts,
    )
    pulumi.export(s["name"], made[s["name"]].stdout)
"""


def log_cmd(log: Path, text: str, extra: str = "") -> str:
    return f"{extra}echo {shlex.quote(text)} >> {shlex.quote(str(log))}"


class Lab:
    """A project, a log, a runner and the state carried from run to run."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = write_project(tmp_path / "proj", SPEC_PROGRAM)
        self.log = tmp_path / "log"
        self.log.touch()
        self.runner = LocalRunner()
        self.state: State | None = None

    def run(self, spec: list[dict[str, Any]], *, preview: bool = False, **kw: Any):
        ev = evaluate(
            self.dir,
            "dev",
            config={"spec": spec},
            state=self.state,
            preview=preview,
            runner=self.runner,
            raise_on_error=False,
            **kw,
        )
        if not preview:
            self.state = ev.state
        return ev

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def clear(self) -> None:
        self.log.write_text("")


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def ops(ev) -> dict[str, str]:
    """The step each resource got this run (a later delete-replaced of the same name not included)."""
    out: dict[str, str] = {}
    for s in ev.steps:
        out.setdefault(s.name, s.op)
    return out


def test_creates_follow_dependencies(lab: Lab) -> None:
    spec = [
        {"name": "a", "create": log_cmd(lab.log, "a", "sleep 0.3; ")},
        {"name": "b", "create": log_cmd(lab.log, "b"), "deps": ["a"]},
        {"name": "c", "create": log_cmd(lab.log, "c"), "deps": ["b"]},
    ]
    ev = lab.run(spec)
    assert ev.ok, ev.failed_steps
    assert lab.lines() == ["a", "b", "c"]
    assert ev.get("c").dependencies == [ev.get("b").urn]


def rendezvous(tmp: Path, me: str, other: str) -> str:
    """Create my flag, then wait (at most ~2 s) for the other's: succeeds only if both run at once."""
    mine, theirs = shlex.quote(str(tmp / me)), shlex.quote(str(tmp / other))
    return f"touch {mine}; i=0; while [ ! -e {theirs} ]; do i=$((i+1)); [ $i -gt 40 ] && exit 7; sleep 0.05; done"


def test_independent_resources_run_concurrently(lab: Lab, tmp_path: Path) -> None:
    spec = [
        {"name": "x", "create": rendezvous(tmp_path, "x.flag", "y.flag")},
        {"name": "y", "create": rendezvous(tmp_path, "y.flag", "x.flag")},
    ]
    assert lab.run(spec, parallel=4).ok


def test_parallel_bounds_concurrency(lab: Lab, tmp_path: Path) -> None:
    spec = [
        {"name": "x", "create": rendezvous(tmp_path, "x.flag", "y.flag")},
        {"name": "y", "create": rendezvous(tmp_path, "y.flag", "x.flag")},
    ]
    ev = lab.run(spec, parallel=1)
    # One at a time: the first waits for a partner that never starts and fails.
    assert not ev.ok
    assert "Process exited with status 7" in ev.failed_steps[0].error


def test_second_run_changes_nothing_and_reuses_outputs(lab: Lab) -> None:
    spec = [{"name": "a", "create": log_cmd(lab.log, "a", "echo out-a; ")}]
    first = lab.run(spec)
    calls = len(lab.runner.calls)
    second = lab.run(spec)
    assert ops(second) == {"a": "same"}
    assert len(lab.runner.calls) == calls
    assert second.outputs["a"] == first.outputs["a"] == "out-a"
    assert lab.lines() == ["a"]


def test_changed_create_is_an_in_place_update(lab: Lab) -> None:
    lab.run([{"name": "a", "create": log_cmd(lab.log, "v1"), "delete": log_cmd(lab.log, "del")}])
    ev = lab.run([{"name": "a", "create": log_cmd(lab.log, "v2"), "delete": log_cmd(lab.log, "del")}])
    assert ops(ev) == {"a": "update"}
    assert ev.steps[0].changed == ["create"]
    assert lab.lines() == ["v1", "v2"]  # no delete


def test_update_runs_update_when_set(lab: Lab) -> None:
    base = {"name": "a", "create": log_cmd(lab.log, "create"), "update": log_cmd(lab.log, "update"), "stdin": "1"}
    lab.run([base])
    lab.run([{**base, "stdin": "2"}])
    assert lab.lines() == ["create", "update"]


def test_changing_only_delete_reruns_create(lab: Lab) -> None:
    lab.run([{"name": "a", "create": log_cmd(lab.log, "create"), "delete": log_cmd(lab.log, "d1")}])
    ev = lab.run([{"name": "a", "create": log_cmd(lab.log, "create"), "delete": log_cmd(lab.log, "d2")}])
    assert ops(ev) == {"a": "update"}
    assert lab.lines() == ["create", "create"]


def test_update_sees_previous_stdout(lab: Lab) -> None:
    lab.run([{"name": "a", "create": "echo first"}])
    ev = lab.run([{"name": "a", "create": 'echo "was:$PULUMI_COMMAND_STDOUT"'}])
    assert ev.outputs["a"] == "was:first"


def test_triggers_replace_create_before_delete_with_old_inputs(lab: Lab) -> None:
    def spec(version: str) -> list[dict[str, Any]]:
        return [
            {
                "name": "a",
                "create": log_cmd(lab.log, f"create {version}"),
                "delete": f"cat >> {shlex.quote(str(lab.log))}",
                "stdin": f"delete with stdin of {version}\n",
                "triggers": [version],
            },
            {"name": "z", "create": log_cmd(lab.log, f"create z {version}"), "triggers": [version], "deps": ["a"]},
        ]

    lab.run(spec("v1"))
    lab.clear()
    ev = lab.run(spec("v2"))
    assert ops(ev)["a"] == "replace"
    # The old delete runs at the end of the run (after every create), with the OLD stdin.
    assert lab.lines() == ["create v2", "create z v2", "delete with stdin of v1"]
    assert [s.op for s in ev.steps if s.name == "a"] == ["replace", "delete-replaced"]
    assert ev.state.pending_deletes == []


def test_delete_before_replace_deletes_first(lab: Lab) -> None:
    def spec(version: str) -> list[dict[str, Any]]:
        return [
            {
                "name": "a",
                "create": log_cmd(lab.log, f"create {version}"),
                "delete": log_cmd(lab.log, f"delete {version}"),
                "triggers": [version],
                "dbr": True,
            }
        ]

    lab.run(spec("v1"))
    lab.run(spec("v2"))
    assert lab.lines() == ["create v1", "delete v1", "create v2"]


def test_replace_on_changes_forces_replacement(lab: Lab) -> None:
    lab.run([{"name": "a", "create": log_cmd(lab.log, "c"), "stdin": "1", "roc": ["stdin"]}])
    ev = lab.run([{"name": "a", "create": log_cmd(lab.log, "c"), "stdin": "2", "roc": ["stdin"]}])
    assert ops(ev)["a"] == "replace"


def test_ignore_changes_keeps_old_value(lab: Lab) -> None:
    lab.run([{"name": "a", "create": log_cmd(lab.log, "c"), "stdin": "1", "ign": ["stdin"]}])
    ev = lab.run([{"name": "a", "create": log_cmd(lab.log, "c"), "stdin": "2", "ign": ["stdin"]}])
    assert ops(ev) == {"a": "same"}
    assert ev.get("a").inputs["stdin"] == "1"


def test_removed_resources_are_deleted_dependents_first(lab: Lab) -> None:
    def res(name: str, **kw: Any) -> dict[str, Any]:
        return {"name": name, "create": "true", "delete": log_cmd(lab.log, f"delete {name}"), **kw}

    lab.run([res("a"), res("b", deps=["a"]), res("c", deps=["b"]), res("p"), res("q", parent="p"), res("keep")])
    ev = lab.run([res("keep")])
    lines = lab.lines()
    assert set(lines) == {"delete a", "delete b", "delete c", "delete p", "delete q"}
    assert lines.index("delete c") < lines.index("delete b") < lines.index("delete a")
    assert lines.index("delete q") < lines.index("delete p")
    assert [r.name for r in ev.state.resources] == ["keep"]
    assert {s.name: s.op for s in ev.steps if s.op == "delete"}.keys() == {"a", "b", "c", "p", "q"}


def test_destroy_deletes_everything_in_reverse_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    project = write_project(tmp_path / "proj", SPEC_PROGRAM)
    spec = [
        {"name": "a", "create": "echo a", "delete": log_cmd(log, "delete a")},
        {"name": "b", "create": "echo b", "delete": log_cmd(log, "delete b"), "deps": ["a"]},
    ]
    state_path = tmp_path / "state.json"
    runner = LocalRunner()
    assert up(project, "dev", state_path, config={"spec": spec}, runner=runner).ok
    ev = replay_destroy(project, "dev", state_path, runner=runner)
    assert ev.ok
    assert log.read_text().splitlines() == ["delete b", "delete a"]
    saved = json.loads(state_path.read_text())
    assert saved["resources"] == [] and saved["outputs"] == {}


def test_failed_step_stops_dependents_and_keeps_what_succeeded(lab: Lab) -> None:
    spec = [
        {"name": "a", "create": log_cmd(lab.log, "a")},
        {"name": "b", "create": "echo boom-out; echo boom-err >&2; exit 3", "deps": ["a"]},
        {"name": "c", "create": log_cmd(lab.log, "c"), "deps": ["b"]},
    ]
    ev = lab.run(spec)
    assert not ev.ok
    results = {s.name: s.result for s in ev.steps}
    assert results == {"a": "ok", "b": "failed", "c": "skipped"}
    error = ev.failed_steps[0].error
    assert "Process exited with status 3" in error
    assert "boom-out" in error and "boom-err" in error and "exit 3" in error
    assert [r.name for r in ev.state.resources] == ["a"]
    # Fixed, the next run creates only what is missing.
    spec[1]["create"] = "echo fixed"
    again = lab.run(spec)
    assert again.ok
    assert ops(again) == {"a": "same", "b": "create", "c": "create"}
    assert lab.lines() == ["a", "c"]


def test_a_failure_skips_deletes(lab: Lab) -> None:
    lab.run([{"name": "old", "create": "true", "delete": log_cmd(lab.log, "delete old")}])
    ev = lab.run([{"name": "bad", "create": "exit 1"}])
    assert not ev.ok
    assert lab.lines() == []
    assert [r.name for r in ev.state.resources] == ["old"]
    assert any(s.name == "old" and s.result == "skipped" for s in ev.steps)


def test_failure_stops_steps_not_started_unless_continue_on_error() -> None:
    """Engine level, so the order of registrations is fixed."""

    class Failing(LocalRunner):
        def run(self, connection, command, **kw):  # type: ignore[no-untyped-def]
            return super().run(connection, command, **kw)

    def command(name: str, create: str) -> Resource:
        return Resource(
            urn=f"urn:pulumi:s::p::command:remote:Command::{name}",
            type="command:remote:Command",
            name=name,
            parent_urn=None,
            custom=True,
            inputs={"connection": {"host": "x"}, "create": create},
        )

    for continue_on_error, expected in ((False, "skipped"), (True, "create")):
        engine = Engine(old=State(), preview=False, runner=Failing(), continue_on_error=continue_on_error)
        assert engine.register(command("bad", "exit 1")).status == "failed"
        assert engine.register(command("later", "true")).status == expected


def test_a_failing_command_shows_what_its_secret_stdin_echoed(lab: Lab) -> None:
    """commandOutputs.go `run` puts ALL output into the error; the engine masks config secrets
    only, so a script that echoes its secret stdin leaks it (the program must not do that)."""
    secret = "s3cr3t-value-in-stdin"
    ev = lab.run([{"name": "a", "create": "cat; exit 1", "stdin": secret + "\n", "secretStdin": True}])
    assert ev.failed_steps[0].error == 'Process exited with status 1: running "cat; exit 1":\n' + secret + "\n"


def test_secret_outputs_are_not_withheld_from_errors(lab: Lab) -> None:
    create = "echo out-line; echo secret-output >&2; exit 1"
    ev = lab.run([{"name": "a", "create": create, "aso": ["stdout", "stderr"]}])
    error = ev.failed_steps[0].error
    assert error.startswith("Process exited with status 1: running ")
    assert error.endswith(":\nout-line\nsecret-output\n"), error


def test_a_secret_command_text_is_shown_whole_and_go_quoted(lab: Lab) -> None:
    create = 'echo "topsecret-in-command" >/dev/null\nexit 2'
    ev = lab.run([{"name": "a", "create": create, "secretCreate": True}])
    assert ev.failed_steps[0].error == (
        'Process exited with status 2: running "echo \\"topsecret-in-command\\" >/dev/null\\nexit 2":\n'
    )


def test_only_secret_config_values_are_masked(lab: Lab) -> None:
    """events.go `makeEventEmitter`: the secure config values, whether the program uses them or not."""
    from lab.replay import Secret

    ev = evaluate(
        lab.dir,
        "dev",
        config={
            "spec": [{"name": "a", "create": "echo config-secret-value; echo plain-config-value; exit 1"}],
            "token": Secret("config-secret-value"),
            "name": "plain-config-value",
        },
        preview=False,
        runner=lab.runner,
        raise_on_error=False,
    )
    error = ev.failed_steps[0].error
    assert "config-secret-value" not in error
    assert error.endswith(":\n[secret]\nplain-config-value\n"), error


def test_go_quote_matches_strconv_quote() -> None:
    from lab.replay.providers.command import go_quote

    # strconv.Quote's rules (appendQuotedWith): \\ \" and \a..\v escaped, unicode.IsPrint kept, else \x, \u, \U
    assert go_quote("set -eu\n") == '"set -eu\\n"'
    assert go_quote('a"b\\c\t') == '"a\\"b\\\\c\\t"'
    assert go_quote("\x01\x7f") == '"\\x01\\x7f"'
    assert go_quote("é €") == '"é €"'
    assert go_quote("\u200b\u00a0") == '"\\u200b\\u00a0"'
    assert go_quote("\U0001f600\U000e0001") == '"\U0001f600\\U000e0001"'


def test_environment_reaches_the_command(lab: Lab) -> None:
    ev = lab.run([{"name": "a", "create": 'echo "$GREETING"', "env": {"GREETING": "hello"}}])
    assert ev.outputs["a"] == "hello"
    assert lab.runner.calls[-1]["environment"] == {"GREETING": "hello"}


def test_preview_runs_nothing_and_plans_the_diff(lab: Lab) -> None:
    spec = [{"name": "a", "create": log_cmd(lab.log, "v1")}]
    lab.run(spec)
    before = json.dumps(lab.state.to_json())
    calls = len(lab.runner.calls)
    ev = lab.run([{"name": "a", "create": log_cmd(lab.log, "v2")}, {"name": "b", "create": "true"}], preview=True)
    assert len(lab.runner.calls) == calls
    assert {s.name: (s.op, s.result) for s in ev.steps} == {"a": ("update", "planned"), "b": ("create", "planned")}
    assert json.dumps(lab.state.to_json()) == before
    assert lab.lines() == ["v1"]


def test_duplicate_urns_fail_the_program(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        from pulumi_command import remote
        remote.Command("same", connection=remote.ConnectionArgs(host="h"), create="true")
        remote.Command("same", connection=remote.ConnectionArgs(host="h"), create="true")
        """,
    )
    with pytest.raises(
        ReplayError, match=r"Duplicate resource URN 'urn:pulumi:dev::demo::command:remote:Command::same'"
    ):
        evaluate(project, "dev")


def test_urns_carry_the_parent_type_chain(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        import pulumi
        from pulumi_command import remote

        class Outer(pulumi.ComponentResource):
            def __init__(self, name):
                super().__init__("x:index:Outer", name)
                self.inner = Inner("inner", pulumi.ResourceOptions(parent=self))
                self.register_outputs({})

        class Inner(pulumi.ComponentResource):
            def __init__(self, name, opts):
                super().__init__("x:index:Inner", name, None, opts)
                remote.Command("same", connection=remote.ConnectionArgs(host="h"), create="true",
                               opts=pulumi.ResourceOptions(parent=self))
                self.register_outputs({})

        Outer("o")
        remote.Command("same", connection=remote.ConnectionArgs(host="h"), create="true")
        """,
    )
    ev = evaluate(project, "dev")
    urns = [r.urn for r in ev.resources]
    assert "urn:pulumi:dev::demo::x:index:Outer$x:index:Inner$command:remote:Command::same" in urns
    assert "urn:pulumi:dev::demo::command:remote:Command::same" in urns
    inner = ev.get("inner")
    assert inner.parent_urn == ev.get("o").urn
    assert [r.name for r in ev.descendants(ev.get("o"))] == ["inner", "same"]


def test_secret_outputs_reach_the_program(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        import pulumi, pulumi_tls as tls
        from pulumi_command import remote
        key = tls.PrivateKey("k", algorithm="ED25519")
        c = remote.Command("c", connection=remote.ConnectionArgs(host="h"), create="echo x",
                           opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
        d = remote.Command("d", connection=remote.ConnectionArgs(host="h"), create="echo y")
        pulumi.export("private", key.private_key_pem)
        pulumi.export("public", key.public_key_openssh)
        pulumi.export("c", c.stdout)
        pulumi.export("d", d.stdout)
        """,
    )
    ev = evaluate(project, "dev", preview=False, runner=LocalRunner())
    assert ev.secret_outputs == {"private", "c"}
    assert ev.outputs["c"] == "x" and ev.outputs["d"] == "y"
    assert ev.get("c").secret_outputs >= {"stdout", "connection"}
    assert ev.get("c").is_secret_input("connection.host")


def test_state_file_is_private_and_round_trips(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        """
        import pulumi, pulumi_random as random
        pulumi.export("pw", random.RandomPassword("pw", length=20).result)
        """,
    )
    path = tmp_path / "state" / "dev.json"
    first = up(project, "dev", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = up(project, "dev", path)
    assert second.outputs["pw"] == first.outputs["pw"]
    assert {s.op for s in second.steps} == {"same"}


def test_program_error_deletes_nothing(lab: Lab) -> None:
    lab.run([{"name": "old", "create": "true", "delete": log_cmd(lab.log, "delete old")}])
    ev = lab.run([{"name": "x", "create": "true", "deps": ["missing"]}])
    assert "KeyError" in ev.program_error
    assert lab.lines() == []
    assert [r.name for r in ev.state.resources] == ["old"]


def test_evaluations_in_one_process_do_not_share_program_modules(tmp_path: Path) -> None:
    program = """
        import pulumi, helper
        pulumi.export("value", helper.VALUE)
        """
    one = write_project(tmp_path / "one", program, files={"helper.py": "VALUE = 'one'\n"})
    two = write_project(tmp_path / "two", program, files={"helper.py": "VALUE = 'two'\n"})
    assert evaluate(one, "dev").outputs["value"] == "one"
    assert evaluate(two, "dev").outputs["value"] == "two"
    assert evaluate(one, "dev").outputs["value"] == "one"


def test_commands_containing(lab: Lab) -> None:
    ev = lab.run([{"name": "a", "create": "echo needle", "delete": "echo other"}], preview=True)
    assert ev.any_command_contains("needle") and ev.any_command_contains("other")
    assert not ev.any_command_contains("absent")
    assert [r.name for r in ev.commands_containing("needle")] == ["a"]


def test_a_failed_old_delete_is_retried_on_the_next_run(lab: Lab, tmp_path: Path) -> None:
    flag = tmp_path / "may-delete"

    def spec(version: str) -> list[dict[str, Any]]:
        delete = f"[ -e {shlex.quote(str(flag))} ] && " + log_cmd(lab.log, f"delete {version}")
        return [{"name": "a", "create": log_cmd(lab.log, f"create {version}"), "delete": delete, "triggers": [version]}]

    lab.run(spec("v1"))
    failed = lab.run(spec("v2"))
    assert not failed.ok
    assert [r.name for r in failed.state.pending_deletes] == ["a"]
    assert failed.state.by_urn()[failed.get("a").urn].outputs["create"].startswith("echo 'create v2'")
    flag.touch()
    retried = lab.run(spec("v2"))
    assert retried.ok
    assert [(s.op, s.result) for s in retried.steps] == [("same", "ok"), ("delete-replaced", "ok")]
    assert retried.state.pending_deletes == []
    assert lab.lines() == ["create v1", "create v2", "delete v1"]


def test_delete_before_replace_with_a_failing_create_leaves_nothing(lab: Lab) -> None:
    lab.run([{"name": "a", "create": "true", "triggers": ["1"], "dbr": True}])
    ev = lab.run([{"name": "a", "create": "exit 1", "triggers": ["2"], "dbr": True}])
    assert not ev.ok
    assert ev.state.resources == []


def test_a_failed_delete_keeps_it_and_what_it_depends_on(lab: Lab) -> None:
    def res(name: str, delete: str, **kw: Any) -> dict[str, Any]:
        return {"name": name, "create": "true", "delete": delete, **kw}

    lab.run([res("base", log_cmd(lab.log, "delete base")), res("top", "exit 9", deps=["base"])])
    ev = lab.run([])
    assert {s.name: s.result for s in ev.steps} == {"top": "failed", "base": "skipped"}
    assert lab.lines() == []
    assert sorted(r.name for r in ev.state.resources) == ["base", "top"]


def test_exports_of_failed_steps_keep_their_last_value(lab: Lab) -> None:
    lab.run([{"name": "a", "create": "echo one"}])
    ev = lab.run([{"name": "a", "create": "exit 1"}])
    assert not ev.ok
    assert ev.state.outputs == {"a": "one"}


def test_preview_leaves_values_unknown_that_wait_on_a_command(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        import pulumi, pulumi_tls as tls
        from pulumi_command import remote
        made = remote.Command("make-key", connection=remote.ConnectionArgs(host="h"), create="openssl genpkey")
        csr = tls.CertRequest("csr", private_key_pem=made.stdout, subject={"common_name": "x"},
                              opts=pulumi.ResourceOptions(provider=tls.Provider("explicit")))
        pulumi.export("csr", csr.cert_request_pem)
        """,
    )
    ev = evaluate(project, "dev")
    assert not ev.output_is_known("csr")
    assert {s.name: s.op for s in ev.steps} == {"explicit": "create", "make-key": "create", "csr": "create"}
    assert ev.get("explicit").type == "pulumi:providers:tls"
