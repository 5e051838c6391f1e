"""The host helper file itself: shellcheck, its stable interface, the readable manifest, the
per-host lock, and the upgrade from the layout the program wrote before the helper existed.

Scripts are RUN (as root, in temporary trees); the helper is the file the program installs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from components import host_helper_render, remote_files_render
from components.remote_files_render import (
    FileSpec,
    encode_bundle,
    read_manifest,
    render_block_manifest,
    render_call,
    render_files_apply,
    render_files_manifest,
    render_files_restore,
    render_run_manifest,
)
from tests.helpers.history import module_at
from tests.helpers.scripts import tree_digest

v0 = module_at("2d3e109", "components/remote_files.py", "remote_files_v0")
"""components/remote_files.py before the host helper: hosts configured by that layout converge
under the helper and still restore."""

HELPER = str(host_helper_render.HELPER_SOURCE)
SHELLS = [s for s in ("/bin/dash", "/bin/bash") if Path(s).exists()]


def call(op: str, owner: str, stdin: str, state: Path, shell: str = "/bin/sh", **kw: object) -> subprocess.CompletedProcess[str]:
    """The command text the program sends, pointed at the repo's helper file and a temp state."""
    cmd = render_call(op, owner, helper=HELPER, state_dir=str(state)).replace("/bin/sh ", f"{shell} ", 1)
    return subprocess.run(["/bin/sh", "-c", cmd], input=stdin, capture_output=True, text=True, timeout=kw.get("timeout", 60))  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.conf").write_text("original = 1\n")
    (etc / "app.conf").chmod(0o644)
    return tmp_path


def test_shellcheck_finds_nothing_in_the_helper() -> None:
    assert shutil.which("shellcheck"), "shellcheck is in the Makefile's APT_PACKAGES: run `make deps`"
    r = subprocess.run(["shellcheck", "-s", "sh", "-S", "style", HELPER], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_stored_interface_is_pinned() -> None:
    """Delete commands already in a stack's state call exactly these texts: changing them (or the
    path) would strand every stored delete, so a new interface must be helper-v2 beside v1."""
    assert host_helper_render.HELPER_PATH == "/usr/local/lib/mattermost-transport-encryption/helper-v1"
    assert render_call("files-restore", "mm1-tls-files") == (
        "/bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 files-restore mm1-tls-files"
    )
    assert render_call("run-delete", "a b") == "/bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 run-delete 'a b'"


# An input exactly as interface 1 writes it, frozen here: today's helper must keep reading it.
STORED_V1 = """mattermost-transport-encryption helper input v1
owner stored
file 0640 root:root 0b3d4d1f7b5d29b6d8ccc6f1b3c4ad2a5dbbd0b3ac5b62a4a0c8b1a3b7d0e3c0 3 @ETC@/app.conf
section activate 18 (runs after a change)
| echo activated-v1
section content-0 3 (content of @ETC@/app.conf)
| v1
"""


def test_an_input_stored_by_interface_1_still_applies_and_restores(tree: Path) -> None:
    etc = tree / "etc"
    before = tree_digest(etc)
    stored = STORED_V1.replace("@ETC@", str(etc)).replace(
        "0b3d4d1f7b5d29b6d8ccc6f1b3c4ad2a5dbbd0b3ac5b62a4a0c8b1a3b7d0e3c0", hashlib.sha256(b"v1\n").hexdigest()
    )
    r = call("files-apply", "stored", stored, tree / "state")
    assert r.returncode == 0, r.stderr
    assert "activated-v1" in r.stdout and (etc / "app.conf").read_text() == "v1\n"
    r = call("files-restore", "stored", stored, tree / "state")
    assert r.returncode == 0, r.stderr
    assert tree_digest(etc) == before and not (tree / "state").exists()


def _table(rows: int) -> str:
    # like a node's tunnel table: repetitive lines with one random field each
    return "".join(f"mm{i} {28000 + 2 * i} {os.urandom(24).hex()} /usr/bin/ssh -F none -N -T -o BatchMode=yes\n" for i in range(rows))


@pytest.mark.parametrize("shell", SHELLS)
def test_a_large_content_travels_packed_and_installs_every_byte(tree: Path, shell: str) -> None:
    """Format 2: a content over COMPRESS_OVER goes gzip+base64 (its file line stays readable);
    a stack whose contents are all small still sends format 1, byte for byte."""
    etc = tree / "etc"
    before = tree_digest(etc)
    big, small = _table(400), "small = 1\n"
    specs = [FileSpec(str(etc / "tunnels")), FileSpec(str(etc / "app.conf"), "0640")]
    m = render_files_manifest("o", specs, [big, small], activate="echo on")
    lines = m.splitlines()
    assert lines[0] == "mattermost-transport-encryption helper input v2"
    assert f"file 0644 root:root {hashlib.sha256(big.encode()).hexdigest()} {len(big)} {etc / 'tunnels'}" in lines
    assert f"section content-0 {len(big)} gzip+base64 (content of {etc / 'tunnels'})" in lines
    assert "| small = 1" in lines and len(m) * 2 < len(big)
    assert read_manifest(m).contents == [big, small]
    r = call("files-apply", "o", m, tree / "state", shell)
    assert r.returncode == 0, r.stderr
    assert (etc / "tunnels").read_text() == big and (etc / "app.conf").read_text() == small
    assert "o: unchanged" in call("files-apply", "o", m, tree / "state", shell).stdout
    r = call("files-restore", "o", m, tree / "state", shell)
    assert r.returncode == 0, r.stderr
    assert tree_digest(etc) == before and not (tree / "state").exists()
    assert render_files_manifest("o", specs[1:], [small]).startswith("mattermost-transport-encryption helper input v1\n")


def test_a_damaged_packed_content_changes_nothing(tree: Path) -> None:
    etc = tree / "etc"
    before = tree_digest(etc)
    m = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [_table(400)])
    lines = m.splitlines()
    at = next(i for i, line in enumerate(lines) if "gzip+base64" in line) + 3
    broken = "\n".join([*lines[:at], "| " + "A" * 76, *lines[at + 1:]]) + "\n"
    r = call("files-apply", "o", broken, tree / "state")
    assert r.returncode != 0 and ("gzip+base64" in r.stderr or "does not match its hash" in r.stderr), r.stderr
    # a packed section in a format-1 input is not decoded: its size (or hash) check refuses it
    r = call("files-apply", "o", m.replace("input v2", "input v1", 1), tree / "state")
    assert r.returncode != 0 and ("expected" in r.stderr or "does not match its hash" in r.stderr), r.stderr
    assert tree_digest(etc) == before


@pytest.mark.parametrize("shell", SHELLS)
def test_manifest_apply_is_idempotent_and_restore_gives_back_every_byte(tree: Path, shell: str) -> None:
    etc = tree / "etc"
    before = tree_digest(etc)
    specs = [FileSpec(str(etc / "app.conf"), "0640"), FileSpec(str(etc / "d" / "no-newline"), "0600")]
    contents = ["new = 2\n| looks like a prefix\n\n", "last line without newline"]
    log = tree / "log"
    m = render_files_manifest("o", specs, contents, activate=f"echo on >> {log}", restore_activate=f"echo off >> {log}")
    r = call("files-apply", "o", m, tree / "state", shell)
    assert r.returncode == 0, r.stderr
    assert [(etc / "app.conf").read_text(), (etc / "d" / "no-newline").read_text()] == contents
    assert oct((etc / "app.conf").stat().st_mode & 0o777) == "0o640"
    again = call("files-apply", "o", m, tree / "state", shell)
    assert "o: unchanged" in again.stdout and log.read_text() == "on\n"
    r = call("files-restore", "o", m, tree / "state", shell)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "on\noff\n"
    assert tree_digest(etc) == before and not (tree / "state").exists()


def test_manifest_is_readable_and_names_every_file_and_what_runs() -> None:
    m = render_files_manifest(
        "proxy-site",
        [FileSpec("/etc/nginx/site", "0644"), FileSpec("/etc/nginx/tls/key.pem", "0600", "root", "adm")],
        ["server {}\n", "KEY\n"],
        validate="nginx -t",
        activate="systemctl reload nginx",
    )
    lines = m.splitlines()
    site_sha = hashlib.sha256(b"server {}\n").hexdigest()
    assert f"file 0644 root:root {site_sha} 10 /etc/nginx/site" in lines
    assert any(x.startswith("file 0600 root:adm ") and x.endswith(" 4 /etc/nginx/tls/key.pem") for x in lines)
    assert "| systemctl reload nginx" in lines and "| server {}" in lines
    assert read_manifest(m).contents == ["server {}\n", "KEY\n"]


@pytest.mark.parametrize("content", ["", "a", "a\n", "\n\n", "x\r\ny", "| not a header\nsection fake 3\n"])
def test_manifest_round_trips_exact_bytes_through_the_helper(tree: Path, content: str) -> None:
    target = tree / "etc" / "f"
    m = render_files_manifest("o", [FileSpec(str(target))], [content])
    assert read_manifest(m).contents == [content]
    r = call("files-apply", "o", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == content.encode()


def test_a_damaged_input_changes_nothing(tree: Path) -> None:
    etc = tree / "etc"
    before = tree_digest(etc)
    m = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], ["new\n"])
    r = call("files-apply", "o", m.replace("| new", "| nex"), tree / "state")
    assert r.returncode != 0 and "does not match its hash" in r.stderr
    r = call("files-apply", "other", m, tree / "state")
    assert r.returncode != 0 and "written for o" in r.stderr
    r = call("files-apply", "o", "garbage\n", tree / "state")
    assert r.returncode != 0 and "not a helper input" in r.stderr
    assert tree_digest(etc) == before


def test_block_manifest_applies_and_restores(tree: Path) -> None:
    f = tree / "etc" / "app.conf"
    m = render_block_manifest("blk", str(f), "added = 1\n", position="top")
    assert call("block-apply", "blk", m, tree / "state").returncode == 0
    assert f.read_text() == "# BEGIN mattermost-transport-encryption blk\nadded = 1\n# END mattermost-transport-encryption blk\noriginal = 1\n"
    r = call("block-restore", "blk", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert f.read_text() == "original = 1\n" and not (tree / "state").exists()


def test_run_scripts_get_their_input_and_fail_with_their_status(tree: Path) -> None:
    m = render_run_manifest("job", create="cat > {out}\n".format(out=tree / "got"), delete="exit 3\n", input="line 1\nno newline")
    assert call("run-create", "job", m, tree / "state").returncode == 0
    assert (tree / "got").read_text() == "line 1\nno newline"
    assert call("run-update", "job", m, tree / "state").returncode == 0, "update falls back to create"
    assert call("run-delete", "job", m, tree / "state").returncode == 3
    assert not (tree / "state").exists(), "a run touches no state directory"


def test_concurrent_commands_on_one_host_do_not_race(tree: Path) -> None:
    """Each owner's delete empties the shared state dir when it is the last one; without the lock
    two deletes racing on that cleanup failed (`.../dirs: No such file or directory`, issue 11)."""
    n = 8
    state = tree / "state"
    etc = tree / "etc"
    before = tree_digest(etc)
    mans = {
        f"o{i}": render_files_manifest(f"o{i}", [FileSpec(str(etc / f"d{i}" / "sub" / "f"))], [f"{i}\n"]) for i in range(n)
    }
    for rnd in range(3):
        with ThreadPoolExecutor(n) as pool:
            applied = list(pool.map(lambda o: call("files-apply", o, mans[o], state), mans))
        assert all(r.returncode == 0 for r in applied), [r.stderr for r in applied if r.returncode]
        with ThreadPoolExecutor(n) as pool:
            restored = list(pool.map(lambda o: call("files-restore", o, mans[o], state), mans))
        assert all(r.returncode == 0 for r in restored), (rnd, [r.stderr for r in restored if r.returncode])
        assert tree_digest(etc) == before and not state.exists()


def test_a_daemon_started_by_a_hook_does_not_hold_the_lock(tree: Path) -> None:
    f = tree / "etc" / "app.conf"
    pid = tree / "daemon.pid"
    m = render_files_manifest("o", [FileSpec(str(f))], ["v\n"], activate=f"sleep 300 > /dev/null 2>&1 & echo $! > {pid}")
    try:
        assert call("files-apply", "o", m, tree / "state").returncode == 0
        # the next command on the host gets the lock at once (it would wait 300 s otherwise)
        r = call("files-restore", "o", m, tree / "state", timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        if pid.exists():
            os.kill(int(pid.read_text()), 15)


def test_hosts_the_previous_layout_configured_converge_unchanged_and_restore(tree: Path) -> None:
    """An `up` of the helper program over a host the inline-script program configured: nothing
    changes (no restart), and destroy still gives back the originals byte for byte."""
    etc, state, log = tree / "etc", tree / "state", tree / "log"
    (etc / "rules").write_text("*filter\nCOMMIT")
    before = tree_digest(etc)
    specs = [FileSpec(str(etc / "app.conf"), "0640"), FileSpec(str(etc / "new" / "deep" / "key.pem"), "0600")]
    old_specs = [v0.FileSpec(s.path, s.mode, s.owner, s.group) for s in specs]
    contents = ["new = 2\n", "KEY\n"]
    activate = f"echo activated >> {log}"
    old = subprocess.run(
        ["/bin/sh", "-c", v0.render_files_apply("mm1-tls-files", old_specs, activate=activate, state_dir=str(state))],
        input=v0.encode_bundle(contents), capture_output=True, text=True,
    )
    assert old.returncode == 0, old.stderr
    old_block = subprocess.run(
        ["/bin/sh", "-c", v0.render_block_apply("blk", str(etc / "rules"), state_dir=str(state))],
        input=v0.encode_bundle(["block = 1\n"]), capture_output=True, text=True,
    )
    assert old_block.returncode == 0, old_block.stderr
    configured = tree_digest(etc)
    m = render_files_manifest("mm1-tls-files", specs, contents, activate=activate)
    r = call("files-apply", "mm1-tls-files", m, state)
    assert r.returncode == 0 and "mm1-tls-files: unchanged" in r.stdout, r.stdout + r.stderr
    b = render_block_manifest("blk", str(etc / "rules"), "block = 1\n")
    r = call("block-apply", "blk", b, state)
    assert r.returncode == 0 and "blk: unchanged" in r.stdout, r.stdout + r.stderr
    assert tree_digest(etc) == configured and log.read_text() == "activated\n", "no activation: no downtime"
    assert call("block-restore", "blk", b, state).returncode == 0
    assert call("files-restore", "mm1-tls-files", m, state).returncode == 0
    assert tree_digest(etc) == before and not state.exists()


def test_self_contained_restore_ignores_its_stdin(tree: Path) -> None:
    """render_files_restore (what the nginx transition stores) reads nothing from stdin."""
    spec = FileSpec(str(tree / "etc" / "app.conf"))
    r = subprocess.run(
        ["/bin/sh", "-c", render_files_restore("o", [spec], state_dir=str(tree / "state"))],
        input=encode_bundle(["x"]), capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr


def test_install_and_uninstall_keep_the_helper_while_state_remains(tmp_path: Path) -> None:
    """The install command as the SSH user's shell runs it: the upload (CopyToRemote's copy in
    the user's home) is checked against the SHA-256 in the command text, installed and removed."""
    home, helper = tmp_path / "home", tmp_path / "lib" / "helper-v1"
    state, lock = tmp_path / "state", tmp_path / "lock"
    home.mkdir()
    upload = home / host_helper_render.UPLOAD_PATH
    env = {**os.environ, "HOME": str(home)}
    install = host_helper_render.install_command(False, str(helper))

    def run(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", text], capture_output=True, text=True, env=env)

    upload.write_bytes(host_helper_render.HELPER_SOURCE.read_bytes())
    r = run(install)
    assert r.returncode == 0, r.stderr
    assert helper.read_text() == host_helper_render.helper_source() and oct(helper.stat().st_mode & 0o777) == "0o755"
    assert r.stdout.strip().endswith(hashlib.sha256(helper.read_bytes()).hexdigest())
    assert not upload.exists() and os.listdir(home) == [], "the upload stays in the user's home"
    # run again (an update of the command text only: the unchanged file is not copied again)
    r = run(install)
    assert r.returncode == 0 and r.stdout.strip() == f"host helper {helper}: sha256 {host_helper_render.helper_sha256()}", r.stderr
    # an upload that is not the version the command names leaves the installed helper alone
    upload.write_text(host_helper_render.helper_source() + "# changed\n")
    r = run(install)
    assert r.returncode != 0 and "not " + host_helper_render.helper_sha256() in r.stderr and "--replace" in r.stderr, r.stderr
    assert helper.read_text() == host_helper_render.helper_source() and not Path(f"{helper}.new").exists()
    # no upload and an installed helper of another version: refused, naming the fix
    upload.unlink()
    r = run(host_helper_render.install_command(False, str(helper), sha256="0" * 64))
    assert r.returncode != 0 and "no upload" in r.stderr and helper.read_text() == host_helper_render.helper_source()
    # no upload and no helper installed (it was removed by hand): the one line that names the fix
    moved = helper.rename(helper.with_name("aside"))
    r = run(host_helper_render.install_command(False, str(helper), sha256="0" * 64))
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "no upload" in r.stderr, r.stderr
    moved.rename(helper)
    uninstall = host_helper_render.uninstall_command(False, str(helper), str(state), str(lock))
    state.mkdir()
    lock.write_text("")
    upload.write_text("left by a failed install\n")
    r = run(uninstall)
    assert r.returncode == 0 and helper.exists() and "kept" in r.stdout
    assert not upload.exists()
    state.rmdir()
    r = run(uninstall)
    assert r.returncode == 0 and not helper.exists() and not lock.exists() and not helper.parent.exists()
    # safe to run twice
    assert run(uninstall).returncode == 0


def test_run_scripts_keep_the_callers_umask(tree: Path) -> None:
    """Before the helper, run_script texts ran with the login's umask (022): an account's home or
    a unit file they create must not turn 0600 under the helper's own 077."""
    m = render_run_manifest("job", create=f"umask > {tree / 'mask'}\n")
    cmd = render_call("run-create", "job", helper=HELPER, state_dir=str(tree / "state"))
    r = subprocess.run(["/bin/sh", "-c", f"umask 022; {cmd}"], input=m, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tree / "mask").read_text().strip() == "0022"


def test_a_block_changed_later_stays_where_it_is(tree: Path) -> None:
    """Two top blocks (pg_hba: the phase-1 hostssl block, then the phase-2 reject block above it):
    re-applying the first, unchanged or changed, keeps the order; it used to move to the top,
    changing the file (and reloading) on every update."""
    f = tree / "etc" / "pg_hba.conf"
    f.write_text("local all all peer")  # no newline at the end
    st = tree / "state"
    first = render_block_manifest("hba", str(f), "hostssl a\n", position="top")
    second = render_block_manifest("enforce", str(f), "hostnossl reject\n", position="top")
    assert call("block-apply", "hba", first, st).returncode == 0
    assert call("block-apply", "enforce", second, st).returncode == 0
    layout = f.read_text()
    assert layout.index("hostnossl") < layout.index("hostssl a")
    again = call("block-apply", "hba", first, st)
    assert "hba: unchanged" in again.stdout and f.read_text() == layout
    changed = render_block_manifest("hba", str(f), "hostssl b", position="top")
    assert "hba: changed" in call("block-apply", "hba", changed, st).stdout
    assert f.read_text() == layout.replace("hostssl a\n", "hostssl b\n")
    assert call("block-restore", "enforce", second, st).returncode == 0
    assert call("block-restore", "hba", changed, st).returncode == 0
    assert f.read_text() == "local all all peer" and not st.exists()


# ------------------------------------------------------------------------- format 3: the library
LIB_BODY = """# a script every host gets alike: its parameters are set above it
printf '%s from the library\\n' "$greeting"
printf '%s\\n' "$greeting" > "$out"
""" + "# padding, so the body is long enough to be an entry\n" * 6


@pytest.fixture
def lib_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the helper with one more library entry (LIB_BODY), which the renderers use."""
    helper = tmp_path / "helper-v1"
    helper.write_text(host_helper_render.helper_source() + host_helper_render.library_entry(LIB_BODY))
    key = host_helper_render.library_id(LIB_BODY)
    monkeypatch.setattr(remote_files_render, "helper_library", lambda: {**host_helper_render.helper_library(), key: LIB_BODY})
    return helper


def _call_helper(helper: Path, op: str, owner: str, stdin: str, state: Path) -> subprocess.CompletedProcess[str]:
    cmd = render_call(op, owner, helper=str(helper), state_dir=str(state))
    return subprocess.run(["/bin/sh", "-c", cmd], input=stdin, capture_output=True, text=True, timeout=60)


def test_a_script_ending_in_a_library_entry_sends_its_parameters_and_the_entry_id(lib_helper: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    create = f"greeting='hello there'\nout={out}\n" + LIB_BODY
    m = render_run_manifest("o", create=create)
    key = host_helper_render.library_id(LIB_BODY)
    assert m.splitlines()[:3] == [
        "mattermost-transport-encryption helper input v3",
        "owner o",
        f"section create {len(create)} lib={key} (runs on create)",
    ]
    assert "from the library" not in m and "| greeting='hello there'" in m
    assert read_manifest(m).sections["create"] == create
    r = _call_helper(lib_helper, "run-create", "o", m, tmp_path / "state")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello there from the library\n" and out.read_text() == "hello there\n"


def test_a_file_and_a_hook_from_the_library_install_the_same_bytes_and_restore(lib_helper: Path, tree: Path) -> None:
    """A content that is an entry goes as its ID; the helper checks the file's hash as always."""
    etc = tree / "etc"
    before = tree_digest(etc)
    hook = f"greeting=activated\nout={tree / 'hooked'}\n" + LIB_BODY
    m = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [LIB_BODY], activate=hook)
    assert m.count(" lib=") == 2 and "padding" not in m
    assert read_manifest(m).contents == [LIB_BODY] and read_manifest(m).sections["activate"] == hook
    r = _call_helper(lib_helper, "files-apply", "o", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert (etc / "app.conf").read_text() == LIB_BODY and "activated from the library" in r.stdout
    assert "o: unchanged" in _call_helper(lib_helper, "files-apply", "o", m, tree / "state").stdout
    r = _call_helper(lib_helper, "files-restore", "o", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert tree_digest(etc) == before


def test_an_entry_the_helper_lacks_fails_naming_the_fix_and_changes_nothing(lib_helper: Path, tree: Path) -> None:
    """An older helper (here: the repo's, without the test's entry) refuses the input whole."""
    etc = tree / "etc"
    before = tree_digest(etc)
    m = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [LIB_BODY])
    r = call("files-apply", "o", m, tree / "state")
    key = host_helper_render.library_id(LIB_BODY)
    assert r.returncode != 0
    assert f"o: section content-0 needs entry {key} of the helper's library" in r.stderr
    assert "pulumi up installs the program's helper first" in r.stderr
    assert tree_digest(etc) == before


def test_a_damaged_library_entry_is_refused(lib_helper: Path, tree: Path) -> None:
    lib_helper.write_text(lib_helper.read_text().replace("#|# padding, so", "#|# padded, so", 1))
    m = render_run_manifest("o", create="greeting=x\nout=/dev/null\n" + LIB_BODY)
    r = _call_helper(lib_helper, "run-create", "o", m, tree / "state")
    assert r.returncode != 0 and "library in" in r.stderr and "is damaged" in r.stderr


def test_a_short_text_or_a_self_contained_script_never_names_an_entry(lib_helper: Path, tree: Path) -> None:
    """Self-contained scripts may carry the helper inline (without its library), and a short
    hook stays readable in the preview."""
    spec = FileSpec(str(tree / "etc" / "app.conf"))
    hook = f"section activate {len(LIB_BODY)} "
    assert f"{hook}(runs after a change)" in render_files_apply("o", [spec], activate=LIB_BODY)
    assert f"{hook}lib=" not in render_files_apply("o", [spec], activate=LIB_BODY)
    assert f"section restore-activate {len(LIB_BODY)} lib=" not in render_files_restore("o", [spec], restore_activate=LIB_BODY)
    assert not [line for line in render_files_apply("o", [spec]).splitlines() if line.startswith(host_helper_render.LIBRARY_HEAD)]
    assert " lib=" not in render_run_manifest("o", create="echo short")


def test_every_library_entry_is_named_by_its_hash_and_long_enough() -> None:
    library = host_helper_render.helper_library()
    assert library, "the helper ships a library (tools/helper_library.py writes it)"
    for key, text in library.items():
        assert host_helper_render.library_id(text) == key and len(text.encode()) >= host_helper_render.LIBRARY_MIN


# ---------------------------------------------------------------- a host's own library (issue 11)
def _host_copy(path: Path, *stdins: str) -> Path:
    """A host's copy of the helper with the entries `stdins` name (components.host_helper)."""
    entries = {k: v for s in stdins for k, v in remote_files_render.host_entries(s).items()}
    path.write_text(host_helper_render.host_helper_text(entries))
    return path


def test_a_host_entry_carries_a_content_the_library_lacks_and_installs_every_byte(tree: Path) -> None:
    """The input keeps the file line (path, mode, owner, size, SHA-256) and names the entry; the
    host's copy of the helper carries the text; the helper checks the file's hash as always."""
    etc = tree / "etc"
    before = tree_digest(etc)
    table = _table(300)  # a node's peer table: no shipped entry has it
    hook = "echo activated-from-the-host-library\n" * 3
    m = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [table], activate=hook, host=True)
    assert "peer-" not in m and "activated" not in m and m.count(" lib=") == 2
    assert f"{hashlib.sha256(table.encode()).hexdigest()} {len(table.encode())} {etc / 'app.conf'}" in m
    assert read_manifest(m).contents == [table] and read_manifest(m).sections["activate"] == hook
    helper = _host_copy(tree / "helper-v1", m)
    r = _call_helper(helper, "files-apply", "o", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert (etc / "app.conf").read_text() == table and "activated-from-the-host-library" in r.stdout
    # the repo's helper (no host entries) refuses it whole, naming the fix
    r = call("files-apply", "o", m, tree / "state2")
    assert r.returncode != 0 and "needs entry" in r.stderr and (etc / "app.conf").read_text() == table
    r = _call_helper(helper, "files-restore", "o", m, tree / "state")
    assert r.returncode == 0, r.stderr
    assert tree_digest(etc) == before


def test_a_secret_or_private_file_never_goes_to_the_host_library(tree: Path) -> None:
    """The host's copy is 0755 and its state entry is a plain hash: per file, a content that is
    secret (the caller's flag) or that others may not read on the host stays in the input."""
    etc = tree / "etc"
    text = "not for everyone\n" * 10
    specs = [FileSpec(str(etc / "a"), "0644"), FileSpec(str(etc / "b"), "0600"), FileSpec(str(etc / "c"), "0644")]
    m = render_files_manifest("o", specs, [text, text + "b", text + "c"], activate="echo " + "x" * 80, host=[True, True, False])
    sections = [line for line in m.splitlines() if line.startswith("section ")]
    assert [(" lib=" in line) for line in sections] == [False, True, False, False], sections  # hooks stay with a per-file flag
    assert remote_files_render.host_entries(m) == {host_helper_render.library_id(text): text}
    assert m.count("| not for everyone") == 20


def test_a_restore_from_an_input_stored_before_the_copy_changed_still_restores(tree: Path) -> None:
    """A resource whose update failed keeps its old input in the state; its delete then runs
    with a copy that has only newer entries: a restore does not read contents, so a content's
    missing entry does not stop it, and the previous copy ($self.prev) still has the old hook."""
    etc = tree / "etc"
    before = tree_digest(etc)
    old = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [_table(50)], restore_activate="echo restored-old\n" * 4, host=True)
    helper = _host_copy(tree / "helper-v1", old)
    assert _call_helper(helper, "files-apply", "o", old, tree / "state").returncode == 0
    # the program's next copy names other texts only; the install keeps the old one as .prev
    new = render_files_manifest("o", [FileSpec(str(etc / "app.conf"))], [_table(60)], restore_activate="echo restored-new\n" * 4, host=True)
    os.link(helper, f"{helper}.prev")
    helper.unlink()
    _host_copy(helper, new)
    r = _call_helper(helper, "files-restore", "o", old, tree / "state")
    assert r.returncode == 0 and "restored-old" in r.stdout, r.stderr
    assert tree_digest(etc) == before
    # without the previous copy: an apply of the old input is refused (its content is gone), a
    # restore only needs its hook, and fails naming it when that is gone too
    Path(f"{helper}.prev").unlink()
    assert _call_helper(helper, "files-apply", "o", old, tree / "state").returncode != 0
    assert _call_helper(helper, "files-apply", "o", new, tree / "state").returncode == 0
    hooks_only = {k: v for k, v in remote_files_render.host_entries(old).items() if "restored" in v}
    helper.write_text(host_helper_render.host_helper_text(hooks_only))
    r = _call_helper(helper, "files-restore", "o", old, tree / "state")
    assert r.returncode == 0 and "restored-old" in r.stdout, r.stderr
    assert tree_digest(etc) == before
    helper.write_text(host_helper_render.helper_source())
    r = _call_helper(helper, "files-restore", "o", old, tree / "state")
    assert r.returncode != 0 and "section restore-activate needs entry" in r.stderr


def test_the_install_keeps_the_copy_it_replaces_and_the_uninstall_removes_both(tmp_path: Path) -> None:
    home, helper = tmp_path / "home", tmp_path / "lib" / "helper-v1"
    home.mkdir()
    upload = home / host_helper_render.UPLOAD_PATH
    env = {**os.environ, "HOME": str(home)}

    def install(text: str) -> subprocess.CompletedProcess[str]:
        upload.write_text(text)
        cmd = host_helper_render.install_command(False, str(helper), sha256=hashlib.sha256(text.encode()).hexdigest())
        return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, env=env)

    first = host_helper_render.host_helper_text({host_helper_render.library_id("a\n" * 40): "a\n" * 40})
    second = host_helper_render.host_helper_text({host_helper_render.library_id("b\n" * 40): "b\n" * 40})
    assert install(first).returncode == 0 and not Path(f"{helper}.prev").exists()
    assert install(first).returncode == 0 and not Path(f"{helper}.prev").exists(), "the same copy again keeps no .prev"
    assert install(second).returncode == 0
    assert helper.read_text() == second and Path(f"{helper}.prev").read_text() == first
    uninstall = host_helper_render.uninstall_command(False, str(helper), str(tmp_path / "state"), str(tmp_path / "lock"))
    r = subprocess.run(["/bin/sh", "-c", uninstall], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and not helper.parent.exists(), r.stderr
