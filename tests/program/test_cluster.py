"""The Cluster component inside the REAL program (replay engine preview, no SSH): what it
registers, what is secret, what the nodes wait for, and what a fourth node or a gossip-mode
switch changes.
"""

from __future__ import annotations

import binascii
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from components import cluster_render as r
from components.remote_files import command_script, stdin_contents
from lab.replay import Evaluation, ReplayError, Resource

CLUSTER_TYPE = "mattermost-tls:cluster:Cluster"
NODES = ("mm1", "mm2", "mm3")
ROLES = ("preflight", "account", "client-key", "sshd", "firewall", "units", "gossip-mode")
MM4_HOST_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def runs(res: Any, field: str) -> str:
    """Command `field` with the scripts it runs from the helper manifest on its stdin."""
    stdin = res.inputs["stdin"]
    return command_script(res.inputs[field], stdin["value"] if isinstance(stdin, dict) else stdin)


def cluster_config(lab: dict[str, Any], *, four: bool = False, **cluster: Any) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"name": n} for n in NODES]
    if four:
        nodes.append({"name": "mm4", "address": "10.251.0.104", "ssh": {"hostKey": MM4_HOST_KEY}})
    return {**lab, "nodes": nodes, "cluster": {"enabled": True, **cluster}}


@pytest.fixture(scope="module")
def three(replay: Any, replay_lab_config: dict[str, Any]) -> Evaluation:
    return replay(cluster_config(replay_lab_config))


def cluster_resources(ev: Evaluation) -> list[Resource]:
    (component,) = ev.by_type(CLUSTER_TYPE)
    return ev.descendants(component)


def files_in(res: Resource) -> list[str]:
    """The file contents a managed_files command carries in stdin, in order."""
    return stdin_contents(res.inputs["stdin"])


def _decoded(stdin: str) -> list[str]:
    """A plain stdin's contents, base64-framed run_script inputs decoded (a key hidden in base64
    would not show in the manifest's text)."""
    try:
        return stdin_contents(stdin)
    except (ValueError, binascii.Error):
        return []


def test_every_node_and_pair_gets_stably_named_children_of_the_component(three: Evaluation) -> None:
    names = {res.name for res in cluster_resources(three)}
    expected = {f"{n}-cluster-{role}" for n in NODES for role in ROLES}
    expected |= {f"{n}-cluster-ssh-key" for n in NODES}
    expected |= {f"{n}-cluster-tunnel-{p}" for n in NODES for p in NODES if p != n}
    assert names == expected
    (component,) = three.by_type(CLUSTER_TYPE)
    assert all(res.parent_urn == component.urn for res in cluster_resources(three))


def test_private_keys_are_secret_everywhere_and_public_material_is_not(three: Evaluation) -> None:
    for n in NODES:
        key = three.get(f"{n}-cluster-ssh-key")
        assert key.inputs["algorithm"] == "ED25519"
        assert key.is_secret_output("privateKeyOpenssh") and not key.is_secret_output("publicKeyOpenssh")
        installed = three.get(f"{n}-cluster-client-key")
        assert installed.is_secret_input("stdin")
        assert set(installed.options.additional_secret_outputs) >= {"stdout", "stderr"}
        assert files_in(installed)[0] == key.outputs["privateKeyOpenssh"]
        # the key never travels in command text
        assert not any("PRIVATE KEY" in t for t in installed.command_texts())
    # no private key in any input that is not marked secret, in any resource of the program
    privs = [three.get(f"{n}-cluster-ssh-key").outputs["privateKeyOpenssh"].strip().splitlines()[1] for n in NODES]
    for res in three.resources:
        for k, v in res.inputs.items():
            if res.is_secret_input(k):
                continue
            text = str(v) + ("".join(_decoded(v)) if k == "stdin" and isinstance(v, str) else "")
            assert not any(p in text for p in privs), (res.name, k)
    assert "cluster" in three.outputs and "cluster" not in three.secret_outputs


def test_authorized_keys_admit_exactly_the_peers_keys(three: Evaluation) -> None:
    pubs = {n: three.get(f"{n}-cluster-ssh-key").outputs["publicKeyOpenssh"].split()[1] for n in NODES}
    for n in NODES:
        authorized, dropin = files_in(three.get(f"{n}-cluster-sshd"))
        assert "Match User mmtunnel" in dropin
        for p in NODES:
            assert (pubs[p] in authorized) is (p != n)


def test_each_tunnel_pins_the_peers_configured_host_key(three: Evaluation, replay_inventory: Any) -> None:
    import json

    inventory = json.loads(replay_inventory.read_text())
    for n in NODES:
        for p in NODES:
            if p == n:
                continue
            known_hosts, unit, target_dropin = files_in(three.get(f"{n}-cluster-tunnel-{p}"))
            assert known_hosts == f"mm-cluster-{p} {inventory['hosts'][p]['hostKey']}\n"
            assert f"mmtunnel@{inventory['hosts'][p]['address']}" in unit and "StrictHostKeyChecking=yes" in unit
            assert target_dropin.endswith(f"Wants=mm-tunnel-{p}.service\n")


def test_a_tunnel_waits_for_the_peer_to_admit_its_key(three: Evaluation) -> None:
    tunnel = three.get("mm1-cluster-tunnel-mm2")
    deps = tunnel.all_dependencies()
    for needed in ("mm2-cluster-sshd", "mm1-cluster-client-key", "mm1-cluster-units", "mm1-cluster-firewall"):
        assert three.get(needed).urn in deps, needed


def test_nodes_restart_only_after_their_tunnels_dnat_and_every_nodes_gossip_stop(three: Evaluation) -> None:
    stops = {three.get(f"{n}-cluster-gossip-mode").urn for n in NODES}
    every_tunnel = {res.urn for res in three.resources if "-cluster-tunnel-" in res.name}
    for n in NODES:
        restart = three.get(f"{n}-tls-files")
        deps = set(restart.dependencies)
        assert stops <= deps
        assert three.get(f"{n}-cluster-firewall").urn in deps and three.get(f"{n}-cluster-units").urn in deps
        assert {three.get(f"{n}-cluster-tunnel-{p}").urn for p in NODES if p != n} <= deps
        # the stop itself waits for the whole mesh: the downtime starts as late as possible
        assert every_tunnel <= set(three.get(f"{n}-cluster-gossip-mode").dependencies)


def test_node_environment_carries_the_cluster_settings(three: Evaluation) -> None:
    for n, last in zip(NODES, (101, 102, 103), strict=True):
        restart = three.get(f"{n}-tls-files")
        assert restart.is_secret_input("stdin")  # the env file also carries the DSN
        env = next(f for f in files_in(restart) if "MM_SQLSETTINGS_DATASOURCE" in f)
        for line in (
            'MM_CLUSTERSETTINGS_ENABLE="true"',
            f'MM_CLUSTERSETTINGS_ADVERTISEADDRESS="10.251.0.{last}"',
            f'MM_CLUSTERSETTINGS_BINDADDRESS="10.251.0.{last}"',
            'MM_CLUSTERSETTINGS_GOSSIPPORT="8074"',
            'MM_CLUSTERSETTINGS_USEIPADDRESS="true"',
            # the lab runs v11: the post-10.11 name
            'MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION="true"',
        ):
            assert line in env.splitlines(), (n, line)


def test_summary_output_lists_the_tunnel_ports(three: Evaluation) -> None:
    summary = three.outputs["cluster"]
    assert summary["ports"] == ["8074"]
    assert summary["nodes"]["mm1"]["tunnels"] == {"mm2": ["28102"], "mm3": ["28103"]}
    assert summary["nodes"]["mm2"]["keyFingerprint"].startswith("SHA256:")


def test_a_fourth_node_adds_its_own_resources_and_changes_existing_ones_only_by_its_lines(
    replay: Any, replay_lab_config: dict[str, Any], three: Evaluation
) -> None:
    four = replay(cluster_config(replay_lab_config, four=True), state=three.state)
    assert not four.program_error, four.program_error
    ops = {s.name: s.op for s in four.steps if s.type != CLUSTER_TYPE}
    mine = {res.name for res in cluster_resources(four)}
    created = {n for n in mine if ops.get(n) == "create"}
    changed = {n for n in mine if ops.get(n) in ("update", "replace")}
    assert created == (
        {f"mm4-cluster-{role}" for role in ROLES}
        | {"mm4-cluster-ssh-key"}
        | {f"mm4-cluster-tunnel-{p}" for p in NODES}
        | {f"{n}-cluster-tunnel-mm4" for n in NODES}
    )
    # the only existing resources that change: the files listing every peer gain mm4's lines
    assert changed == {f"{n}-cluster-{role}" for n in NODES for role in ("sshd", "firewall")}
    assert {s.op for s in four.steps if s.name in changed} == {"update"}
    for n in NODES:
        old_auth, old_dropin = files_in(three.get(f"{n}-cluster-sshd"))
        new_auth, new_dropin = files_in(four.get(f"{n}-cluster-sshd"))
        assert old_dropin == new_dropin
        assert set(old_auth.splitlines()) <= set(new_auth.splitlines())
        assert len(set(new_auth.splitlines()) - set(old_auth.splitlines())) == 1
    # nothing about existing pairs moved, and no existing node restarts for it
    for n in NODES:
        assert ops[f"{n}-tls-files"] == "same"
        assert ops[f"{n}-cluster-gossip-mode"] == "same"
    assert four.outputs["cluster"]["nodes"]["mm1"]["tunnels"]["mm2"] == ["28102"]


def test_switching_gossip_encryption_stops_every_node_before_any_restart(
    replay: Any, replay_lab_config: dict[str, Any], three: Evaluation
) -> None:
    off = replay(cluster_config(replay_lab_config, gossipEncryption=False), state=three.state)
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


def test_a_slot_collision_stops_the_program_naming_the_key(replay: Any, replay_lab_config: dict[str, Any]) -> None:
    cfg = cluster_config(replay_lab_config)
    cfg["nodes"][2]["tunnelSlot"] = 101  # mm1 derives 101 from 10.251.0.101
    with pytest.raises(ReplayError, match=r"nodes\[2\]\.tunnelSlot: node 'mm3' gets tunnel slot 101 \(explicit\)"):
        replay(cfg)


def test_cluster_disabled_registers_nothing_of_it(replay: Any, replay_lab_config: dict[str, Any]) -> None:
    ev = replay({**replay_lab_config, "cluster": {"enabled": False}})
    assert not ev.by_type(CLUSTER_TYPE)
    assert not ev.any_command_contains(r.HELPER)
