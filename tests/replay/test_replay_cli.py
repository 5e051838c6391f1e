"""Project/stack config as the CLI reads it, the masking helper, and the replay CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.replay import ReplayError, evaluate
from lab.replay.project import load_config, load_project
from lab.replay.props import Redactor, decode_struct, encode_struct
from lab.replay.testing import write_project

REPO = Path(__file__).resolve().parents[2]


def test_config_keys_namespaces_and_structured_values(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        "",
        name="proj",
        config={
            "plain": "x",
            "number": 3,
            "flag": True,
            "nodes": [{"name": "mm1", "address": "10.0.0.1"}],
            "other:key": "o",
        },
    )
    (tmp_path / "Pulumi.yaml").write_text("name: proj\nruntime: python\nconfig:\n  fromProject:\n    default: d\n")
    config = load_config(load_project(project), "dev", {"plain": "override"})
    assert json.loads(config.pop("proj:nodes")) == [{"name": "mm1", "address": "10.0.0.1"}]
    assert config == {
        "proj:fromProject": "d",
        "proj:plain": "override",
        "proj:number": "3",
        "proj:flag": "true",
        "other:key": "o",
    }


def test_stack_config_dir_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: proj\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks" / "Pulumi.lab.yaml").write_text("config:\n  proj:key: v\n")
    assert load_config(load_project(tmp_path), "lab") == {"proj:key": "v"}


def test_secure_values_are_refused_with_a_pointer_to_the_cli(tmp_path: Path) -> None:
    write_project(tmp_path, "", name="proj", config={"password": {"secure": "v1:abc"}})
    with pytest.raises(ReplayError, match=r"`proj:password`.*does not decrypt secrets.*pulumi up"):
        load_config(load_project(tmp_path), "dev")


def test_program_reads_its_config(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        import pulumi
        cfg = pulumi.Config()
        pulumi.export("nodes", cfg.require_object("nodes"))
        pulumi.export("name", pulumi.get_project() + "/" + pulumi.get_stack())
        """,
        config={"nodes": [{"name": "mm1"}]},
    )
    ev = evaluate(project, "dev")
    assert ev.outputs == {"nodes": [{"name": "mm1"}], "name": "demo/dev"}


def test_wire_round_trip_keeps_secret_paths() -> None:
    values = {"a": {"b": "s", "c": [1.0, "t"]}, "d": "plain"}
    struct = encode_struct(values, {"a.b", "a.c[1]"})
    plain, secrets = decode_struct(struct)
    assert plain == values
    assert secrets == {"a.b", "a.c[1]"}


def test_redactor_masks_whole_config_values_and_their_json_form_only() -> None:
    """logging.go `replacements`: whole values of 3+ bytes (not true/false) and the JSON-escaped
    form; a single line of a multi-line value is NOT masked (the engine does not either)."""
    redact = Redactor()
    pem = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----\n"
    redact.add(pem)
    redact.add('pa"ss<word')
    for short in ("ab", "true", "FALSE"):
        redact.add(short)
    text = redact(f"whole: {pem} json: {json.dumps(pem)} line: QUJDREVGR0hJSktMTU5PUA== ab true FALSE")
    assert text == 'whole: [secret] json: "[secret]" line: QUJDREVGR0hJSktMTU5PUA== ab true FALSE'
    # Go's json.Marshal escapes < as \u003c: that form is masked too
    assert redact('pa"ss<word / pa\\"ss\\u003cword') == "[secret] / [secret]"


TLS_ONLY = """
import pulumi, pulumi_tls as tls, pulumi_random as random
cfg = pulumi.Config()
key = tls.PrivateKey("key", algorithm="ED25519")
pw = random.RandomPassword("pw", length=cfg.get_int("len") or 16)
pulumi.export("public", key.public_key_openssh)
pulumi.export("password", pw.result)
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "lab.replay", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_cli_up_outputs_preview_destroy(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", TLS_ONLY)
    state = tmp_path / "state.json"
    common = ["--project-dir", str(project), "--stack", "dev", "--state", str(state)]

    first = cli("up", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Resources: 2 created, 0 updated, 0 replaced, 0 deleted, 0 unchanged" in first.stdout
    assert "password: [secret]" in first.stdout
    password = json.loads(state.read_text())["outputs"]["password"]
    assert password not in first.stdout

    again = cli("up", *common, cwd=tmp_path)
    assert "2 unchanged" in again.stdout and "0 created" in again.stdout

    shown = cli("outputs", *common, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["password"] == "[secret]"
    revealed = cli("outputs", *common, "--json", "--show-secrets", cwd=tmp_path)
    assert json.loads(revealed.stdout)["password"] == password

    (project / "Pulumi.dev.yaml").write_text("config:\n  len: 20\n")
    plan = cli("preview", *common, cwd=tmp_path)
    assert "+- random:index/randomPassword:RandomPassword" in plan.stdout
    assert "1 to replace" in plan.stdout
    assert json.loads(state.read_text())["outputs"]["password"] == password

    gone = cli("destroy", *common, cwd=tmp_path)
    assert gone.returncode == 0 and "2 deleted" in gone.stdout
    assert json.loads(state.read_text())["resources"] == []


def test_cli_refuses_secure_config(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", TLS_ONLY, config={"len": {"secure": "AAAA"}})
    done = cli("preview", "--project-dir", str(project), "--stack", "dev", cwd=tmp_path)
    assert done.returncode == 2
    assert "does not decrypt secrets" in done.stderr


def test_cli_reports_a_program_error(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "raise RuntimeError('bad config value for nodes')\n")
    done = cli("up", "--project-dir", str(project), "--stack", "dev", "--state", str(tmp_path / "s.json"), cwd=tmp_path)
    assert done.returncode == 1
    assert "bad config value for nodes" in done.stdout


def test_connection_address_stays_readable_but_credentials_do_not() -> None:
    from lab.replay.props import secret_strings

    values = {"connection": {"host": "10.251.0.101", "user": "root", "privateKey": "-----BEGIN KEY-----\nABCDEFGH\n"}}
    assert list(secret_strings(values, {"connection"})) == ["-----BEGIN KEY-----\nABCDEFGH\n"]


def test_cli_prints_a_config_error_before_anything_else(tmp_path: Path) -> None:
    """With resources in the state, a program that fails on its config gets no delete steps (the
    engine bails before it generates deletes), so its error is the first thing printed."""
    project = write_project(tmp_path / "p", TLS_ONLY)
    state = tmp_path / "state.json"
    common = ["--project-dir", str(project), "--stack", "dev", "--state", str(state)]
    assert cli("up", *common, cwd=tmp_path).returncode == 0
    (project / "__main__.py").write_text(
        "raise ValueError('mattermost-transport-encryption:nodes: bad value; use a list')\n"
    )
    for command in ("up", "preview"):
        done = cli(command, *common, cwd=tmp_path)
        assert done.returncode == 1
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert lines[0].startswith(("Updating (dev)", "Previewing update (dev)")), lines
        assert lines[1] == "error: the program failed:", lines
        assert "bad value; use a list" in done.stdout
        assert "SKIPPED" not in done.stdout and "delete" not in done.stdout.replace("0 deleted", "").replace(
            "0 to delete", ""
        )
    assert len(json.loads(state.read_text())["resources"]) == 2


def test_cli_default_parallel_is_four_per_cpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PULUMI_PARALLEL", "GOMAXPROCS")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "lab.replay", "--help"], env=env, capture_output=True, text=True, check=True
    )
    assert f"4 x CPUs = {4 * len(os.sched_getaffinity(0))})" in " ".join(done.stdout.split())


STDIN_PROGRAM = """
import pulumi
from pulumi_command import remote
cfg = pulumi.Config()
conn = remote.ConnectionArgs(host="127.0.0.1")
remote.Command("plain", connection=conn, create="cat > /dev/null", stdin=cfg.require("manifest"))
remote.Command("hidden", connection=conn, create="cat > /dev/null", stdin=pulumi.Output.secret(cfg.require("key")))
"""


def test_preview_diff_shows_changed_plain_stdin_lines_and_never_a_secret(tmp_path: Path) -> None:
    from lab.replay import api, report
    from lab.replay.runners import LocalRunner

    manifest = "file 0644 root:root aaa 2 /etc/a\nfile 0644 root:root bbb 2 /etc/b\n| systemctl restart x\n"
    project = write_project(tmp_path / "p", STDIN_PROGRAM, config={"manifest": manifest, "key": "SECRET-ONE"})
    state = tmp_path / "state.json"
    assert api.up(project, "dev", state_path=state, runner=LocalRunner()).ok
    (project / "Pulumi.dev.yaml").write_text(
        json.dumps({"config": {"manifest": manifest.replace("bbb", "ccc"), "key": "SECRET-TWO"}})
    )
    steps = []
    ev = api.preview(project, "dev", state_path=state, runner=LocalRunner(), on_step=steps.append)
    assert ev.ok
    shown = "\n".join(report.step_line(s, diff=True) for s in steps)
    assert "-file 0644 root:root bbb 2 /etc/b" in shown and "+file 0644 root:root ccc 2 /etc/b" in shown
    assert " | systemctl restart x" in shown, "context names what runs after the change"
    assert "SECRET" not in shown and "[diff: stdin]" in shown
    assert "/etc/b" not in "\n".join(report.step_line(s) for s in steps), "only with --diff"
