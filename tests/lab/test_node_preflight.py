"""The per-node preflight on the real lab hosts (issue 9): the REAL program (replay engine) is
refused by `<node>-preflight` before anything changes on ANY host (every host's files compared
before and after), and the refusal names host, setting and fix:

1. mm2's config.json has clustering on while the stack disables the cluster;
2. mm3's `mattermost version` reports another version than the stack;
3. mm1's unit sets MM_CONFIG to a database DSN (configuration stored in the database).

Each case makes its change on one host itself (TEST-LOCAL: a backup, a wrapper binary, a drop-in)
and takes it back at the end. The stack's `mattermost.version` is set to what the lab's stand-in
reports, so the cases do not depend on which version the stand-in emulates; the unmodified
nodes pass the same preflight script (run over SSH first, as the program runs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from components.host_helper_render import UPLOAD_PATH
from components.node_render import node_paths, render_preflight_script
from components.remote_files_render import strict
from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import diff, runs_on_host, snapshot
from tools import audit as audit_tool

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("mm1", "mm2", "mm3", "proxy", "postgres", "mariadb")
NODES = ("mm1", "mm2", "mm3")
ADDRESS = {"mm1": "10.251.0.101", "mm2": "10.251.0.102", "mm3": "10.251.0.103"}
COMMAND = "command:remote:Command"
BIN = "/opt/mattermost/bin/mattermost"
CONFIG_JSON = "/opt/mattermost/config/config.json"
TEST_DROPIN = "/etc/systemd/system/mattermost.service.d/05-preflight-test-local.conf"
DB_PASSWORD = "preflight-test-Pw-9"


def reported_version(lab: Lab, node: str) -> str:
    out = lab.ssh(node, f"{BIN} version").stdout
    m = re.search(r"^Version:\s*(\d+\.\d+\.\d+)", out, re.M)
    assert m, out
    return m[1]


@pytest.fixture(scope="module")
def version(lab: Lab) -> str:
    versions = {n: reported_version(lab, n) for n in NODES}
    assert len(set(versions.values())) == 1, versions
    return versions["mm1"]


def copies(lab: Lab) -> dict[str, bool]:
    """Per node host: the copy of the helper (its upload) is in the login user's home."""
    return {n: lab.ssh(n, f"test -f /root/{UPLOAD_PATH}", check=False).returncode == 0 for n in NODES}


def refused_up(lab: Lab, tmp_path: Path, config: dict[str, Any]) -> replay.Evaluation:
    """`up` that must be refused by the preflight, with every host's files unchanged: each node
    host got only the copy of the helper in the login user's home that its preflight read its
    check from (the next run reads it there; `destroy` removes it)."""
    before = {h: snapshot(lab, h) for h in HOSTS}
    ev = replay.up(ROOT, "lab", state_path=tmp_path / "lab.json", config=config, show_secrets=True)
    assert not ev.ok, "the run must be refused"
    for host in HOSTS:
        assert diff(before[host], snapshot(lab, host)) == [], f"{host} changed although a preflight refused"
    ran = {s.name for s in ev.steps if s.type == COMMAND and s.result == "ok" and s.op != "same"} & runs_on_host(ev)
    assert ran <= {f"{n}-preflight" for n in NODES}, f"commands ran besides the preflights: {ran}"
    assert copies(lab) == dict.fromkeys(NODES, True)
    return ev


def failure(ev: replay.Evaluation, node: str) -> str:
    failed = {s.name: s.error for s in ev.failed_steps}
    assert f"{node}-preflight" in failed, (sorted(failed), ev.program_error)
    return failed[f"{node}-preflight"]


def test_an_unmodified_node_passes_the_preflight(lab: Lab, version: str) -> None:
    for node in NODES:
        script = strict(
            render_preflight_script(
                node=node, address=ADDRESS[node], unit="mattermost", install_dir="/opt/mattermost",
                version=version, version_key="mattermost.version", cluster_enabled=False,
                own_env=node_paths("/etc/mattermost-tls", "mattermost").env, driver="postgres",
                tls_mode="verify-full",
            )
        )
        r = lab.ssh(node, script, check=False)
        assert r.returncode == 0, r.stderr
        assert f"Mattermost {version} (as mattermost.version says), config {CONFIG_JSON}, clustering false" in r.stdout


@pytest.fixture
def cluster_on_in_mm2(lab: Lab) -> Iterator[None]:
    # TEST-LOCAL: clustering on in mm2's own config.json (backup kept and put back)
    lab.ssh(
        "mm2",
        f"set -e\ncp -p {CONFIG_JSON} /root/config.json.preflight-test\n"
        "python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); "
        "c.setdefault(\"ClusterSettings\", {})[\"Enable\"]=True; json.dump(c, open(p, \"w\"), indent=4)' "
        f"{CONFIG_JSON}",
    )
    yield
    lab.ssh("mm2", f"cp -p /root/config.json.preflight-test {CONFIG_JSON} && rm /root/config.json.preflight-test")


def test_clustering_on_in_config_json_while_the_stack_disables_the_cluster(
    lab: Lab, version: str, tmp_path: Path, cluster_on_in_mm2: None
) -> None:
    ev = refused_up(lab, tmp_path, {"mattermost": {"version": version}, "cluster": {"enabled": False}})
    err = failure(ev, "mm2")
    assert "node mm2 (10.251.0.102): refusing" in err
    assert f"clustering is on (ClusterSettings.Enable is true in {CONFIG_JSON}) while cluster.enabled is false" in err
    assert "Set cluster.enabled: true" in err
    assert {s.name for s in ev.failed_steps} == {"mm2-preflight"}, "only mm2 is refused"


@contextmanager
def reports_version(lab: Lab, node: str, other: str) -> Iterator[str]:
    """TEST-LOCAL: a wrapper answers `version` with `other` and runs the stand-in for anything
    else; the stand-in is put back afterwards."""
    lab.ssh(
        node,
        f"set -e\nmv {BIN} {BIN}.preflight-test-orig\n"
        f"cat > {BIN} <<'EOF'\n"
        "#!/bin/sh\n"
        "# TEST-LOCAL (tests/lab/test_node_preflight.py): reports another version; removed by the test\n"
        f'if [ "${{1:-}}" = version ]; then echo "Version: {other}"; exit 0; fi\n'
        f'exec {BIN}.preflight-test-orig "$@"\n'
        "EOF\n"
        f"chmod 0755 {BIN}",
    )
    try:
        yield other
    finally:
        lab.ssh(node, f"mv {BIN}.preflight-test-orig {BIN}")


@pytest.fixture
def mm3_reports_another_version(lab: Lab) -> Iterator[str]:
    with reports_version(lab, "mm3", "9.11.0") as other:
        yield other


def test_a_node_reporting_another_version_than_the_stack_is_refused(
    lab: Lab, version: str, tmp_path: Path, mm3_reports_another_version: str
) -> None:
    other = mm3_reports_another_version
    ev = refused_up(lab, tmp_path, {"mattermost": {"version": version}})
    err = failure(ev, "mm3")
    assert f"Mattermost {other} is installed ({BIN} version), but the stack says {version} (mattermost.version)" in err
    assert f"Set mattermost.version to {other}, or upgrade the node to {version} first" in err
    assert {s.name for s in ev.failed_steps} == {"mm3-preflight"}


def test_a_refused_runs_copy_serves_the_next_run_and_destroy_removes_it(lab: Lab, version: str, tmp_path: Path) -> None:
    """Refused, then fixed: the next `up` finds its upload unchanged in the state (no copy made
    again) and runs the refused node's preflight from the copy this run left. `destroy` of the
    refused run's state (no helper was installed, which would have taken the copy away) leaves
    no copy in any home and every host as it was."""
    with reports_version(lab, "mm3", "9.11.0"):
        ev = refused_up(lab, tmp_path, {"mattermost": {"version": version}})
        assert {s.name for s in ev.failed_steps} == {"mm3-preflight"}
    (check,) = [r for r in ev.resources if r.name == "mm3-preflight"]
    assert "mm3-preflight" not in {r.name for r in ev.state.resources}, "a refused command is not kept"
    r = lab.ssh("mm3", check.inputs["create"], input=check.inputs["stdin"], check=False)
    assert r.returncode == 0 and f"Mattermost {version} (as mattermost.version says)" in r.stdout, r.stderr
    before = {h: snapshot(lab, h) for h in HOSTS}
    gone = replay.destroy(ROOT, "lab", state_path=tmp_path / "lab.json")
    assert gone.ok and not gone.state.resources, [s.name for s in gone.failed_steps]
    assert copies(lab) == dict.fromkeys(NODES, False)
    for host in HOSTS:
        assert diff(before[host], snapshot(lab, host)) == [], host


@pytest.fixture
def mm1_config_in_database(lab: Lab) -> Iterator[None]:
    # TEST-LOCAL: the unit takes its configuration from PostgreSQL (not restarted: only read)
    dsn = f"postgres://mmuser:{DB_PASSWORD}@10.251.0.21:5432/mattermost?sslmode=disable"
    d = TEST_DROPIN.rsplit("/", 1)[0]
    created = lab.ssh("mm1", f"set -e; if [ -d {d} ]; then echo kept; else mkdir {d}; echo made; fi").stdout.strip()
    lab.ssh("mm1", f"set -e\ncat > {TEST_DROPIN} <<'EOF'\n[Service]\nEnvironment=MM_CONFIG={dsn}\nEOF\nsystemctl daemon-reload")
    assert "MM_CONFIG=postgres://" in lab.ssh("mm1", "systemctl show -p Environment --value mattermost.service").stdout
    yield
    lab.ssh("mm1", f"set -e; rm -f {TEST_DROPIN}; {'rmdir ' + d if created == 'made' else 'true'}; systemctl daemon-reload")


def test_a_node_with_its_config_in_the_database_is_refused(
    lab: Lab, version: str, tmp_path: Path, mm1_config_in_database: None
) -> None:
    ev = refused_up(lab, tmp_path, {"mattermost": {"version": version}})
    err = failure(ev, "mm1")
    assert "Mattermost reads its configuration from the database (postgres://mmuser@10.251.0.21:5432/mattermost, MM_CONFIG in Environment= of mattermost.service" in err
    assert "but the stack says mattermost.configStore: file. Set mattermost.configStore: database" in err
    assert "sslmode=disable; use sslmode=verify-full" in err
    assert "remove MM_CONFIG from mattermost.service" in err
    assert DB_PASSWORD not in err
    assert {s.name for s in ev.failed_steps} == {"mm1-preflight"}


def gossip_rows() -> dict[str, audit_tool.Check]:
    cfg = audit_tool.load_stack("lab")
    with audit_tool.private_dir() as d:
        rows = audit_tool.gossip_setting_checks(cfg, audit_tool.Hosts(cfg, d))
    return {c.hop.split(" ")[0]: c for c in rows}


def test_audit_fails_a_node_whose_running_version_lacks_the_gossip_setting(
    lab: Lab, version: str, tmp_path: Path
) -> None:
    """Converged with gossip encryption, every node's running process has the setting its version
    reads; a node whose installed version (here reported as 10.5.0) reads the experimental name
    fails, because the GA name it was given is silently ignored. Destroy gives every byte back."""
    state = tmp_path / "lab.json"
    before = {h: snapshot(lab, h) for h in HOSTS}
    ev = replay.up(ROOT, "lab", state_path=state, config={"mattermost": {"version": version}}, show_secrets=True)
    try:
        assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
        rows = gossip_rows()
        assert set(rows) == set(NODES)
        for node, row in rows.items():
            assert row.ok, (node, row.detail)
            assert "MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION=true in the process environment" in row.detail
        with reports_version(lab, "mm2", "10.5.0"):
            rows = gossip_rows()
        assert rows["mm1"].ok and rows["mm3"].ok
        assert not rows["mm2"].ok
        assert rows["mm2"].detail.startswith("10.5.0 needs MM_CLUSTERSETTINGS_ENABLEEXPERIMENTALGOSSIPENCRYPTION")
        assert "MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION is set but 10.5.0 ignores it" in rows["mm2"].detail
    finally:
        gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error[-800:] for s in gone.failed_steps]
    for host in HOSTS:
        assert diff(before[host], snapshot(lab, host)) == [], host
