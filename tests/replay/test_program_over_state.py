"""The program over an earlier state, with the replay engine (lab.replay): what Pulumi would do
to an existing stack (step operations same/update/replace/create) when a node joins, the
gossip mode switches or what a preflight checks changes. Only the engine's diff against a
previous state shows these; the graphs themselves are tested on Pulumi's mock runtime in
tests/program (test_program.py, test_cluster.py, test_node_preflight.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lab.replay import Evaluation, Secret, evaluate
from tests.helpers.certs import ssh_host_key
from tests.helpers.program import (
    CLUSTER_NODES,
    CLUSTER_TYPE,
    KEY,
    PROJECT_DIR,
    cluster_config,
    cluster_resources,
    files_in,
    prod_nodes,
)
from tests.helpers.pulumi_mocks import runs

NODES = CLUSTER_NODES
ROLES = ("account", "client-key", "firewall", "tunnels", "gossip-mode")
MM4_HOST_KEY = ssh_host_key()


# ---------------------------------------------------------------- a node joins the prod stack


def test_adding_a_node_renames_nothing_and_changes_only_what_mentions_it() -> None:
    base = evaluate(PROJECT_DIR, "prod", config={"sshPrivateKey": Secret(KEY)}, preview=True)
    nodes = copy.deepcopy(prod_nodes())
    nodes.append({"name": "mm4", "address": "10.10.250.170", "ssh": {"hostKey": nodes[0]["ssh"]["hostKey"]}})
    more = evaluate(PROJECT_DIR, "prod", config={"sshPrivateKey": Secret(KEY), "nodes": nodes}, state=base.state)
    assert {r.urn for r in base.resources} < {r.urn for r in more.resources}
    changed = {s.name: s.op for s in more.steps if s.op != "same"}
    created = {n for n, op in changed.items() if op == "create"}
    own = {"mm4", "host-helper-10.10.250.170", "host-helper-10.10.250.170-upload", "host-helper-10.10.250.170-copy", "mm4-preflight", "mm4-server-key", "mm4-server-csr", "mm4-server-cert", "mm4-db-ca", "mm4-tls-files"}
    # prod runs a cluster: mm4 gets its own cluster resources (one tunnel set for all its peers)
    cluster_roles = ("ssh-key", "account", "client-key", "firewall", "tunnels", "gossip-mode")
    own |= {f"mm4-cluster-{role}" for role in cluster_roles}
    assert created == own, changed
    # the key list, and the old nodes' sshd (authorized_keys), firewall and tunnel set admit and
    # reach the new peer. Both proxy sites list the nodes; on the host the transition finds the site
    # on TLS and skips. Their content is rendered from the capture of the live NGINX site
    # (components/nginx_live.py), which a preview-only state never ran: the replay shows them
    # unchanged (unknown inputs), where Pulumi would show an update with unknown content.
    # tests/lab proves the real change.
    cluster = {"cluster-public-keys"} | {f"{n}-cluster-{role}" for n in ("mm1", "mm2", "mm3") for role in ("firewall", "tunnels")}
    # and each old node's copy of the host helper: its own library holds those tables (components/host_helper.py)
    helpers = {f"host-helper-{n['address']}{s}" for n in nodes[:3] for s in ("", "-upload")}
    others = {n for n, op in changed.items() if op != "create"}
    assert cluster | helpers <= others <= cluster | helpers | {"proxy-site", "proxy-transition"}, changed


# ---------------------------------------------------------------- the lab stack's cluster


@pytest.fixture(scope="module")
def three(replay: Any, lab_config: dict[str, Any]) -> Evaluation:
    return replay(cluster_config(lab_config))


def test_a_fourth_node_adds_its_own_resources_and_changes_existing_ones_only_by_its_lines(
    replay: Any, lab_config: dict[str, Any], three: Evaluation
) -> None:
    four = replay(cluster_config(lab_config, mm4_host_key=MM4_HOST_KEY), state=three.state)
    assert not four.program_error, four.program_error
    ops = {s.name: s.op for s in four.steps if s.type != CLUSTER_TYPE}
    mine = {res.name for res in cluster_resources(four)}
    created = {n for n in mine if ops.get(n) == "create"}
    changed = {n for n in mine if ops.get(n) in ("update", "replace")}
    assert created == {f"mm4-cluster-{role}" for role in ROLES} | {"mm4-cluster-ssh-key"}
    # the only existing resources that change: the files listing every peer gain mm4's lines
    assert changed == {f"{n}-cluster-{role}" for n in NODES for role in ("firewall", "tunnels")} | {
        "cluster-public-keys"
    }
    assert {s.op for s in four.steps if s.name in changed} == {"update"}
    for n in NODES:
        *_, old_auth, old_dropin = files_in(three.get(f"{n}-cluster-firewall"))  # sshd's files, last
        *_, new_auth, new_dropin = files_in(four.get(f"{n}-cluster-firewall"))
        assert old_dropin == new_dropin
        assert set(old_auth.splitlines()) <= set(new_auth.splitlines())
        assert len(set(new_auth.splitlines()) - set(old_auth.splitlines())) == 1
        old_files, new_files = files_in(three.get(f"{n}-cluster-tunnels")), files_in(four.get(f"{n}-cluster-tunnels"))
        assert old_files[1] == new_files[1]  # the template: no tunnel restarts for it
        old, new = old_files[0], new_files[0]  # the table (with the pins): one line more
        assert set(old.splitlines()) <= set(new.splitlines())
        assert [x.split()[0] for x in set(new.splitlines()) - set(old.splitlines())] == ["mm4"]
    # nothing about existing pairs moved, and no existing node restarts for it
    for n in NODES:
        assert ops[f"{n}-tls-files"] == "same"
        assert ops[f"{n}-cluster-gossip-mode"] == "same"
    assert four.outputs["cluster"]["nodes"]["mm2"]["localPorts"] == ["28102"]


def test_switching_gossip_encryption_stops_every_node_before_any_restart(
    replay: Any, lab_config: dict[str, Any], three: Evaluation
) -> None:
    off = replay(cluster_config(lab_config, gossipEncryption=False), state=three.state)
    ops = {s.name: s.op for s in off.steps}
    assert {ops[f"{n}-cluster-gossip-mode"] for n in NODES} == {"replace"}
    assert {ops[f"{n}-tls-files"] for n in NODES} == {"update"}
    # nothing else of the mesh changes
    others = {res.name for res in cluster_resources(off)} - {f"{n}-cluster-gossip-mode" for n in NODES}
    assert {ops[n] for n in others} == {"same"}
    for n in NODES:
        stop = off.get(f"{n}-cluster-gossip-mode")
        assert "want=false" in runs(stop, "create")
        assert 'MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION="false"' in next(
            f for f in files_in(off.get(f"{n}-tls-files")) if "MM_SQLSETTINGS_DATASOURCE" in f
        )


# ---------------------------------------------------------------- the node preflight


def test_the_preflight_runs_again_when_what_it_checks_changes(lab_config: dict[str, Any]) -> None:
    base = evaluate(PROJECT_DIR, "lab", config=lab_config)
    again = evaluate(PROJECT_DIR, "lab", config=lab_config, state=base.state)
    assert {s.name: s.op for s in again.steps if s.name.endswith("-preflight")} == {
        "mm1-preflight": "same", "mm2-preflight": "same", "mm3-preflight": "same",
    }
    newer = evaluate(
        PROJECT_DIR, "lab", config={**lab_config, "mattermost": {"version": "11.2.0"}}, state=base.state
    )
    ops = {s.name: s.op for s in newer.steps}
    assert {ops[f"{n}-preflight"] for n in NODES} == {"update"}, ops
