"""The Cluster component inside the REAL program on Pulumi's mock runtime (tests/helpers/program.py,
no SSH): what it registers, what is secret, what the nodes wait for, and how the graph grows with
the node count. What a fourth node or a gossip-mode switch changes over an earlier state is the
replay engine's (tests/replay/test_program_over_state.py).
"""

from __future__ import annotations

import binascii
from typing import Any

import pytest

from components import cluster_render as r
from components.platform import DEBIAN
from components.remote_files_render import stdin_contents
from tests.helpers.certs import ssh_host_key, ssh_private_key
from tests.helpers.program import (
    CLUSTER_TYPE,
    STDOUT,
    Program,
    Secret,
    cluster_config,
    cluster_resources,
    current_dsn_output,
    files_in,
    run_stack,
)

NODES = ("mm1", "mm2", "mm3")
ROLES = ("account", "client-key", "firewall", "tunnels", "gossip-mode")
SHARED = ("cluster-public-keys", "cluster-sshd-ready", "cluster-mesh-ready", "cluster-gossip-stopped")


@pytest.fixture(scope="module")
def three(program: Any, lab_config: dict[str, Any]) -> Program:
    ev = program(cluster_config(lab_config))
    assert not ev.program_error, ev.program_error
    return ev


def _decoded(stdin: str) -> list[str]:
    """A plain stdin's contents, base64-framed run_script inputs decoded (a key hidden in base64
    would not show in the manifest's text)."""
    try:
        return stdin_contents(stdin)
    except (ValueError, binascii.Error):
        return []


def test_every_node_gets_a_fixed_set_of_stably_named_children_of_the_component(three: Program) -> None:
    names = {res.name for res in cluster_resources(three)}
    expected = {f"{n}-cluster-{role}" for n in NODES for role in ROLES}
    expected |= {f"{n}-cluster-ssh-key" for n in NODES}
    expected |= set(SHARED)
    assert names == expected
    (component,) = three.by_type(CLUSTER_TYPE)
    assert all(res.parent_urn == component.urn for res in cluster_resources(three))


def test_private_keys_are_secret_everywhere_and_public_material_is_not(three: Program) -> None:
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


def test_authorized_keys_admit_exactly_the_peers_keys(three: Program) -> None:
    pubs = {n: three.get(f"{n}-cluster-ssh-key").outputs["publicKeyOpenssh"].split()[1] for n in NODES}
    for n in NODES:
        *_, authorized, dropin = files_in(three.get(f"{n}-cluster-firewall"))  # sshd's files, last
        assert "Match User mmtunnel" in dropin
        for p in NODES:
            assert (pubs[p] in authorized) is (p != n)


def test_each_nodes_tunnel_set_pins_every_peers_configured_host_key(three: Program, inventory: Any) -> None:
    import json

    inventory = json.loads(inventory.read_text())
    for n in NODES:
        table, template, dropin = files_in(three.get(f"{n}-cluster-tunnels"))
        peers = [p for p in NODES if p != n]
        rows = {line.split()[0]: line.split() for line in table.splitlines() if not line.startswith("#")}
        assert set(rows) == set(peers)
        for p in peers:
            assert rows[p][2] == inventory["hosts"][p]["hostKey"].split()[1]
            # peer, local ports, pinned key, its algorithms, destination, ssh port, remote ports:
            # the fixed ssh options (StrictHostKeyChecking=yes, ...) are in the helper
            assert rows[p][3:] == [
                inventory["hosts"][p]["hostKey"].split()[0], f"mmtunnel@{inventory['hosts'][p]['address']}", "22", "8074"
            ]
        helper = files_in(three.get(f"{n}-cluster-firewall"))[0]
        assert "-o StrictHostKeyChecking=yes" in helper and '-o "UserKnownHostsFile=$known_hosts"' in helper
        assert "ExecStart=/usr/local/sbin/mm-cluster tunnel %i" in template.splitlines()
        assert dropin.endswith("Wants=" + " ".join(f"mm-tunnel@{p}.service" for p in peers) + "\n")


def test_barriers_run_nothing_and_open_no_connection(three: Program) -> None:
    for name in SHARED:
        res = three.get(name)
        assert not any(res.inputs.get(k) for k in ("create", "update", "delete")), name
    # the key list carries public keys only
    assert "PRIVATE" not in three.get("cluster-public-keys").inputs["stdin"]


def test_tunnels_wait_for_every_peer_to_admit_their_key_through_one_barrier(three: Program) -> None:
    barrier = three.get("cluster-sshd-ready")
    assert {three.get(f"{n}-cluster-firewall").urn for n in NODES} <= set(barrier.dependencies)
    for n in NODES:
        deps = three.get(f"{n}-cluster-tunnels").all_dependencies()
        for needed in ("cluster-sshd-ready", f"{n}-cluster-client-key"):
            assert three.get(needed).urn in deps, needed
        # authorized_keys read from the one key list, not from every key resource
        sshd = three.get(f"{n}-cluster-firewall").all_dependencies()
        assert three.get("cluster-public-keys").urn in sshd
        assert not any(three.get(f"{p}-cluster-ssh-key").urn in sshd for p in NODES)


def test_nodes_restart_only_after_their_tunnels_dnat_and_every_nodes_gossip_stop(three: Program) -> None:
    """Through barriers: tunnels -> mesh-ready -> every stop -> gossip-stopped -> each node's restart."""
    urn = {res.name: res.urn for res in three.resources}
    mesh = set(three.get("cluster-mesh-ready").dependencies)
    assert {urn[f"{n}-cluster-tunnels"] for n in NODES} <= mesh
    stopped = set(three.get("cluster-gossip-stopped").dependencies)
    assert {urn[f"{n}-cluster-gossip-mode"] for n in NODES} <= stopped
    for n in NODES:
        # the stop waits for the whole mesh: the downtime starts as late as possible
        assert urn["cluster-mesh-ready"] in three.get(f"{n}-cluster-gossip-mode").dependencies
        # one edge (the SDK walks each edge's whole upstream), the same for every node, and no
        # barrier of its own (a resource per node for nothing); the node's own firewall (with its
        # units) and tunnels are behind it
        # (the restart waits for it through the node's CA file, components/node.py)
        assert urn["cluster-gossip-stopped"] in three.get(f"{n}-db-ca").dependencies
        assert urn[f"{n}-db-ca"] in three.get(f"{n}-tls-files").dependencies
        for step in ("db-ca", "tls-files"):
            deps = three.get(f"{n}-{step}").dependencies
            assert not [d for d in deps if "Cluster$" in d and "gossip-stopped" not in d], (step, deps)
        assert {urn[f"{n}-cluster-{x}"] for x in ("firewall", "tunnels")} <= upstream(three, "cluster-gossip-stopped")
    assert not [name for name in urn if name.endswith("-cluster-ready")]


def upstream(ev: Program, name: str) -> set[str]:
    """Every URN `name` waits for, directly or through others."""
    by_urn = {res.urn: res for res in ev.resources}
    seen: set[str] = set()
    todo = list(ev.get(name).all_dependencies())
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            todo += list(by_urn[u].all_dependencies()) if u in by_urn else []
    return seen


def test_node_environment_carries_the_cluster_settings(three: Program) -> None:
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


def test_summary_output_lists_the_tunnel_ports(three: Program) -> None:
    summary = three.outputs["cluster"]
    assert summary["ports"] == ["8074"]
    # per node the loopback ports its peers reach it on (the same on every peer): one entry per
    # node, not per pair
    assert {n: x["localPorts"] for n, x in summary["nodes"].items()} == {"mm1": ["28101"], "mm2": ["28102"], "mm3": ["28103"]}
    assert all(set(x) == {"address", "slot", "keyFingerprint", "localPorts"} for x in summary["nodes"].values())
    assert summary["nodes"]["mm2"]["keyFingerprint"].startswith("SHA256:")


def test_a_slot_collision_stops_the_program_naming_the_key(program: Any, lab_config: dict[str, Any]) -> None:
    cfg = cluster_config(lab_config)
    cfg["nodes"][2]["tunnelSlot"] = 101  # mm1 derives 101 from 10.251.0.101
    ev = program(cfg)
    assert "nodes[2].tunnelSlot: node 'mm3' gets tunnel slot 101 (explicit)" in ev.program_error, ev.program_error
    assert not [res for res in ev.resources if res.custom]


def test_cluster_disabled_registers_nothing_of_it(program: Any, lab_config: dict[str, Any]) -> None:
    ev = program({**lab_config, "cluster": {"enabled": False}})
    assert not ev.by_type(CLUSTER_TYPE)
    assert not ev.any_command_contains(r.HELPER)


# ---------------------------------------------------------------- growth with the node count


def edges(ev: Program) -> int:
    """(resource, dependency) pairs from dependencies and property dependencies, parent excluded
    (what bench/run.py prints)."""
    return sum(
        len((set(res.dependencies) | {u for us in res.property_dependencies.values() for u in us}) - {res.parent_urn})
        for res in ev.resources
    )


SITE_DSN = "postgres://mmuser:site-Pw-1@10.20.9.1:5432/mattermost?sslmode=disable&connect_timeout=10"


@pytest.fixture(scope="module")
def sizes(program: Any) -> dict[int, Program]:
    key = ssh_private_key()
    out = {}
    for n in (3, 10, 50, 100):
        nodes = [
            {"name": f"mm{i}", "address": f"10.20.{i // 200}.{i % 200 + 10}", "ssh": {"hostKey": ssh_host_key()}}
            for i in range(1, n + 1)
        ]
        config = {
            "sshPrivateKey": Secret(key),
            "nodes": nodes,
            "cluster": {"enabled": True},
            "database": {"engine": "postgres", "address": "10.20.9.1", "ssh": {"hostKey": ssh_host_key()}},
            "mattermost": {"version": "11.1.0"},
        }
        # no dbPassword: the first node's host also runs the read of the site's current DSN
        read = {**STDOUT, "database-current-password": current_dsn_output(SITE_DSN)}
        out[n] = program(config, stack="prod", stdout=read)
        assert not out[n].program_error, out[n].program_error
    return out


def test_resources_and_edges_grow_linearly_with_the_node_count(sizes: dict[int, Program]) -> None:
    """Exactly a + b*N: fitted on 3 and 10 nodes, 50 and 100 nodes lie on the same line (the
    per-pair design had N*(N-1) tunnels and every stop depending on every tunnel: N^3 edges)."""
    for measure in (lambda ev: len(ev.resources), edges, lambda ev: len(cluster_resources(ev))):
        m3, m10 = measure(sizes[3]), measure(sizes[10])
        per_node, fixed = (m10 - m3) / 7, m3 - 3 * (m10 - m3) / 7
        for n in (50, 100):
            assert measure(sizes[n]) == fixed + per_node * n, (n, measure(sizes[n]), fixed, per_node)
    # the cluster itself: 6 resources per node (the key and 5 commands) and 4 shared ones
    assert len(cluster_resources(sizes[100])) == 6 * 100 + len(SHARED)
    assert edges(sizes[100]) < 40 * len(sizes[100].resources)


def test_command_text_and_connections_per_host_do_not_grow_with_the_node_count(sizes: dict[int, Program]) -> None:
    largest = {n: max(len(t) for c in ev.commands() for t in c.command_texts()) for n, ev in sizes.items()}
    # the node name's digits are the only difference; Linux refuses one exec argument > 128 KiB
    assert max(largest.values()) - min(largest.values()) <= 8 and max(largest.values()) < 128 * 1024, largest
    counts: dict[int, set[int]] = {}
    for n, ev in sizes.items():
        per_host: dict[str, int] = {}
        for c in ev.commands():
            if any(c.command_texts()):
                host = c.inputs["connection"]["host"]
                per_host[host] = per_host.get(host, 0) + 1
        counts[n] = {v for k, v in per_host.items() if k.startswith("10.20.0.") or k.startswith("10.20.1.")}
    # one SSH connection per command in a fresh up: the same few per node host at any size (the
    # first node has one more: the database's read of the site's current password; every host has
    # its host helper, which all the others depend on; every node its DSN's CA file apart from its
    # other files, so a destroy removes that file only after the node's restart: components/node.py)
    assert len({frozenset(v) for v in counts.values()}) == 1 and max(counts[100]) <= 11, counts


def test_at_most_three_commands_can_run_at_once_on_a_node_host_whatever_the_parallelism(
    sizes: dict[int, Program],
) -> None:
    """The graph itself bounds the SSH connections open at once to one node host (the engine runs
    4 x cores steps in parallel; sshd's MaxStartups starts dropping unauthenticated ones past 10):
    the largest set of a host's commands none of which depends on another is 3 (4 on the first
    node, which also reads the database password), at any size."""
    from itertools import combinations

    for n in (3, 100):
        ev = sizes[n]
        # resources come in registration order: every dependency before its dependents. A child
        # registers only once its parent has, and a component registers only once its depends_on
        # have completed (the SDK resolves their URNs first), so the parent's ancestors are the
        # child's too (e.g. every node's preflight before any cluster command).
        anc: dict[str, frozenset[str]] = {}
        for res in ev.resources:
            out: set[str] = set()
            for d in res.all_dependencies() | ({res.parent_urn} if res.parent_urn else set()):
                out |= {d} | anc.get(d, frozenset())
            anc[res.urn] = frozenset(out)

        def ancestors(urn: str, anc: dict[str, frozenset[str]] = anc) -> frozenset[str]:
            return anc[urn]

        for host in ("10.20.0.11", f"10.20.0.{n + 10}"):
            mine = [c.urn for c in ev.commands() if any(c.command_texts()) and c.inputs["connection"]["host"] == host]
            # the host helper; the DSN's CA file (node.py db_ca); the first node also the password read;
            # the cluster's check for the manual procedure runs in the node's preflight
            assert 9 <= len(mine) <= 11, (n, host, len(mine))

            def independent(group: tuple[str, ...]) -> bool:
                return all(a not in ancestors(b) and b not in ancestors(a) for a, b in combinations(group, 2))

            widest = max(k for k in range(1, len(mine) + 1) if any(independent(g) for g in combinations(mine, k)))
            # 2 cluster commands at once (the client key and the host setup, both after the
            # account) and the CA file; the first node's host may also run the read of the
            # database password alongside them: far below MaxStartups' 10 at any size
            assert widest == (3 if host == "10.20.0.11" else 2), (n, host, widest)


def test_enforcing_db_tls_waits_for_every_node_through_one_edge(three: Program) -> None:
    """Plain DB logins are refused only after every node switched; the serial rollout lets one
    edge (the last node) say so, so the SDK's cycle check walks the graph once, not per node."""
    enforce = three.get("database-enforce-tls")
    assert [d for d in enforce.dependencies if d.endswith("-tls-files")] == [three.get(f"{NODES[-1]}-tls-files").urn]
    assert {three.get(f"{n}-tls-files").urn for n in NODES} <= upstream(three, "database-enforce-tls")


def test_the_program_lets_the_sdks_short_lived_objects_die_young(lab_config: dict[str, Any]) -> None:
    """Python's default young-generation threshold (700) promotes the SDK's per-wait callbacks
    and Context copies into the oldest generation, whose full collections walk the whole heap:
    90 % of the evaluation's CPU at 100 nodes (bench/run.py prints the GC share). The program
    raises the threshold before it registers anything."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        # not the cached `program` fixture: the program must really run here
        run_stack("lab", cluster_config(lab_config))
        assert gc.get_threshold()[0] >= 50_000
    finally:
        gc.set_threshold(*before)


def test_the_firewall_command_owns_the_units_and_stops_the_drift_check_before_the_rules(three: Program) -> None:
    """The units joined the firewall's command (issue 11): its rules go live before the drift check
    that keeps them starts, and on delete the drift check stops before the rules go, so it can
    never put back what the delete is removing."""
    from components.remote_files_render import read_manifest

    for n in NODES:
        fw = three.get(f"{n}-cluster-firewall")
        m = read_manifest(fw.inputs["stdin"])
        paths = [e.rsplit(" ", 1)[1] for e in m.entries]
        assert {f"{r.SYSTEMD_DIR}/{r.TUNNELS_TARGET}", f"{r.SYSTEMD_DIR}/{r.HEAL_SERVICE}", f"{r.SYSTEMD_DIR}/{r.HEAL_TIMER}",
                r.mattermost_dropin_path("mattermost")} <= set(paths), paths
        fw_part, units_part = r.render_firewall_activate().strip(), r.render_units_activate().strip()
        # and sshd's files joined it too: its reload comes last (its script ends once sshd reloaded)
        reload = r.render_sshd_reload().strip()
        assert {r.AUTHORIZED_KEYS, r.sshd_dropin(DEBIAN)} <= set(paths), paths
        assert m.sections["activate"].strip() == f"{fw_part}\n{units_part}\n{reload}"
        assert m.sections["restore-activate"].strip() == f"{units_part}\n{fw_part}\n{reload}"
        validate = m.sections["validate"]
        assert validate.startswith(f"{r.HELPER} check\n") and "\nsshd -t\n" in validate and 'eff=$(sshd -T -C "user=' in validate
        assert not [x for x in three.resources if x.name in (f"{n}-cluster-units", f"{n}-cluster-sshd")]
