"""The CA rotation's phase graph, run by the real program with the replay engine over each
phase's predecessor state (no host touched): none -> `ca.rotation: stage` -> `ca.rotation:
switch` -> `ca.generation: 2` (rotation unset). What each phase may change (the engine's step
operations) is what makes the rotation lose no request: nothing served changes in the `up` that
changes the trust verifying it. The replay's pulumi-tls keeps the CA keys in the state from one
phase to the next and signs with them, so signatures and key types are real.

- stage: only the new CA is created; every trust file (nodes, their system store, NGINX, the DB
  server, GitLab, the Teleport plugin) and `caCertPem` become the two-CA bundle; no leaf changes.
- switch: every leaf certificate is replaced, signed by generation 2; the CAs and bundles stay.
- finish: generation 1 is deleted; the bundles hold generation 2 only; no leaf changes.
The pieces (`Ca.trusted`/`Ca.issuer`, `trust_bundle`, `ca_subject`, the config errors) and one
phase's rendering are tested in tests/program/test_ca_rotation.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from components.remote_files_render import stdin_contents
from lab.replay import Evaluation, Secret, evaluate
from tests.helpers.program import PROJECT_DIR

EXTRAS = {
    "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab"},
    "teleport": {"enabled": True, "host": "plugin"},
    "teleportToken": Secret("bot-token-abcdefghijklmnop"),
}
LEAVES = {
    "mm1-server-cert", "mm2-server-cert", "mm3-server-cert", "database-server-cert",
    "proxy-public-cert", "gitlab-gitlab-mattermost-cert",
}
# every command that installs the trust bundle, and where (the file's path ends with). NGINX's
# (proxy-site) is rendered from the live site's capture, unknown in a preview: the lab test reads
# its CA file on the proxy after each phase (tests/lab/test_ca_rotation.py).
TRUST_FILES = {
    **{f"mm{i}-db-ca": ("/etc/mattermost-tls/ca.crt", "mattermost-transport-ca.crt") for i in (1, 2, 3)},
    "database-server-tls": ("ca.crt",),
    "gitlab-gitlab-tls-files": ("ca.crt",),
    "plugin-teleport-mattermost-files": ("ca.crt",),
}


SWITCH_CHECKS = {f"ca-switch-check-{h}" for h in ("mm1", "mm2", "mm3", "proxy", "database", "gitlab", "teleport")}
"""components/ca_switch.py: one read-only check per host holding a trust file, during `switch` only."""


def certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def ops(ev: Evaluation) -> dict[str, str]:
    return {s.name: s.op for s in ev.steps if s.op != "same"}


def trust_contents(ev: Evaluation, name: str) -> list[str]:
    """The contents of the CA files `name` installs (from its helper manifest)."""
    res = ev.get(name, "command:remote:Command")
    stdin = res.inputs["stdin"]
    stdin = stdin["value"] if isinstance(stdin, dict) else stdin
    contents = stdin_contents(stdin)
    entries = [line for line in stdin.split("\n") if line.startswith("file ")]
    assert len(entries) == len(contents), name
    # an entry line is `file MODE OWNER:GROUP SHA SIZE PATH` (remote_files_render._file_line)
    return [c for e, c in zip(entries, contents, strict=True) if e.split(" ", 5)[5].endswith(TRUST_FILES[name])]


def signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@pytest.fixture(scope="module")
def phases(lab_config: dict[str, Any]) -> dict[str, Evaluation]:
    base_cfg = {**lab_config, **EXTRAS}
    ca = {"commonName": "Mattermost lab transport CA", "organization": "Lab"}
    out: dict[str, Evaluation] = {}
    out["none"] = evaluate(PROJECT_DIR, "lab", config={**base_cfg, "ca": ca})
    state = out["none"].state
    for phase, ca_cfg in [
        ("stage", {**ca, "rotation": "stage"}),
        ("switch", {**ca, "rotation": "switch"}),
        ("finish", {**ca, "generation": 2}),
    ]:
        out[phase] = evaluate(PROJECT_DIR, "lab", config={**base_cfg, "ca": ca_cfg}, state=state)
        state = out[phase].state
    return out


def test_stage_adds_the_new_ca_to_every_trust_file_and_changes_nothing_served(phases: dict[str, Evaluation]) -> None:
    ev = phases["stage"]
    ch = ops(ev)
    assert {n for n, op in ch.items() if op == "create"} == {"pki-ca2-key", "pki-ca2-cert"}, ch
    assert not {n for n, op in ch.items() if op in ("replace", "delete", "delete-replaced")}, ch
    assert set(TRUST_FILES) <= {n for n, op in ch.items() if op == "update"}, ch
    old = certs(phases["none"].outputs["caCertPem"])
    bundle = certs(ev.outputs["caCertPem"])
    assert len(old) == 1 and len(bundle) == 2 and bundle[0] == old[0], "old CA first, then the new one"
    assert bundle[0].subject != bundle[1].subject
    for name in TRUST_FILES:
        files = trust_contents(ev, name)
        assert files and all(certs(f) == bundle for f in files), name
    # every leaf still comes from the old CA
    for leaf in LEAVES:
        assert signed_by(certs(ev.get(leaf).outputs["certPem"])[0], old[0]), leaf


def test_stage_restarts_a_mysql_node_but_not_a_postgres_one(
    phases: dict[str, Evaluation], lab_config: dict[str, Any], inventory: Any
) -> None:
    """go-sql-driver verifies against Go's system roots, read once per process: a MySQL node must
    restart (`<node>-tls-files`, whose env file carries the bundle's hash) to trust the staged CA
    before `switch` gives the database server a certificate from it. lib/pq reads sslrootcert at
    every login: a PostgreSQL node's stage changes only its `<node>-db-ca`."""
    from components.node_render import TRUST_STAMP

    pg = ops(phases["stage"])
    assert not {f"mm{i}-tls-files" for i in (1, 2, 3)} & set(pg), pg
    mysql_password = json.loads(Path(inventory).read_text())["databases"]["mysql"]["password"]
    cfg = {
        **lab_config, "dbPassword": Secret(mysql_password), "mattermost": {"version": "10.11.3"},
        "database": {"engine": "mysql", "host": "mariadb"},
    }
    ca = {"commonName": "Mattermost lab transport CA", "organization": "Lab"}
    none = evaluate(PROJECT_DIR, "lab", config={**cfg, "ca": ca})
    stage = evaluate(PROJECT_DIR, "lab", config={**cfg, "ca": {**ca, "rotation": "stage"}}, state=none.state)
    my = ops(stage)
    assert {f"mm{i}-tls-files" for i in (1, 2, 3)} <= {n for n, op in my.items() if op == "update"}, my
    assert not {n for n, op in my.items() if n.endswith("-server-cert") and op != "same"}, my
    for ev, count in ((none, 1), (stage, 2)):
        env = [c for c in stdin_contents(_stdin(ev, "mm1-tls-files")) if "MM_SQLSETTINGS_DATASOURCE=" in c]
        assert len(env) == 1 and TRUST_STAMP in env[0] and len(certs(ev.outputs["caCertPem"])) == count


def _stdin(ev: Evaluation, name: str) -> str:
    stdin = ev.get(name, "command:remote:Command").inputs["stdin"]
    return stdin["value"] if isinstance(stdin, dict) else stdin


def test_switch_replaces_every_leaf_with_one_from_the_new_ca_and_keeps_both_trusted(
    phases: dict[str, Evaluation],
) -> None:
    ev = phases["switch"]
    ch = ops(ev)
    replaced = {n for n, op in ch.items() if op in ("replace", "delete-replaced")}
    assert replaced == LEAVES, ch
    assert {n for n, op in ch.items() if op == "create"} == SWITCH_CHECKS, "only the read-only checks are new"
    assert not {n for n, op in ch.items() if op == "delete"}, ch
    assert ev.outputs["caCertPem"] == phases["stage"].outputs["caCertPem"], "trust unchanged while servers switch"
    new_ca = certs(ev.outputs["caCertPem"])[1]
    for leaf in LEAVES:
        assert signed_by(certs(ev.get(leaf).outputs["certPem"])[0], new_ca), leaf
    for name in TRUST_FILES:
        assert all(len(certs(f)) == 2 for f in trust_contents(ev, name)), name


def test_finish_drops_and_deletes_the_old_ca_and_leaves_the_leaves(phases: dict[str, Evaluation]) -> None:
    ev = phases["finish"]
    ch = ops(ev)
    # the switch's read-only checks go too (nothing to undo on a host: a read script has no delete)
    assert {n for n, op in ch.items() if op == "delete"} == {"pki-ca-key", "pki-ca-cert", *SWITCH_CHECKS}, ch
    assert not {n for n, op in ch.items() if op in ("create", "replace", "delete-replaced")}, ch
    new_ca = certs(phases["switch"].outputs["caCertPem"])[1]
    assert certs(ev.outputs["caCertPem"]) == [new_ca]
    for name in TRUST_FILES:
        assert all(certs(f) == [new_ca] for f in trust_contents(ev, name)), name


def test_switch_waits_for_a_check_of_every_trust_file_that_it_holds_the_new_ca(phases: dict[str, Evaluation]) -> None:
    """A `switch` whose `stage` never ran would give servers certificates their verifiers do not
    trust yet: every host's trust files are checked first (the script itself is run against
    files in tests/unit/test_ca_switch.py), and every host change waits for the checks."""
    ev = phases["switch"]
    passed = ev.get("preflights-passed")
    new_ca = certs(ev.outputs["caCertPem"])[1]
    from components.ca_switch import pem_body
    from components.remote_files_render import read_script_source

    for name in SWITCH_CHECKS:
        check = ev.get(name, "command:remote:Command")
        assert check.urn in passed.dependencies, name
        stdin = check.inputs["stdin"]
        script = read_script_source(stdin["value"] if isinstance(stdin, dict) else stdin)
        assert pem_body(_pem_of(new_ca)) in script and "generation=2" in script, name
        assert "delete" not in check.inputs, "read-only: nothing to undo"
    scripts = {n: read_script_source(_stdin(ev, n)) for n in ("ca-switch-check-mm1", "ca-switch-check-proxy")}
    assert "/etc/mattermost-tls/ca.crt" in scripts["ca-switch-check-mm1"]
    assert "mattermost-transport-ca.crt" in scripts["ca-switch-check-mm1"]
    assert "/etc/nginx/mattermost-tls/ca.crt" in scripts["ca-switch-check-proxy"]
    for phase in ("none", "stage", "finish"):
        assert not [r for r in phases[phase].resources if r.name.startswith("ca-switch-check-")], phase


def _pem_of(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_key_types_stay_as_configured_for_the_new_generation(phases: dict[str, Evaluation]) -> None:
    new_ca = certs(phases["stage"].outputs["caCertPem"])[1]
    assert isinstance(new_ca.public_key(), ec.EllipticCurvePublicKey)
    assert new_ca.public_key() != certs(phases["stage"].outputs["caCertPem"])[0].public_key(), "a new key, not a re-signed one"
