"""Runs the rendered file/block scripts for real (POSIX sh, as root) in a temporary tree."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from components.remote_files import ManagedFile, managed_block, managed_files
from components.remote_files_render import (
    FileSpec,
    encode_bundle,
    render_block_apply,
    render_block_restore,
    render_files_apply,
    render_files_restore,
)
from tests.helpers.scripts import SHELLS, run_script, syntax_ok, tree_digest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.conf").write_text("original = 1\n")
    (etc / "app.conf").chmod(0o644)
    return {"root": tmp_path, "etc": etc, "state": tmp_path / "state", "log": tmp_path / "activations"}


def specs(env: dict[str, Path]) -> list[FileSpec]:
    return [
        FileSpec(str(env["etc"] / "app.conf"), "0640", "root", "root"),
        FileSpec(str(env["etc"] / "new" / "deep" / "key.pem"), "0600"),
    ]


def activate(env: dict[str, Path]) -> str:
    return f"echo activated >> {env['log']}"


def activations(env: dict[str, Path]) -> int:
    return len(env["log"].read_text().splitlines()) if env["log"].exists() else 0


@pytest.mark.parametrize("shell", SHELLS)
def test_apply_is_idempotent_and_restore_is_byte_identical(env: dict[str, Path], shell: str) -> None:
    before = tree_digest(env["etc"])
    s = specs(env)
    apply = render_files_apply("owner-a", s, activate=activate(env), state_dir=str(env["state"]))
    bundle = encode_bundle(["new = 2\n", "SECRET KEY\n"])
    r = run_script(apply, bundle, shell)
    assert r.returncode == 0, r.stderr
    assert "owner-a: changed" in r.stdout
    assert (env["etc"] / "app.conf").read_text() == "new = 2\n"
    assert oct((env["etc"] / "app.conf").stat().st_mode & 0o777) == "0o640"
    assert oct((env["etc"] / "new/deep/key.pem").stat().st_mode & 0o777) == "0o600"
    assert activations(env) == 1
    assert "SECRET" not in r.stdout + r.stderr

    r = run_script(apply, bundle, shell)
    assert r.returncode == 0, r.stderr
    assert "owner-a: unchanged" in r.stdout
    assert activations(env) == 1, "unchanged content must not activate again"

    restore = render_files_restore("owner-a", s, restore_activate=activate(env), state_dir=str(env["state"]))
    r = run_script(restore, "", shell)
    assert r.returncode == 0, r.stderr
    assert tree_digest(env["etc"]) == before, "originals back, created dirs gone"
    assert not env["state"].exists(), "no state left behind"
    assert activations(env) == 2


def test_failed_validation_keeps_previous_files(env: dict[str, Path]) -> None:
    s = specs(env)
    before = tree_digest(env["etc"])
    apply = render_files_apply(
        "owner-a", s, validate="echo 'config test failed: bad line 3' >&2; false",
        activate=activate(env), state_dir=str(env["state"]),
    )
    r = run_script(apply, encode_bundle(["bad\n", "k\n"]))
    assert r.returncode != 0
    assert "bad line 3" in r.stderr and "validation failed" in r.stderr
    assert tree_digest(env["etc"]) == before
    assert activations(env) == 0
    assert not env["state"].exists(), "a failed first apply leaves no backup or state behind"


def test_multi_step_activation_failure_rolls_back_and_reactivates(env: dict[str, Path]) -> None:
    s = specs(env)
    good = render_files_apply("o", s, activate=activate(env), state_dir=str(env["state"]))
    assert run_script(good, encode_bundle(["v1\n", "k1\n"])).returncode == 0
    # first step fails, second succeeds: the failure must still count
    bad = render_files_apply(
        "o", s, activate=f"false\n{activate(env)}", state_dir=str(env["state"])
    )
    r = run_script(bad, encode_bundle(["v2\n", "k2\n"]))
    assert r.returncode != 0 and "activation failed" in r.stderr
    assert (env["etc"] / "app.conf").read_text() == "v1\n"
    assert (env["etc"] / "new/deep/key.pem").read_text() == "k1\n"
    # restore still brings back the true original, not v1
    r = run_script(render_files_restore("o", s, state_dir=str(env["state"])))
    assert r.returncode == 0, r.stderr
    assert (env["etc"] / "app.conf").read_text() == "original = 1\n"
    assert not (env["etc"] / "new").exists()


def test_create_before_delete_old_delete_leaves_new_files(env: dict[str, Path]) -> None:
    """Replacement: the new owner's create runs first, then the old owner's delete."""
    s = specs(env)
    st = str(env["state"])
    assert run_script(render_files_apply("old", s, state_dir=st), encode_bundle(["old\n", "k\n"])).returncode == 0
    assert run_script(render_files_apply("new", s, state_dir=st), encode_bundle(["new\n", "k2\n"])).returncode == 0
    r = run_script(render_files_restore("old", s, state_dir=st))
    assert r.returncode == 0 and "belongs to another resource" in r.stdout
    assert (env["etc"] / "app.conf").read_text() == "new\n"
    r = run_script(render_files_restore("new", s, state_dir=st))
    assert r.returncode == 0
    assert (env["etc"] / "app.conf").read_text() == "original = 1\n"


def test_truncated_input_fails_without_touching_files(env: dict[str, Path]) -> None:
    before = tree_digest(env["etc"])
    r = run_script(render_files_apply("o", specs(env), state_dir=str(env["state"])), encode_bundle(["only one\n"]))
    assert r.returncode != 0 and "input ended after 1 of 2" in r.stderr
    assert tree_digest(env["etc"]) == before


def test_restore_activate_failure_fails_delete_but_files_are_back(env: dict[str, Path]) -> None:
    s = specs(env)
    st = str(env["state"])
    assert run_script(render_files_apply("o", s, state_dir=st), encode_bundle(["x\n", "y\n"])).returncode == 0
    r = run_script(render_files_restore("o", s, restore_activate="echo reload failed >&2; exit 3", state_dir=st))
    assert r.returncode != 0 and "reload failed" in r.stderr
    assert (env["etc"] / "app.conf").read_text() == "original = 1\n"
    # a retry converges
    assert run_script(render_files_restore("o", s, state_dir=st)).returncode == 0


def test_symlinked_path_is_replaced_and_link_restored(env: dict[str, Path]) -> None:
    target = env["etc"] / "sites-available"
    target.write_text("site\n")
    link = env["etc"] / "site-link"
    link.symlink_to(target)
    s = [FileSpec(str(link))]
    st = str(env["state"])
    before = tree_digest(env["etc"])
    assert run_script(render_files_apply("o", s, state_dir=st), encode_bundle(["mine\n"])).returncode == 0
    assert not link.is_symlink() and link.read_text() == "mine\n"
    assert target.read_text() == "site\n"
    assert run_script(render_files_restore("o", s, state_dir=st)).returncode == 0
    assert tree_digest(env["etc"]) == before


def test_a_file_that_cannot_be_installed_puts_back_what_was_replaced(env: dict[str, Path]) -> None:
    """Disk full, read-only, a file where a directory must be: never half a set, and say which path."""
    (env["etc"] / "blocker").write_text("a file, not a directory\n")
    st = str(env["state"])
    s = [FileSpec(str(env["etc"] / "app.conf")), FileSpec(str(env["etc"] / "blocker" / "key.pem"), "0600")]
    before = tree_digest(env["etc"])
    r = run_script(render_files_apply("o", s, activate=activate(env), state_dir=st), encode_bundle(["new\n", "k\n"]))
    assert r.returncode != 0
    assert f"could not install {env['etc']}/blocker/key.pem" in r.stderr, r.stderr
    assert "the previous files are back in place" in r.stderr
    assert tree_digest(env["etc"]) == before and activations(env) == 0
    assert not env["state"].exists(), "a failed first apply leaves no backup or state behind"


def test_a_failed_install_on_update_keeps_the_previous_version(env: dict[str, Path]) -> None:
    st = str(env["state"])
    s = specs(env)
    assert run_script(render_files_apply("o", s, state_dir=st), encode_bundle(["v1\n", "k1\n"])).returncode == 0
    (env["etc"] / "blocker").write_text("x\n")
    grown = [*s, FileSpec(str(env["etc"] / "blocker" / "more.pem"))]
    r = run_script(render_files_apply("o", grown, activate=activate(env), state_dir=st), encode_bundle(["v2\n", "k2\n", "m\n"]))
    assert r.returncode != 0 and "could not install" in r.stderr
    assert (env["etc"] / "app.conf").read_text() == "v1\n"
    assert (env["etc"] / "new/deep/key.pem").read_text() == "k1\n"
    assert activations(env) == 0
    (env["etc"] / "blocker").unlink()
    assert run_script(render_files_restore("o", s, state_dir=st)).returncode == 0
    assert (env["etc"] / "app.conf").read_text() == "original = 1\n"
    assert not env["state"].exists()


def assert_restored(env: dict[str, Path], s: list[FileSpec], before: dict[str, tuple[str, int]]) -> None:
    """Owner "o"'s delete of `s` succeeds, leaves /etc as it was (`before`) and no state behind."""
    assert run_script(render_files_restore("o", s, state_dir=str(env["state"]))).returncode == 0
    assert tree_digest(env["etc"]) == before
    assert not env["state"].exists()


def moved(env: dict[str, Path]) -> list[FileSpec]:
    """specs(env) after a config change moved both files elsewhere."""
    return [
        FileSpec(str(env["etc"] / "app-v2.conf"), "0640", "root", "root"),
        FileSpec(str(env["etc"] / "other" / "key.pem"), "0600"),
    ]


def test_paths_no_longer_listed_get_their_originals_back(env: dict[str, Path]) -> None:
    """A moved TLS dir must not leave the old key behind (destroy only knows the new paths)."""
    st = str(env["state"])
    before = tree_digest(env["etc"])
    assert run_script(render_files_apply("o", specs(env), state_dir=st), encode_bundle(["v1\n", "SECRET\n"])).returncode == 0
    r = run_script(render_files_apply("o", moved(env), activate=activate(env), state_dir=st), encode_bundle(["v2\n", "K\n"]))
    assert r.returncode == 0, r.stderr
    assert "is no longer managed; its original is back" in r.stdout
    assert (env["etc"] / "app.conf").read_text() == "original = 1\n"
    assert not (env["etc"] / "new").exists(), "the old key and the directories made for it are gone"
    assert (env["etc"] / "app-v2.conf").read_text() == "v2\n"
    assert activations(env) == 1
    # applying the same again changes nothing
    r = run_script(render_files_apply("o", moved(env), activate=activate(env), state_dir=st), encode_bundle(["v2\n", "K\n"]))
    assert "o: unchanged" in r.stdout and activations(env) == 1
    assert_restored(env, moved(env), before)


def test_a_failed_move_keeps_the_old_paths(env: dict[str, Path]) -> None:
    st = str(env["state"])
    before = tree_digest(env["etc"])
    assert run_script(render_files_apply("o", specs(env), state_dir=st), encode_bundle(["v1\n", "k1\n"])).returncode == 0
    bad = render_files_apply("o", moved(env), activate="echo 'service did not start' >&2; exit 1", state_dir=st)
    r = run_script(bad, encode_bundle(["v2\n", "k2\n"]))
    assert r.returncode != 0 and "service did not start" in r.stderr
    assert (env["etc"] / "app.conf").read_text() == "v1\n"
    assert (env["etc"] / "new/deep/key.pem").read_text() == "k1\n"
    assert not (env["etc"] / "app-v2.conf").exists() and not (env["etc"] / "other").exists()
    # the state still holds the old inputs: their delete restores everything
    assert_restored(env, specs(env), before)


def test_delete_also_restores_paths_it_no_longer_lists(env: dict[str, Path]) -> None:
    """What an older version of the same owner installed (before moved paths were restored)."""
    st = str(env["state"])
    before = tree_digest(env["etc"])
    assert run_script(render_files_apply("o", specs(env), state_dir=st), encode_bundle(["v1\n", "k1\n"])).returncode == 0
    r = run_script(render_files_restore("o", specs(env)[:1], restore_activate=activate(env), state_dir=st))
    assert r.returncode == 0, r.stderr
    assert tree_digest(env["etc"]) == before and activations(env) == 1
    assert not env["state"].exists()


def test_a_rollback_leaves_the_state_dir_as_it_found_it(env: dict[str, Path]) -> None:
    """A failed change must not leave a trace, not even in our own bookkeeping."""
    st = env["state"]
    # recorded in creation order (a, b); the cleanup walks them deepest/last first
    s = [FileSpec(str(env["etc"] / "a" / "one.pem")), FileSpec(str(env["etc"] / "b" / "two.pem"))]
    assert run_script(render_files_apply("o", s, state_dir=str(st)), encode_bundle(["1\n", "2\n"])).returncode == 0
    before = tree_digest(st)
    bad = render_files_apply("o", s, activate="exit 1", state_dir=str(st))
    assert run_script(bad, encode_bundle(["1b\n", "2b\n"])).returncode != 0
    assert tree_digest(st) == before


def test_another_owners_paths_are_never_swept(env: dict[str, Path]) -> None:
    st = str(env["state"])
    assert run_script(render_files_apply("a", specs(env)[:1], state_dir=st), encode_bundle(["a\n"])).returncode == 0
    assert run_script(render_files_apply("b", specs(env)[1:], state_dir=st), encode_bundle(["b\n"])).returncode == 0
    assert run_script(render_files_apply("a", moved(env)[:1], state_dir=st), encode_bundle(["a2\n"])).returncode == 0
    assert (env["etc"] / "new/deep/key.pem").read_text() == "b\n"
    assert run_script(render_files_restore("a", moved(env)[:1], state_dir=st)).returncode == 0
    assert (env["etc"] / "new/deep/key.pem").read_text() == "b\n"


@pytest.mark.parametrize("original", ["a\nb\n", "a\nb", "", "only\n"])
@pytest.mark.parametrize("position", ["top", "bottom"])
def test_block_roundtrip_is_byte_identical(env: dict[str, Path], original: str, position: str) -> None:
    f = env["etc"] / "pg_hba.conf"
    f.write_text(original)
    f.chmod(0o640)
    st = str(env["state"])
    before = tree_digest(env["etc"])
    apply = render_block_apply("blk", str(f), position=position, activate=activate(env), state_dir=st)
    r = run_script(apply, encode_bundle(["hostssl all mm 10.0.0.1/32 scram-sha-256"]))
    assert r.returncode == 0, r.stderr
    text = f.read_text()
    assert "hostssl all mm" in text
    lines = text.splitlines()
    begin = lines.index("# BEGIN mattermost-transport-encryption blk")
    assert (begin == 0) if position == "top" else (lines[-1] == "# END mattermost-transport-encryption blk")
    assert oct(f.stat().st_mode & 0o777) == "0o640"
    assert run_script(apply, encode_bundle(["hostssl all mm 10.0.0.1/32 scram-sha-256"])).returncode == 0
    assert f.read_text() == text and activations(env) == 1
    # a changed block replaces ours instead of adding a second one
    assert run_script(apply, encode_bundle(["new line\n"])).returncode == 0
    assert f.read_text().count("BEGIN mattermost-transport-encryption blk") == 1
    r = run_script(render_block_restore("blk", str(f), state_dir=st))
    assert r.returncode == 0, r.stderr
    assert tree_digest(env["etc"]) == before
    assert not env["state"].exists()


def test_block_keeps_other_edits_and_rolls_back_on_failed_validation(env: dict[str, Path]) -> None:
    f = env["etc"] / "after.rules"
    f.write_text("*filter\nCOMMIT\n")
    st = str(env["state"])
    assert run_script(render_block_apply("b", str(f), state_dir=st), encode_bundle(["*nat\nCOMMIT\n"])).returncode == 0
    bad = render_block_apply("b", str(f), validate="exit 1", state_dir=st)
    snapshot = f.read_text()
    assert run_script(bad, encode_bundle(["broken\n"])).returncode != 0
    assert f.read_text() == snapshot
    # someone else edits the file meanwhile: delete removes only our block
    f.write_text("# admin note\n" + f.read_text())
    assert run_script(render_block_restore("b", str(f), state_dir=st)).returncode == 0
    assert f.read_text() == "# admin note\n*filter\nCOMMIT\n"


def test_block_on_missing_file_fails_clearly(env: dict[str, Path]) -> None:
    r = run_script(render_block_apply("b", str(env["etc"] / "nope"), state_dir=str(env["state"])), encode_bundle(["x"]))
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_hostile_paths_are_quoted(env: dict[str, Path]) -> None:
    weird = env["etc"] / "we'ird $(touch pwned) dir" / "f;rm -rf x.conf"
    s = [FileSpec(str(weird))]
    st = str(env["state"])
    r = run_script(render_files_apply("o; touch owned", s, state_dir=st), encode_bundle(["ok\n"]))
    assert r.returncode == 0, r.stderr
    assert weird.read_text() == "ok\n"
    assert not Path("pwned").exists() and not Path("owned").exists()
    assert run_script(render_files_restore("o; touch owned", s, state_dir=st)).returncode == 0
    assert not weird.exists()


@pytest.mark.parametrize(
    "kwargs",
    [{"path": "relative/x"}, {"path": "/a/../b"}, {"path": "/x", "mode": "777x"}, {"path": "/x", "owner": "a b"}],
)
def test_filespec_rejects_bad_values(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        FileSpec(**kwargs)


def test_scripts_parse_in_every_shell(env: dict[str, Path]) -> None:
    for shell in SHELLS:
        for script in (
            render_files_apply("o", specs(env), validate="true", activate="true"),
            render_files_restore("o", specs(env), restore_activate="true"),
            render_block_apply("o", "/etc/x"),
            render_block_restore("o", "/etc/x"),
        ):
            assert syntax_ok(script, shell)


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("install"), reason="needs root")


@pytest.mark.parametrize("shell", [s for s in ("/bin/dash", "/bin/bash") if Path(s).exists()])
def test_a_large_read_only_script_travels_packed_and_runs_as_it_is(tmp_path: Path, shell: str) -> None:
    """A read-only check over COMPRESS_OVER goes gzip+base64 behind a line naming its size and
    SHA-256; READ_COMMAND runs it exactly (stdin closed, its exit status, its output); a damaged
    pack fails instead of running anything."""
    from components.remote_files_render import READ_COMMAND, read_script_source, render_read_stdin, strict

    body = "".join(f": check {i}: {'x' * 60}\n" for i in range(200))
    script = strict(body + "if read -r line; then echo 'stdin open'; fi\necho \"ran $$\" > \"$OUT\"\necho checked\nexit 3\n")
    # its comment lines stay at home (components/shell.without_comment_lines)
    stdin = render_read_stdin(script.replace(": check 7:", "# a comment\n: check 7:"))
    assert stdin.startswith(f"# read-only check, packed: {len(script)} bytes, sha256 {hashlib.sha256(script.encode()).hexdigest()}")
    assert len(stdin) * 3 < len(script) and read_script_source(stdin) == script
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")}
    cmd = READ_COMMAND.replace("/bin/sh ", f"{shell} ", 1)
    r = run_script(cmd, stdin, env=env)
    assert (r.returncode, r.stdout) == (3, "checked\n"), r.stderr
    assert (tmp_path / "out").read_text().startswith("ran ")
    lines = stdin.splitlines()
    broken = "\n".join([*lines[:5], "!!!!", *lines[6:]]) + "\n"
    (tmp_path / "out").unlink()
    r = run_script(cmd, broken, env=env)
    assert r.returncode != 0 and not (tmp_path / "out").exists()
    # a small script travels as it is, readable, without its comment lines
    assert render_read_stdin(strict("# say ok\necho ok\n")) == strict("echo ok\n")


@pytest.mark.parametrize("kind", ["files", "block"])
def test_a_misspelt_hook_fails_before_anything_is_registered(kind: str) -> None:
    # the shared options arrive as **options: a keyword nobody reads would otherwise be dropped
    with pytest.raises(TypeError, match=r"x: unknown option\(s\) \['activte'\]"):
        if kind == "files":
            managed_files("x", connection=None, files=[ManagedFile(FileSpec("/etc/x"), "a")], activte="true")  # type: ignore[arg-type, call-arg]
        else:
            managed_block("x", connection=None, path="/etc/x", content="a", activte="true")  # type: ignore[arg-type, call-arg]


@pytest.mark.parametrize("shell", [s for s in ("/bin/dash", "/bin/bash") if Path(s).exists()])
def test_a_check_read_from_the_hosts_copy_runs_as_it_is_and_refuses_a_missing_or_damaged_one(tmp_path: Path, shell: str) -> None:
    """A node's preflight (render_copy_read_stdin): its stdin names an entry of the host's copy
    of the helper; READ_COMMAND runs the entry's text found in the upload in $HOME, else in the
    installed helper or the copy before it (an earlier run's install took the upload away),
    exactly (stdin closed, its exit status and output). Found nowhere, or not the text whose
    SHA-256 the stdin names, nothing runs and the error names the entry and the upload."""
    from components.host_helper_render import UPLOAD_PATH, host_helper_text
    from components.remote_files_render import (
        READ_COMMAND,
        host_entries,
        read_script_source,
        render_copy_read_stdin,
        strict,
    )

    check = strict("# a comment\nif read -r line; then echo 'stdin open'; fi\necho \"ran $$\" > \"$OUT\"\necho checked\nexit 3\n")
    helper = tmp_path / "lib" / "helper-v1"
    stdin, key = render_copy_read_stdin(check, sudo=False, resource="host-helper-192.0.2.7-upload", helper=str(helper))
    assert len(stdin) < 1024 and "echo checked" not in stdin and "a comment" not in read_script_source(stdin)
    assert read_script_source(stdin) == strict("if read -r line; then echo 'stdin open'; fi\necho \"ran $$\" > \"$OUT\"\necho checked\nexit 3\n")
    entries = host_entries(stdin)
    assert list(entries) == [key]
    copy = host_helper_text({**entries, "0123456789abcdef": "echo another entry\n"})
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    helper.parent.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "OUT": str(out)}
    cmd = READ_COMMAND.replace("/bin/sh ", f"{shell} ", 1)

    def ran() -> tuple[int, str, str]:
        out.unlink(missing_ok=True)
        r = run_script(cmd, stdin, env=env)
        return r.returncode, r.stdout, r.stderr

    # the upload in the user's home
    (home / UPLOAD_PATH).write_text(copy)
    assert ran()[:2] == (3, "checked\n") and out.read_text().startswith("ran ")
    # installed (the upload taken away), or only in the copy the install replaced
    (home / UPLOAD_PATH).unlink()
    helper.write_text(copy)
    assert ran()[:2] == (3, "checked\n")
    helper.rename(f"{helper}.prev")
    helper.write_text(host_helper_text({}))
    assert ran()[:2] == (3, "checked\n")
    # nowhere, or damaged: nothing runs, and the error says what is missing and what brings it
    Path(f"{helper}.prev").unlink()
    code, stdout, stderr = ran()
    assert code == 1 and stdout == "" and not out.exists()
    assert f"check {key} is in neither {home}/{UPLOAD_PATH} nor {helper}" in stderr and "host-helper-192.0.2.7-upload" in stderr
    (home / UPLOAD_PATH).write_text(copy.replace('echo checked', 'echo changed'))
    assert ran()[0] == 1 and not out.exists()
