"""The node preflight (components/templates/node-preflight.sh), RUN against temporary trees: a
Mattermost install dir whose `bin/mattermost` is a stub printing `Version: ...` like
server/cmd/mattermost/commands/version.go (versionCmdF), a stub `systemctl` that answers `show -p
<prop> --value` the way systemd prints those properties, and a fake /proc for the running server's
environment. Each refusal is checked for its message (host, setting, fix), for leaving every file
as it was, and for never printing a DSN's password."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from components.node_render import render_preflight_script
from components.shell import without_comment_lines
from tests.helpers.scripts import SHELLS, run_script, syntax_ok

SECRET = "s3cr3t-pw"
OWN_ENV = "/etc/mattermost-tls/mattermost.env"

SYSTEMCTL = r"""#!/bin/sh
# stub: answers from files in $STUB_DIR (systemd's own formats)
d=$STUB_DIR
case "$1" in
  cat) [ -e "$d/no_unit" ] && exit 1; echo "# /etc/systemd/system/$2"; exit 0 ;;
  show)
    prop=$3
    case "$prop" in
      ExecStart) printf '{ path=/opt/mattermost/bin/mattermost ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n' "$(cat "$d/argv")" ;;
      Environment) cat "$d/environment" 2>/dev/null || echo ;;
      EnvironmentFiles) cat "$d/envfiles" 2>/dev/null || true ;;
      MainPID) cat "$d/mainpid" 2>/dev/null || echo 0 ;;
    esac ;;
  *) echo "unexpected systemctl $*" >&2; exit 2 ;;
esac
"""


class Node:
    """A temporary node: install dir, config.json, unit answers, /proc."""

    def __init__(self, root: Path, version_output: str = "Version: 10.11.3\nBuild Number: 1\n"):
        self.root = root
        self.install = root / "opt" / "mattermost"
        (self.install / "bin").mkdir(parents=True)
        (self.install / "config").mkdir()
        self.stubs = root / "stubs"
        self.stubs.mkdir()
        (self.stubs / "systemctl").write_text(SYSTEMCTL)
        (self.stubs / "systemctl").chmod(0o755)
        self.set_version_output(version_output)
        self.proc = root / "proc"
        self.proc.mkdir()
        self.argv(str(self.install / "bin" / "mattermost"))
        self.config({"ClusterSettings": {"Enable": False}, "SqlSettings": {"DataSourceReplicas": []}})

    def set_version_output(self, text: str) -> None:
        b = self.install / "bin" / "mattermost"
        b.write_text("#!/bin/sh\n[ \"$1\" = version ] || exit 9\ncat <<'EOF'\n" + text + "EOF\n")
        b.chmod(0o755)

    def argv(self, text: str) -> None:
        (self.stubs / "argv").write_text(text)

    def config(self, data: dict, name: str = "config.json") -> Path:
        p = self.install / "config" / name
        p.write_text(json.dumps(data, indent=4))
        return p

    def environment(self, text: str) -> None:
        (self.stubs / "environment").write_text(text + "\n")

    def env_file(self, name: str, text: str) -> Path:
        p = self.root / name
        p.write_text(text)
        with (self.stubs / "envfiles").open("a") as fh:
            fh.write(f"{p} (ignore_errors=no)\n")
        return p

    def running(self, pid: int, env: dict[str, str]) -> None:
        (self.stubs / "mainpid").write_text(f"{pid}\n")
        (self.proc / str(pid)).mkdir()
        (self.proc / str(pid) / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))

    def snapshot(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }

    def run(
        self, shell: str = "/bin/sh", extra_env: dict[str, str] | None = None, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        args: dict[str, object] = {
            "node": "mm1",
            "address": "10.0.0.11",
            "unit": "mattermost",
            "install_dir": str(self.install),
            "version": "10.11.3",
            "version_key": "mattermost.version",
            "cluster_enabled": False,
            "own_env": OWN_ENV,
            "driver": "postgres",
            "tls_mode": "verify-full",
            "proc": str(self.proc),
        } | kw
        # as it travels (remote_files_render.render_read_stdin): without its comment lines
        script = "set -eu\n" + without_comment_lines(render_preflight_script(**args))  # type: ignore[arg-type]
        env = {"PATH": f"{self.stubs}:/usr/bin:/bin", "STUB_DIR": str(self.stubs), "LC_ALL": "C", **(extra_env or {})}
        return subprocess.run([shell, "-c", script], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def refused(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "node mm1 (10.0.0.11): refusing" in r.stderr
    assert SECRET not in r.stdout + r.stderr
    return r.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_node_that_matches_passes_and_changes_nothing(node: Node, shell: str) -> None:
    before = node.snapshot()
    r = node.run(shell)
    assert r.returncode == 0, r.stderr
    assert "Mattermost 10.11.3 (as mattermost.version says)" in r.stdout
    assert node.snapshot() == before


@pytest.mark.parametrize(
    ("stack", "installed", "ok"),
    [
        ("10.11.3", "10.11.3", True),
        ("10.11", "10.11.7", True),  # X.Y names any patch release
        ("10.11.0", "10.11.3", False),
        ("10.1", "10.11.0", False),  # not a string prefix
        ("11.1.0", "10.11.0", False),
        ("10.11.0", "10.11.0", True),
    ],
)
def test_the_installed_version_decides(node: Node, stack: str, installed: str, ok: bool) -> None:
    node.set_version_output(f"Version: {installed}\nBuild Number: 7\n")
    r = node.run(version=stack, version_key="nodes[0].version")
    if ok:
        assert r.returncode == 0, r.stderr
        return
    err = refused(r)
    assert f"Mattermost {installed} is installed" in err
    assert f"the stack says {stack} (nodes[0].version)" in err
    assert f"Set nodes[0].version to {installed}" in err


def test_a_version_with_a_suffix_is_read_by_its_numbers(node: Node) -> None:
    node.set_version_output("Version: 10.11.0-standin\n")
    assert node.run(version="10.11.0").returncode == 0
    assert "10.11.0 is installed" in refused(node.run(version="11.1.0"))


def test_unknown_version_output_and_missing_binary_are_refused(node: Node, tmp_path: Path) -> None:
    node.set_version_output("something else\n")
    assert "printed no 'Version: X.Y.Z' line" in refused(node.run())
    err = refused(node.run(install_dir=str(tmp_path / "nowhere")))
    assert "no Mattermost binary at" in err and "mattermost.installDir" in err


def test_an_unknown_unit_is_refused(node: Node) -> None:
    (node.stubs / "no_unit").write_text("")
    assert "systemd does not know mattermost.service" in refused(node.run())


def test_clustering_on_in_config_json_while_the_stack_disables_it(node: Node) -> None:
    cfg = node.config({"ClusterSettings": {"Enable": True}})
    before = node.snapshot()
    err = refused(node.run(cluster_enabled=False))
    assert f"ClusterSettings.Enable is true in {cfg}" in err
    assert "cluster.enabled is false" in err and "Set cluster.enabled: true" in err
    assert node.snapshot() == before
    assert node.run(cluster_enabled=True).returncode == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_env_wins_over_the_file_for_clustering(node: Node, shell: str) -> None:
    node.config({"ClusterSettings": {"Enable": False}})
    envf = node.env_file("admin.env", 'MM_CLUSTERSETTINGS_ENABLE="true"\n')
    err = refused(node.run(shell))
    assert f"MM_CLUSTERSETTINGS_ENABLE is true in {envf}" in err
    # ... and off in env beats on in the file
    node.config({"ClusterSettings": {"Enable": True}})
    envf.write_text("MM_CLUSTERSETTINGS_ENABLE=false\n")
    assert node.run(shell).returncode == 0, node.run(shell).stderr


def test_environment_assignment_of_the_unit_counts(node: Node) -> None:
    node.environment("LANG=C MM_CLUSTERSETTINGS_ENABLE=1")
    assert "MM_CLUSTERSETTINGS_ENABLE is true in Environment= of mattermost.service" in refused(node.run())


def test_the_programs_own_env_file_is_not_what_the_node_has(node: Node, tmp_path: Path) -> None:
    # a stack that turns the cluster off rewrites its own env file: that one must not block it
    own = node.env_file("own.env", "MM_CLUSTERSETTINGS_ENABLE=true\n")
    r = node.run(own_env=str(own))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        ("{bin} --config {alt}", "alt"),
        ("{bin} --config={alt}", "alt"),
        ("{bin} -c {alt}", "alt"),
        ("{bin} -c alt.json", "alt"),  # relative: under <installDir>/config
        ("{bin}", "default"),
    ],
)
def test_the_config_file_comes_from_execstart(node: Node, argv: str, where: str) -> None:
    alt = node.config({"ClusterSettings": {"Enable": True}}, "alt.json")
    node.config({"ClusterSettings": {"Enable": False}})
    node.argv(argv.format(bin=node.install / "bin" / "mattermost", alt=alt))
    r = node.run()
    if where == "alt":
        assert f"ClusterSettings.Enable is true in {alt}" in refused(r)
    else:
        assert r.returncode == 0, r.stderr


def test_mm_config_file_path_from_the_env_file(node: Node) -> None:
    alt = node.config({"ClusterSettings": {"Enable": True}}, "other.json")
    node.env_file("admin.env", f"MM_CONFIG={alt}\n")
    assert f"ClusterSettings.Enable is true in {alt}" in refused(node.run())


@pytest.mark.parametrize(
    "source", ["env_file", "environment", "running", "argv"]
)
@pytest.mark.parametrize(
    "dsn",
    [
        f"postgres://mmuser:{SECRET}@db:5432/mattermost?sslmode=disable",
        f"postgres://mmuser:{SECRET}@db:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        f"mysql://mmuser:{SECRET}@tcp(db:3306)/mattermost?charset=utf8mb4",
    ],
)
def test_a_database_stored_config_is_refused_naming_where_it_is_set(node: Node, source: str, dsn: str) -> None:
    if source == "env_file":
        where = f"MM_CONFIG in {node.env_file('admin.env', f'MM_CONFIG={dsn}')}"
    elif source == "environment":
        node.environment(f"MM_CONFIG={dsn}")
        where = "MM_CONFIG in Environment= of mattermost.service"
    elif source == "running":
        node.running(4242, {"PATH": "/usr/bin", "MM_CONFIG": dsn})
        where = "MM_CONFIG in the environment of the running mattermost.service"
    else:
        node.argv(f"/opt/mattermost/bin/mattermost --config {dsn}")
        where = "--config in ExecStart= of mattermost.service"
    err = refused(node.run())
    assert "reads its configuration from the database" in err
    assert where in err
    assert "but the stack says mattermost.configStore: file. Set mattermost.configStore: database" in err
    assert "Or move the configuration to a file" in err
    if "disable" in dsn:
        assert "sslmode=disable; use sslmode=verify-full" in err
    if dsn.startswith("mysql"):
        assert "no tls parameter (plain text)" in err


@pytest.mark.parametrize("setting", ["DataSourceReplicas", "DataSourceSearchReplicas"])
def test_replica_dsns_without_verified_tls_are_refused(node: Node, setting: str) -> None:
    good = f"postgres://mmuser:{SECRET}@r1/mattermost?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    bad = f"postgres://mmuser:{SECRET}@r2/mattermost?sslmode=require"
    cfg = node.config({"SqlSettings": {setting: [good]}})
    assert node.run().returncode == 0
    node.config({"SqlSettings": {setting: [good, bad]}})
    err = refused(node.run())
    assert f"SqlSettings.{setting} in {cfg}, entry 1 (counted from 0): a PostgreSQL DSN with sslmode=require" in err
    assert "entry 0" not in err


def test_replicas_from_env_win_over_the_file_and_follow_the_main_dsn_mode(node: Node) -> None:
    node.config({"SqlSettings": {"DataSourceReplicas": [f"postgres://u:{SECRET}@r/db?sslmode=disable"]}})
    envf = node.env_file(
        "admin.env",
        f'MM_SQLSETTINGS_DATASOURCEREPLICAS="u:{SECRET}@tcp(r1:3306)/db?tls=true u:{SECRET}@tcp(r2:3306)/db?tls=skip-verify"\n',
    )
    err = refused(node.run(driver="mysql", tls_mode="true"))
    assert f"MM_SQLSETTINGS_DATASOURCEREPLICAS in {envf}, entry 1 (counted from 0): a MySQL DSN with tls=skip-verify" in err
    assert "entry 0" not in err and "sslmode=disable" not in err
    # the stack itself allows skip-verify (database.allowUnverifiedTls): replicas may use it too
    assert node.run(driver="mysql", tls_mode="skip-verify").returncode == 0


def test_all_findings_are_reported_at_once(node: Node) -> None:
    node.set_version_output("Version: 9.11.2\n")
    node.config({"ClusterSettings": {"Enable": True}, "SqlSettings": {"DataSourceReplicas": ["postgres://u:p@r/db"]}})
    err = refused(node.run())
    assert "Mattermost 9.11.2 is installed" in err
    assert "cluster.enabled is false" in err
    assert "no sslmode" in err


# A check run after the node's own (the cluster tunnels' preflight has this shape: its own
# findings file, EXIT trap and `node` variable, refusing with exit 1).
MORE = """node=other
found=$(mktemp)
trap 'rm -f "$found"' EXIT
[ ! -e "$STUB_DIR/more_fails" ] || echo 'stand-in finding' > "$found"
if [ -s "$found" ]; then echo "more: refusing: $(cat "$found")" >&2; exit 1; fi
echo "more: passed on $node"
"""


@pytest.mark.parametrize("shell", SHELLS)
def test_more_checks_run_after_the_nodes_own_in_their_own_subshell(node: Node, shell: str, tmp_path: Path) -> None:
    """components/node_render.render_preflight_script `more`: each runs once the node's own check
    passed; a failing one fails the whole check and stops the ones after it; every temporary
    file is gone either way (each check's EXIT trap is its own)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before = node.snapshot()
    env_tmp = {"TMPDIR": str(tmp)}
    r = node.run(shell, env_tmp, more=[MORE, MORE.replace("more:", "third:")])
    assert r.returncode == 0, r.stderr
    assert "Mattermost 10.11.3 (as mattermost.version says)" in r.stdout
    assert "more: passed on other" in r.stdout and "third: passed on other" in r.stdout
    (node.stubs / "more_fails").write_text("")
    r = node.run(shell, env_tmp, more=[MORE, MORE.replace("more:", "third:")])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "more: refusing: stand-in finding" in r.stderr and "Mattermost 10.11.3" in r.stdout
    assert "third:" not in r.stdout + r.stderr, "a check after a refusing one ran"
    assert {k: v for k, v in node.snapshot().items() if not k.startswith("stubs/")} == {
        k: v for k, v in before.items() if not k.startswith("stubs/")
    }
    # the node refusing: the other check does not run
    node.set_version_output("Version: 9.11.2\n")
    r = node.run(shell, env_tmp, more=[MORE])
    assert "Mattermost 9.11.2 is installed" in refused(r) and "more:" not in r.stdout + r.stderr
    assert list(tmp.iterdir()) == [], "a temporary file left behind"


def test_a_config_file_that_is_not_json_is_refused(node: Node) -> None:
    (node.install / "config" / "config.json").write_text("{not json")
    assert "is not readable JSON" in refused(node.run())


def test_a_missing_config_file_means_mattermost_defaults(node: Node) -> None:
    (node.install / "config" / "config.json").unlink()
    r = node.run()
    assert r.returncode == 0, r.stderr


def test_jq_is_used_without_python3(node: Node, tmp_path: Path) -> None:
    jq = next((p for p in ("/usr/bin/jq", "/bin/jq") if os.path.exists(p)), None)
    if jq is None:
        pytest.fail("jq is not installed on this machine (apt-get install jq): the fallback cannot be tested")
    # a PATH with the tools the script uses, but no python3
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sed", "grep", "tail", "head", "cut", "tr", "xargs", "mktemp", "rm", "cat", "timeout", "jq", "printf"):
        for d in ("/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                (bindir / tool).symlink_to(f"{d}/{tool}")
                break
    node.config({"ClusterSettings": {"Enable": True}})
    script = "set -eu\n" + render_preflight_script(
        node="mm1", address="10.0.0.11", unit="mattermost", install_dir=str(node.install), version="10.11.3",
        version_key="mattermost.version", cluster_enabled=False, own_env=OWN_ENV, driver="postgres",
        tls_mode="verify-full", proc=str(node.proc),
    )
    env = {"PATH": f"{node.stubs}:{bindir}", "STUB_DIR": str(node.stubs)}
    r = run_script(script, env=env)
    assert "ClusterSettings.Enable is true" in refused(r)


def test_renderer_quotes_and_refuses_nonsense() -> None:
    s = render_preflight_script(
        node="mm1", address="10.0.0.11", unit="matter'most", install_dir="/opt/mm", version="10.11",
        version_key="mattermost.version", cluster_enabled=True, own_env=OWN_ENV, driver="postgres",
        tls_mode="require",
    )
    assert "unit='matter'\"'\"'most'" in s
    assert "accept_pg='verify-full require'" in s and "accept_my=true" in s
    with pytest.raises(ValueError):
        render_preflight_script(
            node="mm1", address="a", unit="u", install_dir="opt", version="1.0", version_key="k",
            cluster_enabled=False, own_env=OWN_ENV, driver="postgres", tls_mode="verify-full",
        )
    with pytest.raises(ValueError):
        render_preflight_script(
            node="mm1", address="a", unit="u", install_dir="/opt", version="1.0", version_key="k",
            cluster_enabled=False, own_env=OWN_ENV, driver="sqlite", tls_mode="verify-full",
        )


# ---------------------------------------------------------------- audit: the running gossip setting

NEW, OLD = "MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION", "MM_CLUSTERSETTINGS_ENABLEEXPERIMENTALGOSSIPENCRYPTION"


@pytest.mark.parametrize(
    ("probe", "ok", "detail"),
    [
        (f"version=11.1.0\npid=42\nenv:{NEW}=true\n", True, f"{NEW}=true in the process environment"),
        (f"version=10.11.0\npid=42\nenv:{NEW}=true\n", True, f"{NEW}=true"),
        # before v10.11 the GA name does not exist: Mattermost ignores it silently
        (f"version=10.5.2\npid=42\nenv:{NEW}=true\n", False, f"10.5.2 needs {OLD} (ClusterSettings.EnableExperimentalGossipEncryption): not set; {NEW} is set but 10.5.2 ignores it"),
        (f"version=10.5.2\npid=42\nenv:{OLD}=true\n", True, f"{OLD}=true"),
        (f"version=11.1.0\npid=42\nenv:{OLD}=true\n", False, f"11.1.0 needs {NEW}"),
        (f"version=11.1.0\npid=42\nenv:{NEW}=false\nfile:EnableGossipEncryption=true\n", False, f"{NEW}=false"),
        ("version=11.1.0\npid=42\nfile:EnableGossipEncryption=true\n", True, "ClusterSettings.EnableGossipEncryption true in config.json"),
        ("version=11.1.0\npid=42\nfile:EnableExperimentalGossipEncryption=true\n", False, "needs"),
        (f"version=11.1.0\npid=0\nenv:{NEW}=true\n", False, "is not running"),
        ("version=\npid=42\n", False, "installed version unknown"),
    ],
)
def test_audit_judges_the_setting_the_running_version_reads(probe: str, ok: bool, detail: str) -> None:
    from tools.audit import judge_gossip_setting

    c = judge_gossip_setting("mm1", probe)
    assert (c.ok, c.hop) == (ok, "mm1 <-> peers")
    assert detail in c.detail


@pytest.mark.parametrize("shell", SHELLS)
def test_audit_probe_parses(shell: str) -> None:
    from tools.audit import GOSSIP_PROBE

    assert syntax_ok("unit=mattermost\n" + GOSSIP_PROBE, shell)


STORE = ("mmuser@db:5432/mattermost", "mmuser@10.0.0.21:5432/mattermost")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "dsn",
    [
        f"postgres://mmuser:{SECRET}@db:5432/mattermost?sslmode=disable",
        f"postgresql://mmuser:{SECRET}@10.0.0.21/mattermost",
        f"postgres://mmuser:{SECRET}@db:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    ],
)
def test_a_database_stored_config_in_the_stacks_database_passes_when_the_stack_says_so(
    node: Node, shell: str, dsn: str
) -> None:
    node.environment(f"MM_CONFIG={dsn}")
    before = node.snapshot()
    r = node.run(shell, config_store="database", store_targets=STORE)
    assert r.returncode == 0, r.stderr
    assert "config in the stack's database" in r.stdout
    assert SECRET not in r.stdout + r.stderr
    assert node.snapshot() == before


@pytest.mark.parametrize(
    ("dsn", "at"),
    [
        (f"postgres://mmuser:{SECRET}@other:5432/mattermost?sslmode=disable", "mmuser@other:5432/mattermost"),
        (f"postgres://mmuser:{SECRET}@db:5432/mmconfig", "mmuser@db:5432/mmconfig"),
        (f"postgres://admin:{SECRET}@db:5432/mattermost", "admin@db:5432/mattermost"),
        (f"mysql://mmuser:{SECRET}@tcp(db:5432)/mattermost?tls=true", "mmuser@db:5432/mattermost"),
    ],
)
def test_a_database_stored_config_elsewhere_is_refused_naming_where_it_points(node: Node, dsn: str, at: str) -> None:
    node.environment(f"MM_CONFIG={dsn}")
    err = refused(node.run(config_store="database", store_targets=STORE))
    assert f"reads its configuration from {dsn.split('://')[0]}://{at} (MM_CONFIG in Environment= of mattermost.service)" in err
    assert "which is not the stack's database (mmuser@db:5432/mattermost, driver postgres)" in err


def test_the_stack_saying_database_for_a_node_reading_a_file_is_refused(node: Node) -> None:
    err = refused(node.run(config_store="database", store_targets=STORE, store_key="nodes[0].configStore"))
    assert "the stack says nodes[0].configStore: database, but Mattermost on this node reads its configuration from" in err
    assert "Set nodes[0].configStore: file" in err


REPLICAS = ("mmuser@r1:5432/mattermost", "mmuser@10.0.0.22:5432/mattermost")


@pytest.mark.parametrize("setting", ["DataSourceReplicas", "DataSourceSearchReplicas"])
def test_plain_replicas_the_stack_lists_pass_and_others_are_refused(node: Node, setting: str) -> None:
    key = "replica_targets" if setting == "DataSourceReplicas" else "search_targets"
    listed = [f"postgres://mmuser:{SECRET}@r1:5432/mattermost?sslmode=disable", f"host=10.0.0.22 user=mmuser password={SECRET} dbname=mattermost sslmode=disable"]
    node.config({"SqlSettings": {setting: listed}})
    assert node.run(**{key: REPLICAS}).returncode == 0
    stray = f"postgres://mmuser:{SECRET}@r9/mattermost?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    cfg = node.config({"SqlSettings": {setting: [*listed, stray]}})
    err = refused(node.run(**{key: REPLICAS}))
    name = "database.replicas" if setting == "DataSourceReplicas" else "database.searchReplicas"
    assert f"SqlSettings.{setting} in {cfg}, entry 2 (counted from 0) points at mmuser@r9:5432/mattermost, which is not in {name}" in err
    assert "entry 0" not in err and "entry 1" not in err


def test_mysql_replicas_from_env_are_matched_by_user_host_port_and_database(node: Node) -> None:
    node.env_file("admin.env", f'MM_SQLSETTINGS_DATASOURCEREPLICAS="mmuser:{SECRET}@tcp(r1:3306)/mattermost?charset=utf8mb4"\n')
    assert node.run(driver="mysql", tls_mode="true", replica_targets=("mmuser@r1:3306/mattermost",)).returncode == 0
    err = refused(node.run(driver="mysql", tls_mode="true", replica_targets=("mmuser@r2:3306/mattermost",)))
    assert "points at mmuser@r1:3306/mattermost, which is not in database.replicas" in err


def test_bad_targets_are_refused_before_rendering() -> None:
    base = {"node": "mm1", "address": "10.0.0.11", "unit": "mattermost", "install_dir": "/opt/mattermost", "version": "10.11.3",
            "version_key": "mattermost.version", "cluster_enabled": False, "own_env": OWN_ENV, "driver": "postgres", "tls_mode": "verify-full"}
    with pytest.raises(ValueError, match="needs the stack database's store_targets"):
        render_preflight_script(**base, config_store="database")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a user@host:port/db word"):
        render_preflight_script(**base, replica_targets=("a b",))  # type: ignore[arg-type]


def test_a_database_stored_config_given_by_config_on_the_command_line_is_refused(node: Node) -> None:
    # --config wins over MM_CONFIG (getConfigDSN): the program's MM_CONFIG would change nothing
    node.argv(f"/opt/mattermost/bin/mattermost --config postgres://mmuser:{SECRET}@db:5432/mattermost?sslmode=disable")
    err = refused(node.run(config_store="database", store_targets=STORE))
    assert "given by --config in ExecStart= of mattermost.service, which wins over any MM_CONFIG" in err
    assert "Set MM_CONFIG in the unit's environment instead of --config" in err
