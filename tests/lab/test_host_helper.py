"""The host helper on real hosts (issue 11): concurrent commands on one host, and the upgrade
from the program that rendered every script into its command text.

1. A small program (components.remote_files, nothing else) puts many managed_files on ONE host;
   `up` and `destroy` run them all at once (the engine's parallelism). Before the helper, the
   deletes raced on the shared state directory's cleanup and a 9-node destroy failed 3/3 with
   `.../dirs: No such file or directory`; the helper's per-host lock serialises them.
2. The lab stack applied by the program as it was before the helper (a git worktree of that
   commit), then `up` with this program over the same state: it converges with no activation
   (every file command reports `unchanged`), and `destroy` gives every host back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from components import cluster_render
from components.host_helper_render import HELPER_DIR, HELPER_PATH, LOCK_FILE, UPLOAD_PATH
from components.platform import DEBIAN
from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import PROXY_IP, SERVER_NAME, diff, snapshot
from tools.load import Load

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PRE_HELPER = "fc8141b0129b5bfdba86a32d3a8a71c0785e4019"
"""main just before the host helper: every command carried its whole script in its text (same
remote_files as at 2d3e109, which tests/unit/test_host_helper.py reads from git history), with today's per-node cluster design."""
OWNERS = 12

RACE_MAIN = '''
"""Many managed_files on one host, nothing else (tests/lab/test_host_helper.py)."""
import json
from pathlib import Path

import pulumi
from pulumi_command import remote

from components.remote_files import ManagedFile, managed_files
from components.remote_files_render import FileSpec

host = json.loads(Path(__file__).with_name("host.json").read_text())
conn = remote.ConnectionArgs(
    host=host["address"], port=host["port"], user=host["user"],
    private_key=pulumi.Output.secret(host["key"]), host_key=host["hostKey"],
)
for i in range(host["owners"]):
    managed_files(
        f"race-{i}",
        connection=conn,
        files=[ManagedFile(FileSpec(f"/etc/mmtls-race/d{i}/sub/f.conf"), f"owner {i}\\n")],
    )
'''


def _race_project(tmp: Path, lab: Lab, host: str, user: str | None = None) -> Path:
    inv = lab.inventory()
    h = inv["hosts"][host]
    project = tmp / "race"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: mmtls-race\nruntime: python\n")
    (project / "__main__.py").write_text(RACE_MAIN)
    (project / "components").symlink_to(ROOT / "components")
    (project / "host.json").write_text(
        json.dumps(
            {
                "address": h["address"],
                "port": h.get("port", 22),
                "user": user or inv.get("sshUser", "root"),
                "hostKey": h["hostKey"],
                "key": Path(inv["sshPrivateKeyFile"]).read_text(),
                "owners": OWNERS,
            }
        )
    )
    return project


def _failures(ev: replay.Evaluation) -> str:
    return "\n".join(f"{s.name}: ...{s.error[-600:]}" for s in ev.failed_steps) or (ev.program_error or "")


def test_concurrent_commands_on_one_host_neither_race_nor_leave_anything(lab: Lab, tmp_path: Path) -> None:
    before = snapshot(lab, "mm1")
    project = _race_project(tmp_path, lab, "mm1")
    state = tmp_path / "race.json"
    for rnd in range(2):
        ev = replay.up(project, "race", state_path=state, parallel=OWNERS)
        assert ev.ok, _failures(ev)
        assert lab.ssh("mm1", "cat /etc/mmtls-race/d3/sub/f.conf").stdout == "owner 3\n"
        ev = replay.destroy(project, "race", state_path=state, parallel=OWNERS)
        assert ev.ok, f"round {rnd}: " + _failures(ev)
        assert diff(before, snapshot(lab, "mm1")) == [], "destroy leaves nothing (helper, lock, state)"
        gone = f"test ! -e {HELPER_DIR} && test ! -e {LOCK_FILE}"
        assert lab.ssh("mm1", gone).returncode == 0


SFTP_OFF = "set -eu; sed -i 's/^Subsystem/#mmtls-test Subsystem/' /etc/ssh/sshd_config; systemctl reload ssh"
SFTP_ON = "set -eu; sed -i 's/^#mmtls-test Subsystem/Subsystem/' /etc/ssh/sshd_config; systemctl reload ssh"


def test_a_host_without_sftp_fails_at_the_upload_and_gets_nothing(lab: Lab, tmp_path: Path) -> None:
    """The helper travels by SFTP (pulumi-command CopyToRemote): an sshd without the subsystem
    fails the upload with x/crypto's words, naming the resource, and nothing lands on the host."""
    before = snapshot(lab, "mm3")
    project = _race_project(tmp_path, lab, "mm3")
    state = tmp_path / "nosftp.json"
    assert lab.ssh("mm3", SFTP_OFF).returncode == 0
    try:
        ev = replay.up(project, "race", state_path=state, parallel=4)
        failed = {s.name: s.error for s in ev.failed_steps}
        upload = f"host-helper-{lab.inventory()['hosts']['mm3']['address']}-upload"
        assert list(failed) == [upload] and "ssh: subsystem request failed" in failed[upload], failed
        assert lab.ssh("mm3", f"test ! -e {HELPER_DIR}").returncode == 0
    finally:
        lab.ssh("mm3", SFTP_ON)
    gone = replay.destroy(project, "race", state_path=state)
    assert gone.ok, _failures(gone)
    assert diff(before, snapshot(lab, "mm3")) == []


SUDO_USER = "mmdeploy"
ADD_USER = f"""set -eu
useradd -m -s /bin/sh {SUDO_USER}
install -d -m 0700 -o {SUDO_USER} -g {SUDO_USER} /home/{SUDO_USER}/.ssh
install -m 0600 -o {SUDO_USER} -g {SUDO_USER} /root/.ssh/authorized_keys /home/{SUDO_USER}/.ssh/authorized_keys
echo '{SUDO_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SUDO_USER}
chmod 0440 /etc/sudoers.d/{SUDO_USER}
"""
DEL_USER = f"rm -f /etc/sudoers.d/{SUDO_USER}; userdel -r {SUDO_USER} 2>/dev/null || :"


def test_a_non_root_user_with_passwordless_sudo_works_end_to_end(lab: Lab, tmp_path: Path) -> None:
    """Issue 10: every command (the helper's install too) runs as `sudo -n` for a non-root user."""
    r = lab.ssh("mm2", ADD_USER)
    assert r.returncode == 0, r.stderr
    try:
        before = snapshot(lab, "mm2")
        project = _race_project(tmp_path, lab, "mm2", user=SUDO_USER)
        state = tmp_path / "sudo.json"
        ev = replay.up(project, "race", state_path=state, parallel=4)
        assert ev.ok, _failures(ev)
        owner = lab.ssh("mm2", f"stat -c %U.%a /etc/mmtls-race/d1/sub/f.conf {HELPER_PATH}")
        assert owner.stdout.split() == ["root.644", "root.755"], owner.stdout
        # the helper came as the user's SFTP upload into its home, and the install removed it
        home = lab.ssh("mm2", f"ls -A /home/{SUDO_USER}").stdout.split()
        assert home and UPLOAD_PATH not in home, home
        ev = replay.destroy(project, "race", state_path=state, parallel=4)
        assert ev.ok, _failures(ev)
        assert diff(before, snapshot(lab, "mm2")) == []
    finally:
        lab.ssh("mm2", DEL_USER)


@pytest.fixture
def old_program(tmp_path: Path) -> Path:
    """A git worktree of the pre-helper commit, removed afterwards."""
    tree = tmp_path / "old"
    r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), PRE_HELPER], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield tree
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True, check=False)


def _old_up(tree: Path, state: Path, config: dict[str, Any]) -> None:
    """`up` of the old program with the old replay engine, in its own process (its modules)."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from lab import replay
        ev = replay.up({str(tree)!r}, "lab", state_path={str(state)!r}, config=json.loads({json.dumps(json.dumps(config))}))
        print("\\n".join(f"{{s.name}}: {{s.error[-600:]}}" for s in ev.failed_steps) or ev.program_error or "")
        sys.exit(0 if ev.ok else 1)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


HOSTS = ("mm1", "mm2", "mm3", "proxy", "postgres")


NODE_CA_FILES = ("/etc/mattermost-tls/ca.crt", "/usr/local/share/ca-certificates/mattermost-transport-ca.crt")
CLUSTER_HOST_FILES = (
    f"{cluster_render.SYSTEMD_DIR}/{cluster_render.TUNNELS_TARGET}",
    f"{cluster_render.SYSTEMD_DIR}/{cluster_render.HEAL_SERVICE}",
    f"{cluster_render.SYSTEMD_DIR}/{cluster_render.HEAL_TIMER}",
    cluster_render.mattermost_dropin_path("mattermost"),
    # and sshd's files, which joined it too (b40c197)
    cluster_render.AUTHORIZED_KEYS,
    cluster_render.sshd_dropin(DEBIAN),
)


def test_upgrade_from_the_pre_helper_layout_converges_without_activation_and_destroys(
    lab: Lab, tmp_path: Path, old_program: Path
) -> None:
    before = {h: snapshot(lab, h) for h in HOSTS}
    state = tmp_path / "lab.json"
    config = {"inventoryFile": str(lab.inventory_file)}
    _old_up(old_program, state, config)
    configured = {h: snapshot(lab, h) for h in HOSTS}

    ca = json.loads(state.read_text())["outputs"]["caCertPem"]
    with Load(SERVER_NAME, PROXY_IP, ca) as load:
        ev = replay.up(ROOT, "lab", state_path=state, config=config)
    assert ev.ok, _failures(ev)
    assert load.result.sent > 0 and load.result.failed == 0, f"the site stopped answering during the upgrade: {load.result}"
    ops = {s.name: s.op for s in ev.steps}
    assert "replace" not in ops.values(), {n: o for n, o in ops.items() if o == "replace"}
    # besides the helpers, only read-only steps (the node preflights and their barrier, the NGINX
    # capture, the read of the site's DB password) are new; the old generated password is dropped
    new_steps = {f"{n}-preflight" for n in ("mm1", "mm2", "mm3")} | {
        "preflights-passed", "proxy-live-site", "database-current-password"}
    # and each node's CA file, now its own command (`<node>-db-ca`): the helper's ledger hands the
    # path over from `<node>-tls-files` with its original kept (destroy below proves it)
    new_steps = new_steps | {f"{n}-db-ca" for n in ("mm1", "mm2", "mm3")}
    # and the two-phase steps' own components (no command: their children moved under them by alias)
    new_steps = new_steps | {"proxy-final-site", "database-tls-enforced"}
    # and the Deployment component, the parent of everything (no command; the rest moves under it by alias)
    new_steps = new_steps | {"deployment"}
    assert {n for n, o in ops.items() if o == "create"} == {n for n in ops if n.startswith("host-helper-")} | new_steps
    for res in ev.resources:
        stdout = str(res.outputs.get("stdout") or "")
        # proxy-site: the site the old program wrote is now the live site, rebuilt by the live-site
        # editor (crossplane re-indents it): one reload, no failed request (asserted above)
        if res.name == "proxy-site":
            continue
        # the cluster's own change since that layout: the mm-cluster helper builds the ssh options
        # and the tunnel table is short, without a known_hosts file (tunnels restart, Mattermost
        # does not: tests/lab/test_cluster.py, the upgrade from the full-argv table)
        if res.name in {f"{n}-cluster-{x}" for n in ("mm1", "mm2", "mm3") for x in ("firewall", "tunnels")}:
            continue
        if res.type == "command:remote:Command" and ops.get(res.name) == "update" and ": changed" in stdout:
            pytest.fail(f"{res.name} changed something on the upgrade: {stdout[-300:]}")
    # the helper's own files, and the proxy's site file (the reformatted rebuild, see above)
    known_hosts = "/etc/mattermost-cluster/known_hosts"
    helper_files = {HELPER_PATH.lstrip("/"), LOCK_FILE.lstrip("/"),
                    "etc/nginx/conf.d/mattermost.conf:", "etc/nginx/sites-available/mattermost:",
                    # the short tunnel table, and the known_hosts it replaces with its ledger entries
                    "etc/mattermost-cluster/tunnels:", f"{known_hosts[1:]}:", hashlib.sha256(known_hosts.encode()).hexdigest()[:20],
                    # the node's CA files: their ledger entries now name `<node>-db-ca` (mtm_key: sha256, 20 hex)
                    *(hashlib.sha256(p.encode()).hexdigest()[:20] for p in NODE_CA_FILES),
                    # the cluster's unit files and sshd's: their ledger entries now name
                    # `<node>-cluster-firewall` (they joined its command; issue 11), every byte of the files the same
                    *(hashlib.sha256(p.encode()).hexdigest()[:20] for p in CLUSTER_HOST_FILES)}
    for h in HOSTS:
        now = snapshot(lab, h)
        assert [d for d in diff(configured[h], now) if not any(f in d for f in helper_files)] == [], h

    ev = replay.destroy(ROOT, "lab", state_path=state)
    assert ev.ok, _failures(ev)
    for h in HOSTS:
        assert diff(before[h], snapshot(lab, h)) == [], h

