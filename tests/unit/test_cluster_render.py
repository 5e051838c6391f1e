"""Cluster plan and renderers: port allocation properties, config errors, and every rendered file
checked by the tool that will read it (ssh-keygen, systemd-analyze, iptables-restore, sshd) and
every rendered script RUN.

Tests marked `base` run as root inside a throwaway overlay of the lab's cached Debian base, in
fresh mount, network and PID namespaces (nothing on this machine or in the base changes); they
build that base first where it is not cached yet (about a minute, once).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import adapter, config
from components import cluster_render as r
from components.config import ConfigError, Node, StackConfig
from tests.helpers.certs import ssh_keypair
from tests.helpers.scripts import SHELLS, run_script

AES_CPU = any(
    line.split(":", 1)[0].strip() in ("flags", "Features") and "aes" in line.split(":", 1)[1].split()
    for line in Path("/proc/cpuinfo").read_text().splitlines()
    if ":" in line
)


# ---------------------------------------------------------------- fixtures


_ADMIN_KEY, _ = ssh_keypair()
_HOST_PRIV, HOST_KEY = ssh_keypair()


def raw_config(nodes: list[dict[str, Any]], **cluster: Any) -> dict[str, Any]:
    return {
        "sshPrivateKey": _ADMIN_KEY,
        "nodes": [{"ssh": {"hostKey": HOST_KEY}, **n} for n in nodes],
        "proxy": {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEY}},
        "database": {"address": "10.251.0.21", "ssh": {"hostKey": HOST_KEY}},
        "cluster": {"enabled": True, **cluster},
    }


def make_config(n: int = 3, **cluster: Any) -> StackConfig:
    return config.parse(
        raw_config([{"name": f"mm{i}", "address": f"10.251.0.{100 + i}"} for i in range(1, n + 1)], **cluster)
    )


def plan_of(nodes: list[dict[str, Any]], **cluster: Any) -> r.ClusterPlan:
    cfg = config.parse(raw_config(nodes, **cluster))
    return adapter.cluster_plan(cfg)


def pair_ports(plan: r.ClusterPlan) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(m.name, p.name): plan.local_ports(p.name) for m in plan.members for p in plan.peers(m.name)}


def fake_pubkeys(plan: r.ClusterPlan) -> dict[str, str]:
    return {m.name: ssh_keypair()[1] for m in plan.members}


# ---------------------------------------------------------------- the plan


def test_lab_plan_slots_follow_the_address_and_ports_are_readable() -> None:
    plan = adapter.cluster_plan(make_config(3))
    assert [(m.name, m.slot, m.slot_source) for m in plan.members] == [
        ("mm1", 101, "address"),
        ("mm2", 102, "address"),
        ("mm3", 103, "address"),
    ]
    assert plan.ports == (8074,)
    assert plan.local_ports("mm2") == (28102,)
    with_streaming = plan_of(
        [{"name": "mm1", "address": "10.251.0.101"}, {"name": "mm2", "address": "10.251.0.102"}], streamingPort=8075
    )
    assert with_streaming.ports == (8074, 8075)
    assert with_streaming.local_ports("mm2") == (28204, 28205)


def test_the_documented_scheme_breaks_past_six_nodes_ours_does_not() -> None:
    """The manual guide's <k>8075 gives 68075 for k=6; ours stays below 65536 for 200 nodes."""
    assert int(f"{6}8075") > 65535
    nodes = [{"name": f"n{i}", "address": str(ipaddress.ip_address("10.20.0.0") + i)} for i in range(200)]
    plan = plan_of(nodes, streamingPort=8075)
    ports = [p for m in plan.members for p in plan.local_ports(m.name)]
    assert len(set(ports)) == 400 and max(ports) <= 65535


@st.composite
def subnet_nodes(draw: st.DrawFn, min_size: int = 1, max_size: int = 200) -> list[dict[str, Any]]:
    """Nodes with distinct addresses inside one /18 (any block of 2**14 addresses)."""
    net = draw(st.integers(min_value=1, max_value=(2**32 >> 14) - 2)) << 14
    offsets = draw(st.lists(st.integers(0, 2**14 - 1), min_size=min_size, max_size=max_size, unique=True))
    return [{"name": f"n{o}", "address": str(ipaddress.IPv4Address(net + o))} for o in offsets]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(nodes=subnet_nodes(), streaming=st.booleans(), base=st.sampled_from([1024, 20000, 28000, 32768]))
def test_unique_ports_for_any_cluster_in_one_subnet(nodes: list[dict[str, Any]], streaming: bool, base: int) -> None:
    plan = plan_of(nodes, tunnelPortBase=base, **({"streamingPort": 8075} if streaming else {}))
    # the port of a peer is the same on every node, so uniqueness across peers is what matters
    ports = [p for m in plan.members for p in plan.local_ports(m.name)]
    assert len(ports) == len(set(ports)) == len(nodes) * len(plan.ports)
    assert all(base <= p <= 65535 for p in ports)
    for m in plan.members:
        assert len(plan.peers(m.name)) == len(nodes) - 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(universe=subnet_nodes(min_size=3, max_size=70), data=st.data())
def test_adding_or_removing_nodes_moves_no_existing_pair(universe: list[dict[str, Any]], data: st.DataObject) -> None:
    split = data.draw(st.integers(2, len(universe) - 1))
    nodes, extra = universe[:split], universe[split:]
    before = pair_ports(plan_of(nodes))
    keep = data.draw(st.lists(st.sampled_from(nodes), unique_by=lambda n: n["name"], min_size=1))
    after_nodes = data.draw(
        st.permutations(keep + data.draw(st.lists(st.sampled_from(extra), unique_by=lambda n: n["name"])))
    )
    after = pair_ports(plan_of(after_nodes))
    common = set(before) & set(after)
    assert len(common) == len(keep) * (len(keep) - 1)
    assert all(before[k] == after[k] for k in common)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    addresses=st.lists(
        st.integers(1, 2**32 - 2).map(lambda i: str(ipaddress.IPv4Address(i))), min_size=1, max_size=200, unique=True
    ),
    data=st.data(),
)
def test_explicit_slots_allow_any_addresses(addresses: list[str], data: st.DataObject) -> None:
    slots = data.draw(st.lists(st.integers(0, 999), min_size=len(addresses), max_size=len(addresses), unique=True))
    nodes = [
        {"name": f"n{i}", "address": a, "tunnelSlot": s} for i, (a, s) in enumerate(zip(addresses, slots, strict=True))
    ]
    plan = plan_of(nodes, streamingPort=8075)
    ports = [p for m in plan.members for p in plan.local_ports(m.name)]
    assert len(ports) == len(set(ports)) and max(ports) <= 65535


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    addresses=st.lists(
        st.integers(1, 2**32 - 2).map(lambda i: str(ipaddress.IPv4Address(i))), min_size=2, max_size=40, unique=True
    )
)
def test_scattered_addresses_collide_only_with_an_error_whose_advice_converges(addresses: list[str]) -> None:
    """Anywhere in IPv4 derived slots may collide: the error names nodes[i].tunnelSlot and a free
    slot; following the advice repeatedly ends in a valid plan and never moves a node that was
    fine before."""
    nodes = [{"name": f"n{i}", "address": a} for i, a in enumerate(addresses)]
    first_slots = {n["name"]: r.derived_slot(n["address"], 28000, 1) for n in nodes}
    for _ in range(len(nodes)):
        try:
            plan = plan_of(nodes)
            break
        except ConfigError as e:
            m = re.search(r":nodes\[(\d+)\]\.tunnelSlot: .* e\.g\. (\d+)$", str(e))
            assert m, str(e)
            nodes[int(m[1])]["tunnelSlot"] = int(m[2])
    else:
        pytest.fail("following the advice did not converge")
    for mem in plan.members:
        if "tunnelSlot" not in nodes[mem.index]:
            assert mem.slot == first_slots[mem.name]


@settings(max_examples=200, deadline=None)
@given(base=st.integers(1, 65535), width=st.integers(1, 2), data=st.data())
def test_every_accepted_port_fits_below_65536(base: int, width: int, data: st.DataObject) -> None:
    cap = r.slot_capacity(base, width)
    if cap == 0:
        return
    slot = data.draw(st.integers(0, cap - 1))
    assert r.local_port(base, slot, width, width - 1) <= 65535
    derived = r.derived_slot(
        data.draw(st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))), base, width
    )
    assert r.local_port(base, derived, width, width - 1) <= 65535


def _error(nodes: list[dict[str, Any]], **cluster: Any) -> str:
    with pytest.raises(ConfigError) as e:
        plan_of(nodes, **cluster)
    return str(e.value)


def test_overflowing_port_range_names_tunnel_port_base() -> None:
    msg = _error([{"name": "a", "address": "10.0.0.1", "tunnelSlot": 999}], tunnelPortBase=65000)
    assert "mattermost-transport-encryption:cluster.tunnelPortBase" in msg and "65999 > 65535" in msg
    assert "nodes[0].tunnelSlot below 536" in msg
    msg = _error([{"name": "a", "address": "10.0.0.1"}], tunnelPortBase=65535, streamingPort=8075)
    assert "cluster.tunnelPortBase: 65535 leaves no room for 2 tunnel port(s)" in msg


def test_collision_names_the_node_to_fix_and_a_free_slot() -> None:
    # 10.0.0.5 and 10.0.128.5 share their low 15 bits
    msg = _error([{"name": "a", "address": "10.0.0.5"}, {"name": "b", "address": "10.0.128.5"}])
    assert (
        "mattermost-transport-encryption:nodes[1].tunnelSlot: node 'b' gets tunnel slot 5 (derived from its address 10.0.128.5)"
        in msg
    )
    assert "e.g. 0" in msg
    # an explicit slot that lands on a derived one: the explicit node is the one to change
    msg = _error([{"name": "a", "address": "10.0.0.7", "tunnelSlot": 9}, {"name": "b", "address": "10.0.0.9"}])
    assert "nodes[0].tunnelSlot: node 'a' gets tunnel slot 9 (explicit)" in msg


def test_streaming_port_equal_to_gossip_port_is_refused() -> None:
    assert "cluster.streamingPort: must differ from cluster.gossipPort (8074)" in _error(
        [{"name": "a", "address": "10.0.0.1"}], streamingPort=8074
    )


def test_ipv6_nodes_are_refused_with_the_reason() -> None:
    msg = _error([{"name": "a", "address": "fd00::1"}, {"name": "b", "address": "10.0.0.2"}])
    assert "nodes[0].address: fd00::1 is IPv6" in msg


def test_peer_without_address_or_duplicate_address_fails_in_schema_and_in_the_plan() -> None:
    # the schema already refuses both ...
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.address: missing"):
        config.parse(raw_config([{"name": "a", "address": "10.0.0.1"}, {"name": "b"}]))
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.address: '10.0.0.1' is used twice"):
        config.parse(raw_config([{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.1"}]))
    # ... and the plan keeps the promise for node lists built outside the schema
    cfg = make_config(2)
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.address: missing: cluster node 'mm2'"):
        adapter.cluster_plan(cfg, [cfg.nodes[0], Node(name="mm2", ssh=cfg.nodes[1].ssh)])
    dup = Node(name="mm2", address="10.251.0.101", ssh=cfg.nodes[1].ssh)
    with pytest.raises(
        ConfigError, match=r"nodes\[1\]\.address: 10.251.0.101 is used twice \(also nodes\[0\]\.address\)"
    ):
        adapter.cluster_plan(cfg, [cfg.nodes[0], dup])
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.ssh\.hostKey: missing"):
        adapter.cluster_plan(cfg, [cfg.nodes[0], Node(name="mm2", address="10.251.0.102")])


UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\-]+@?[A-Za-z0-9:_.\\-]*\.(service|target|conf)$")


@pytest.mark.parametrize(
    "bad",
    ["a/b", "x y", "../x", "Mm1", "mm1.service", "-mm", "mm-", "mm_1", "a" * 33, "mm%i", "mm\n1", "mm;rm", "", "mm$x"],
)
def test_schema_refuses_names_that_would_break_a_unit_or_file_name(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.name"):
        config.parse(raw_config([{"name": bad, "address": "10.0.0.1"}]))


@settings(max_examples=300, deadline=None)
@given(name=st.from_regex(config.NAME_RE, fullmatch=True))
def test_every_name_the_schema_accepts_makes_valid_unit_and_file_names(name: str) -> None:
    config.parse(raw_config([{"name": name, "address": "10.0.0.1"}]))
    unit = r.tunnel_unit_name(name)
    assert UNIT_NAME.match(unit) and len(unit) <= 255 and "/" not in name
    assert unit == f"mm-tunnel@{name}.service" and r.legacy_tunnel_unit_name(name) == f"mm-tunnel-{name}.service"
    assert re.fullmatch(r"[a-z0-9-]+", name)


# ---------------------------------------------------------------- Mattermost settings


@pytest.mark.parametrize(
    ("version", "var"),
    [
        ("10.10.3", r.GOSSIP_ENCRYPTION_VAR_OLD),
        ("10.11.0", r.GOSSIP_ENCRYPTION_VAR),
        ("11.1.0", r.GOSSIP_ENCRYPTION_VAR),
    ],
)
def test_gossip_env_per_version(version: str, var: str) -> None:
    cfg = config.parse({**raw_config([{"name": "mm1", "address": "10.251.0.101"}]), "mattermost": {"version": version}})
    env = r.gossip_env(adapter.cluster_plan(cfg), "mm1")
    assert env == {
        "MM_CLUSTERSETTINGS_ENABLE": "true",
        "MM_CLUSTERSETTINGS_CLUSTERNAME": "mattermost",
        "MM_CLUSTERSETTINGS_ADVERTISEADDRESS": "10.251.0.101",
        "MM_CLUSTERSETTINGS_BINDADDRESS": "10.251.0.101",
        "MM_CLUSTERSETTINGS_USEIPADDRESS": "true",
        "MM_CLUSTERSETTINGS_GOSSIPPORT": "8074",
        var: "true",
    }


def test_gossip_env_with_streaming_port_and_encryption_off() -> None:
    p = plan_of([{"name": "mm1", "address": "10.251.0.101"}], streamingPort=8075, gossipEncryption=False, name="prod_1")
    env = r.gossip_env(p, "mm1")
    assert env["MM_CLUSTERSETTINGS_STREAMINGPORT"] == "8075"
    assert env[r.GOSSIP_ENCRYPTION_VAR] == "false"
    assert env["MM_CLUSTERSETTINGS_CLUSTERNAME"] == "prod_1"


# ---------------------------------------------------------------- ssh side


def test_authorized_keys_one_restricted_line_per_peer_and_ssh_keygen_reads_it(tmp_path: Path) -> None:
    plan = adapter.cluster_plan(make_config(8, streamingPort=8075))
    pubs = fake_pubkeys(plan)
    text = r.render_authorized_keys(plan, "mm3", pubs)
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert len(lines) == 7 and not any(pubs["mm3"].split()[1] in x for x in lines)
    assert lines[0] == (
        'restrict,port-forwarding,from="10.251.0.101",permitopen="10.251.0.103:8074",permitopen="10.251.0.103:8075",'
        f'command="/bin/false" {pubs["mm1"]} mm-cluster-mm1'
    )
    f = tmp_path / "authorized_keys"
    f.write_text(text)
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(f)], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == 7 and all(x.endswith("(ED25519)") for x in out.splitlines())


def test_authorized_keys_refuses_a_non_ed25519_key() -> None:
    plan = adapter.cluster_plan(make_config(2))
    with pytest.raises(ValueError, match="mm2"):
        r.render_authorized_keys(plan, "mm1", {"mm1": "x", "mm2": "ssh-rsa AAAA"})


def test_known_hosts_pins_the_configured_key_under_the_alias(tmp_path: Path) -> None:
    plan = adapter.cluster_plan(make_config(2))
    f = tmp_path / "kh"
    f.write_text(r.render_known_hosts(plan, "mm1"))
    out = subprocess.run(["ssh-keygen", "-F", "mm-cluster-mm2", "-f", str(f)], capture_output=True, text=True)
    assert out.returncode == 0 and HOST_KEY.split()[1] in out.stdout
    # only the peers: a node does not pin itself
    assert subprocess.run(["ssh-keygen", "-F", "mm-cluster-mm1", "-f", str(f)], capture_output=True).returncode != 0
    assert subprocess.run(["ssh-keygen", "-F", "10.251.0.102", "-f", str(f)], capture_output=True).returncode != 0


def test_tunnel_ssh_command_pins_and_forwards_only_loopback() -> None:
    plan = plan_of(
        [
            {"name": "mm1", "address": "10.251.0.101"},
            {"name": "mm2", "address": "10.251.0.102", "ssh": {"hostKey": HOST_KEY, "port": 2222}},
        ],
        streamingPort=8075,
    )
    argv = r.tunnel_ssh_argv(plan, "mm1", "mm2")
    opts = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert {
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
        "ExitOnForwardFailure=yes",
        "GlobalKnownHostsFile=/dev/null",
        "UserKnownHostsFile=/run/mm-tunnel-mm2/known_hosts",
        "HostKeyAlias=mm-cluster-mm2",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "UpdateHostKeys=no",
    } <= opts
    assert not any("accept-new" in a or a.startswith("StrictHostKeyChecking=no") for a in argv)
    forwards = [argv[i + 1] for i, a in enumerate(argv) if a == "-L"]
    assert forwards == ["127.0.0.1:28204:10.251.0.102:8074", "127.0.0.1:28205:10.251.0.102:8075"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[-1] == "mmtunnel@10.251.0.102"
    assert argv[:3] == ["/usr/bin/ssh", "-F", "none"]


def _run_tunnel_op(tmp_path: Path, table: str, peer: str) -> subprocess.CompletedProcess[str]:
    """`mm-cluster tunnel PEER` against `table`, with a stub in place of ssh that prints its argv."""
    stub = tmp_path / "ssh"
    stub.write_text('#!/bin/sh\nfor a in "$0" "$@"; do printf \'%s\\n\' "$a"; done\n')
    stub.chmod(0o755)
    (tmp_path / "tunnels").write_text(table)
    helper = r.render_helper().replace(f"ssh_bin={r.SSH_BIN}\n", f"ssh_bin={stub}\n", 1)
    helper = helper.replace(f"table={r.TUNNEL_TABLE}\n", f"table={tmp_path / 'tunnels'}\n", 1)
    (tmp_path / "mm-cluster").write_text(helper)
    rt = tmp_path / "rt"
    rt.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "RUNTIME_DIRECTORY": str(rt)}
    return subprocess.run(["/bin/sh", str(tmp_path / "mm-cluster"), "tunnel", peer], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("streaming", [None, 8075])
def test_the_helper_builds_exactly_the_tunnel_argv_from_the_short_table_line(tmp_path: Path, streaming: int | None) -> None:
    """The table holds only what differs per peer (about 100 bytes a line: the state stores it
    twice per node); `mm-cluster tunnel` rebuilds tunnel_ssh_argv from it, option for option."""
    extra = {"streamingPort": streaming} if streaming else {}
    plan = plan_of(
        [
            {"name": "mm1", "address": "10.251.0.101"},
            {"name": "mm2", "address": "10.251.0.102", "ssh": {"hostKey": HOST_KEY, "port": 2222}},
            {"name": "mm3", "address": "10.251.0.103"},
        ],
        **extra,
    )
    table = r.render_tunnel_table(plan, "mm1")
    assert all(len(line) < 160 for line in table.splitlines()), table
    for peer in ("mm2", "mm3"):
        res = _run_tunnel_op(tmp_path, table, peer)
        assert res.returncode == 0, res.stderr
        want = r.tunnel_ssh_argv(plan, "mm1", peer)
        got = res.stdout.splitlines()
        if got[1:3] == ["-o", f"Ciphers={r.AES_CIPHERS}"]:  # where the CPU has AES instructions
            got = got[:1] + got[3:]
        # the pin is written where the unit's RuntimeDirectory is (/run/mm-tunnel-<peer>)
        pin = f"UserKnownHostsFile={r.RUNTIME_DIR.format(peer=peer)}/known_hosts"
        assert pin in want
        got = [f"UserKnownHostsFile={r.RUNTIME_DIR.format(peer=peer)}/known_hosts" if a == f"UserKnownHostsFile={tmp_path}/rt/known_hosts" else a for a in got]
        assert got[1:] == want[1:] and got[0] == str(tmp_path / "ssh")
        assert (tmp_path / "rt" / "known_hosts").read_text() == r.known_hosts_line(plan, peer)
    # the pin is in the peer's line once (and in no second file: tests/program/test_cluster.py)
    assert all(line.count(HOST_KEY.split()[1]) <= 1 for line in r.render_tunnel_table(plan, "mm1").splitlines())


def test_a_tunnel_started_outside_its_unit_is_refused(tmp_path: Path) -> None:
    plan = plan_of([{"name": "mm1", "address": "10.251.0.101"}, {"name": "mm2", "address": "10.251.0.102"}])
    (tmp_path / "tunnels").write_text(r.render_tunnel_table(plan, "mm1"))
    helper = r.render_helper().replace(f"table={r.TUNNEL_TABLE}\n", f"table={tmp_path / 'tunnels'}\n", 1)
    res = subprocess.run(["/bin/sh", "-c", helper, "mm-cluster", "tunnel", "mm2"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode != 0 and "RuntimeDirectory" in res.stderr


def test_the_helper_still_starts_a_tunnel_from_a_line_of_the_earlier_table(tmp_path: Path) -> None:
    """Between the helper's update and the table's (the heal timer may start a tunnel then), a
    line that carries the whole argv is run as it is."""
    res = _run_tunnel_op(tmp_path, "mm2 28102 AAAAkey /bin/echo -N -L 127.0.0.1:28102:10.0.0.2:8074 mmtunnel@10.0.0.2\n", "mm2")
    assert res.returncode == 0 and res.stdout.split()[-4:] == ["-N", "-L", "127.0.0.1:28102:10.0.0.2:8074", "mmtunnel@10.0.0.2"], res


def test_a_table_line_with_unpaired_ports_is_refused(tmp_path: Path) -> None:
    res = _run_tunnel_op(tmp_path, "mm2 28102,28103 AAAAkey ssh-ed25519 mmtunnel@10.0.0.2 22 8074\n", "mm2")
    assert res.returncode != 0 and "more local than remote ports" in res.stderr


def test_rsa_host_key_uses_sha2_algorithms() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pub = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    # config refuses RSA pins (pulumi-command would offer only ssh-rsa); the renderer still keeps
    # OpenSSH on SHA-2 for one, so the plan gets the key past the config check
    plan = plan_of([{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.2"}])
    plan = dataclasses.replace(
        plan, members=tuple(dataclasses.replace(m, host_key=rsa_pub) if m.name == "b" else m for m in plan.members)
    )
    assert "HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256" in r.tunnel_ssh_argv(plan, "a", "b")


# ---------------------------------------------------------------- systemd units


def _systemd_root(tmp: Path, units: Mapping[str, str]) -> Path:
    root = tmp / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for path in (r.HELPER, r.SSH_BIN, "/usr/bin/true"):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    for path, text in units.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def _verify(root: Path, *names: str) -> None:
    res = subprocess.run(["systemd-analyze", f"--root={root}", "verify", *names], capture_output=True, text=True)
    # systemd-analyze exits 0 on mere warnings: any output is a finding
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr


def cluster_units(plan: r.ClusterPlan, node: str) -> dict[str, str]:
    me = plan.member(node)
    units = {
        f"{r.SYSTEMD_DIR}/{me.unit}.service": "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/true\n",
        f"{r.SYSTEMD_DIR}/{r.FIREWALL_UNIT}": r.render_firewall_unit(plan, node),
        f"{r.SYSTEMD_DIR}/{r.TUNNELS_TARGET}": r.render_tunnels_target(),
        r.mattermost_dropin_path(me.unit): r.render_mattermost_dropin(plan, node),
    }
    units[f"{r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}"] = r.render_tunnel_template(plan, node)
    units[r.TUNNELS_DROPIN] = r.render_tunnels_dropin(plan, node)
    units[f"{r.SYSTEMD_DIR}/{r.HEAL_SERVICE}"] = r.render_heal_service()
    units[f"{r.SYSTEMD_DIR}/{r.HEAL_TIMER}"] = r.render_heal_timer()
    return units


needs_systemd_analyze = pytest.mark.skipif(
    not shutil.which("systemd-analyze") or not Path("/lib/systemd/system/sysinit.target").exists(),
    reason="systemd-analyze with the system units is not available",
)


@needs_systemd_analyze
def test_eight_node_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    cfg = make_config(8, streamingPort=8075)
    plan = adapter.cluster_plan(cfg)
    units = cluster_units(plan, "mm5")
    root = _systemd_root(tmp_path, units)
    names = [Path(p).name for p in units if p.endswith((".service", ".target", ".timer")) and "@" not in p]
    # the template is verified through its instances, one per peer
    instances = [r.tunnel_unit_name(p.name) for p in plan.peers("mm5")]
    assert len(instances) == 7
    _verify(root, *names, *instances)


@needs_systemd_analyze
def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verification above can fail."""
    plan = adapter.cluster_plan(make_config(2))
    broken = r.render_tunnel_template(plan, "mm1").replace("RestartSec=2", "RestartSec=two")
    root = _systemd_root(tmp_path, {f"{r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}": broken})
    with pytest.raises(AssertionError, match="RestartSec|sec value"):
        _verify(root, "mm-tunnel@mm2.service")


def test_tunnel_unit_supervision_and_order() -> None:
    cfg = config.parse(
        {
            **raw_config([{"name": "mm1", "address": "10.251.0.101"}, {"name": "mm2", "address": "10.251.0.102"}]),
            "mattermost": {"unit": "mattermost-app"},
        }
    )
    plan = adapter.cluster_plan(cfg)
    unit = r.render_tunnel_template(plan, "mm1")
    for line in (
        "Restart=always",
        "RestartSec=2",
        "StartLimitIntervalSec=0",
        "User=mmtunnel",
        "Before=mattermost-app.service mm-cluster-tunnels.target",
        "ExecStart=/usr/local/sbin/mm-cluster tunnel %i",
        "ExecStartPost=/usr/local/sbin/mm-cluster wait-tunnel %i 15",
        "RuntimeDirectory=mm-tunnel-%i",
    ):
        assert line in unit.splitlines()
    dropin = r.render_mattermost_dropin(plan, "mm1").splitlines()
    assert {
        "Requires=mm-cluster-firewall.service",
        "Wants=mm-cluster-tunnels.target",
        "After=mm-cluster-tunnels.target",
    } <= set(dropin)
    assert (
        r.mattermost_dropin_path("mattermost-app")
        == "/etc/systemd/system/mattermost-app.service.d/40-mattermost-cluster.conf"
    )
    assert r.render_tunnels_dropin(plan, "mm1").splitlines()[-1] == "Wants=mm-tunnel@mm2.service"
    assert "Wants=mm-cluster-heal.timer" in r.render_tunnels_target().splitlines()
    assert "[Install]" not in unit  # pulled in by files only: nothing for `systemctl enable` to leave behind


def test_adding_a_node_leaves_every_existing_pair_file_byte_identical() -> None:
    three, four = make_config(3), make_config(4)
    p3, p4 = adapter.cluster_plan(three), adapter.cluster_plan(four)
    for m in p3.members:
        assert r.render_sshd_dropin(p3, m.name) == r.render_sshd_dropin(p4, m.name)
        assert r.render_mattermost_dropin(p3, m.name) == r.render_mattermost_dropin(p4, m.name)
        assert r.gossip_env(p3, m.name) == r.gossip_env(p4, m.name)
        # the template is the same (no tunnel restarts for it); the table and known_hosts only
        # gain mm4's line, so tunnels-apply starts mm4's tunnel and touches no other
        assert r.render_tunnel_template(p3, m.name) == r.render_tunnel_template(p4, m.name)
        for render in (r.render_tunnel_table, r.render_known_hosts):
            old_l, new_l = render(p3, m.name).splitlines(), render(p4, m.name).splitlines()
            assert old_l == [x for x in new_l if "mm4" not in x] and len(new_l) == len(old_l) + 1
        # shared files only gain the new pair's lines
        old, new = r.render_firewall_rules(p3, m.name).splitlines(), r.render_firewall_rules(p4, m.name).splitlines()
        assert set(old) <= set(new) and all("10.251.0.104" in x or x.startswith("# mm4") for x in set(new) - set(old))
        pubs = fake_pubkeys(p4)
        old_k = r.render_authorized_keys(p3, m.name, pubs).splitlines()
        new_k = r.render_authorized_keys(p4, m.name, pubs).splitlines()
        assert set(old_k) <= set(new_k) and len(set(new_k) - set(old_k)) == 1


# ---------------------------------------------------------------- scripts parse everywhere


def test_every_rendered_script_parses_in_every_shell() -> None:
    plan = adapter.cluster_plan(make_config(3))
    scripts = [
        r.render_helper(),
        r.render_preflight(plan, "mm1"),
        r.render_account_create(plan),
        r.render_account_delete(plan),
        r.render_gossip_stop(plan, "mm1"),
        r.render_firewall_activate(),
        r.render_tunnels_activate(),
        r.render_units_activate(),
        r.render_sshd_validate(plan, "mm1"),
        r.SSHD_RELOAD,
    ]
    for sh in SHELLS:
        for s in scripts:
            res = subprocess.run([sh, "-n", "-c", s], capture_output=True, text=True)
            assert res.returncode == 0, (sh, res.stderr, s[:200])


# ---------------------------------------------------------------- scripts run with stubs


def _stub_dir(tmp: Path, stubs: Mapping[str, str]) -> Path:
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    for name, body in stubs.items():
        (d / name).write_text("#!/bin/sh\n" + body)
        (d / name).chmod(0o755)
    return d


def _run_with_path(script: str, bindir: Path, shell: str = "/bin/sh") -> subprocess.CompletedProcess[str]:
    return run_script("set -eu\n" + script, shell=shell, path=bindir, timeout=60)


# a running server; with a UDP socket of its own it gossips (memberlist binds one), without none
_SERVER = (
    "import socket, sys, time\n"
    "if sys.argv[1] == 'gossips':\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))\n"
    "print('up', flush=True); time.sleep(60)\n"
)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("running_env", "gossips", "want", "stops"),
    [
        (None, False, True, False),  # not running: nothing to stop
        ({r.GOSSIP_ENCRYPTION_VAR: "true"}, True, True, False),  # already in the wanted mode
        ({r.GOSSIP_ENCRYPTION_VAR_OLD: "true"}, True, True, False),  # the pre-10.11 name counts too
        ({}, True, True, True),  # gossiping without the setting: may be plain gossip
        ({r.GOSSIP_ENCRYPTION_VAR: "true"}, True, False, True),  # switching off
        ({r.GOSSIP_ENCRYPTION_VAR: "truex"}, True, True, True),
        # clustering off in the running server (the first `up`): no mode to mix; stopping it
        # would leave it down if anything fails before its own restart
        ({}, False, True, False),
        ({r.GOSSIP_ENCRYPTION_VAR: "true"}, False, False, False),
    ],
)
def test_gossip_stop_stops_only_a_gossiping_node_in_the_other_mode(
    tmp_path: Path, shell: str, running_env: dict[str, str] | None, gossips: bool, want: bool, stops: bool
) -> None:
    proc = None
    if running_env is not None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MM_")}
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, "gossips" if gossips else "quiet"],
            env={**clean, **running_env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    try:
        log = tmp_path / "calls"
        pid = proc.pid if proc else 0
        bindir = _stub_dir(
            tmp_path,
            {"systemctl": f'echo "$*" >> {log}\ncase "$1" in show) echo {pid} ;; esac\n'},
        )
        cfg = make_config(2, gossipEncryption=want)
        script = r.render_gossip_stop(adapter.cluster_plan(cfg), "mm1")
        res = _run_with_path(script, bindir, shell)
        assert res.returncode == 0, res.stderr
        calls = log.read_text().splitlines()
        assert ("stop mattermost.service" in calls) is stops, (calls, res.stdout)
    finally:
        if proc:
            proc.kill()
            proc.wait()


def test_wait_listen_succeeds_once_listening_and_fails_when_ssh_is_gone(tmp_path: Path) -> None:
    import socket

    helper = tmp_path / "mm-cluster"
    helper.write_text(r.render_helper())
    helper.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ok = subprocess.run([str(helper), "wait-listen", "5", str(port)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = subprocess.run(
        [str(helper), "wait-listen", "30", str(port)],
        capture_output=True,
        text=True,
        env={**os.environ, "MAINPID": str(dead.pid)},
    )
    assert gone.returncode != 0 and "ssh exited before" in gone.stderr
    late = subprocess.run([str(helper), "wait-listen", "1", str(port)], capture_output=True, text=True)
    assert late.returncode != 0 and "not listening after 1s" in late.stderr


# ---------------------------------------------------------------- inside the lab base (root, namespaces)


BASE: Path | None = None
"""The lab's cached Debian base; set by the `lab_base` fixture, which builds it when missing."""


@pytest.fixture(scope="session")
def lab_base() -> Path:
    """The lab's base image (built once, about a minute, then cached): a clean machine runs
    these tests too instead of skipping them."""
    global BASE
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (util-linux)")
    from lab.base_image import ensure_base

    BASE = ensure_base(log=lambda *_: None)
    assert (BASE / "usr/sbin/sshd").exists() and os.path.lexists(BASE / "usr/sbin/iptables"), BASE
    return BASE


base = pytest.mark.usefixtures("lab_base")


def run_in_base(
    script: str, files: Mapping[str, tuple[str, int]] | None = None, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    """Run `script` (sh, as root) in a throwaway overlay of the base with `files` placed
    ({path: (content, mode)}), in new mount, network and PID namespaces: when it ends, every
    process, mount and rule it made is gone."""
    assert BASE is not None
    tmp = Path(tempfile.mkdtemp(prefix="mmtls-cluster-"))
    try:
        for d in ("u", "w", "m"):
            (tmp / d).mkdir()
        for path, (content, mode) in (files or {}).items():
            target = tmp / "u" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        (tmp / "u/script.sh").write_text(
            "set -eu\nexport PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" + script
        )
        outer = (
            "set -e\n"
            f"mount -t overlay overlay -o lowerdir={BASE},upperdir={tmp}/u,workdir={tmp}/w {tmp}/m\n"
            f"mount -t proc proc {tmp}/m/proc\n"
            f"mount --bind /dev {tmp}/m/dev\n"
            f"mount -t tmpfs tmpfs {tmp}/m/run\n"
            f"mkdir -p {tmp}/m/run/sshd\n"
            "ip link set lo up\n"
            f"exec chroot {tmp}/m /bin/sh /script.sh\n"
        )
        return subprocess.run(
            ["unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c", outer],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_ok(script: str, files: Mapping[str, tuple[str, int]] | None = None) -> str:
    """`run_in_base`, which must exit 0: its stdout."""
    res = run_in_base(script, files)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def assert_prints(out: str, *lines: str) -> None:
    """Every one of `lines` is in the script's output `out`."""
    for line in lines:
        assert line in out, out


@base
def test_rules_for_eight_nodes_pass_iptables_restore_test_and_a_broken_one_fails() -> None:
    cfg = make_config(8, streamingPort=8075)
    plan = adapter.cluster_plan(cfg)
    good = r.render_firewall_rules(plan, "mm4")
    bad = good.replace("--to-destination 127.0.0.1:", "--to-destination 127.0.0.1:9")
    res = run_in_base(
        "for b in iptables-nft iptables-legacy; do\n"
        '  $b-restore --test -n < /good.rules && echo "$b good ok"\n'
        '  if $b-restore --test -n < /bad.rules 2>/dev/null; then echo "$b bad accepted"; else echo "$b bad refused"; fi\n'
        "done\n",
        {"/good.rules": (good, 0o644), "/bad.rules": (bad, 0o644)},
    )
    assert res.returncode == 0, res.stderr
    for b in ("iptables-nft", "iptables-legacy"):
        assert f"{b} good ok" in res.stdout and f"{b} bad refused" in res.stdout


@base
def test_firewall_load_is_idempotent_replaces_content_and_stop_restores_the_tables() -> None:
    """start twice, reload with a fourth peer, stop: one jump per chain, content equals the file,
    a foreign nat rule survives, and DNAT to 127.0.0.1 works with route_localnet=0 and
    ip_forward=0 (a connection to the peer's gossip port lands on the tunnel's loopback port)."""
    p3 = adapter.cluster_plan(make_config(3))
    p4 = adapter.cluster_plan(make_config(4))
    script = r"""
ip link add mm1 type veth peer name mm1-peer
ip addr add 10.251.0.101/24 dev mm1
ip link set mm1 up; ip link set mm1-peer up
iptables -t nat -A OUTPUT -d 192.0.2.1/32 -p tcp -j DNAT --to-destination 127.0.0.1:1
iptables-save > /before.txt
mm-cluster start; mm-cluster start
echo "nat jumps: $(iptables -t nat -S OUTPUT | grep -c -- '-j MMTLS-CLUSTER-NAT')"
echo "in jumps: $(iptables -S INPUT | grep -c -- '-j MMTLS-CLUSTER-IN')"
echo "first: $(iptables -t nat -S OUTPUT | sed -n 2p)"
echo "dnat3: $(iptables -t nat -S MMTLS-CLUSTER-NAT | grep -c DNAT)"
cp /p4.rules /etc/mattermost-cluster/firewall.rules
mm-cluster reload
echo "dnat4: $(iptables -t nat -S MMTLS-CLUSTER-NAT | grep -c DNAT)"
echo "nat jumps after reload: $(iptables -t nat -S OUTPUT | grep -c -- '-j MMTLS-CLUSTER-NAT')"
echo "sysctl: $(cat /proc/sys/net/ipv4/conf/all/route_localnet) $(cat /proc/sys/net/ipv4/ip_forward)"
python3 - <<'PY'
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 28102)); srv.listen()
def serve():
    c, addr = srv.accept(); c.sendall(b"via-loopback " + addr[0].encode()); c.close()
threading.Thread(target=serve, daemon=True).start()
s = socket.create_connection(("10.251.0.102", 8074), timeout=5)
print("dnat:", s.recv(100).decode())
PY
mm-cluster stop; mm-cluster stop
iptables-save > /after.txt
# rules and user chains (nft creates an empty builtin table on first use; that is no leftover)
grep -E '^(-|:MMTLS)' /before.txt > /b || true; grep -E '^(-|:MMTLS)' /after.txt > /a || true
if cmp -s /a /b; then echo "tables restored"; else diff /b /a; fi
"""
    out = run_ok(
        script,
        {
            r.HELPER: (r.render_helper(), 0o755),
            r.FIREWALL_RULES: (r.render_firewall_rules(p3, "mm1"), 0o644),
            "/p4.rules": (r.render_firewall_rules(p4, "mm1"), 0o644),
        },
    )
    assert_prints(
        out,
        "nat jumps: 1",
        "in jumps: 1",
        "first: -A OUTPUT -j MMTLS-CLUSTER-NAT",
        "dnat3: 2",
        "dnat4: 3",
        "nat jumps after reload: 1",
        "sysctl: 0 0",
        "dnat: via-loopback",
        "tables restored",
    )


@base
def test_preflight_passes_a_clean_host_and_lists_every_manual_artifact() -> None:
    cfg = make_config(3, streamingPort=8075)
    plan = adapter.cluster_plan(cfg)
    after_rules = (
        "*filter\n:ufw-after-input - [0:0]\nCOMMIT\n"
        "*nat\n:OUTPUT ACCEPT [0:0]\n"
        "-A OUTPUT -p tcp -d 10.251.0.102 --dport 8075 -j DNAT --to-destination 127.0.0.1:18075\n"
        "-A OUTPUT -p tcp -d 10.251.0.102 --dport 8074 -j DNAT --to-destination 127.0.0.1:18074\n"
        "-A OUTPUT -p tcp -d 10.251.0.102 --dport 18074 -j DNAT --to-destination 127.0.0.1:1\n"
        "COMMIT\n"
    )
    pre_start = "#!/bin/sh\nssh -N -f -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes -L 18074:10.251.0.102:8074 10.251.0.102 || true\n"
    # no systemd in the chroot: systemctl cat is played by a stub showing the unit as systemd would
    systemctl = (
        "#!/bin/sh\n"
        '[ "$1" = cat ] || exit 1\n'
        "[ -e /manual ] || { printf '# /lib/systemd/system/mattermost.service\\n[Service]\\nExecStart=/opt/mm\\n'; exit 0; }\n"
        "printf '# /lib/systemd/system/mattermost.service\\n[Service]\\nExecStartPre=-/opt/mattermost/bin/pre_start.sh\\nExecStart=/opt/mm\\n'\n"
    )
    fake_ssh = "#!/bin/sh\nsleep 300\n"  # no exec: ps must keep showing the ssh arguments
    files = {
        "/usr/local/sbin/systemctl": (systemctl, 0o755),
        "/opt/mattermost/bin/pre_start.sh": (pre_start, 0o755),
        "/tmp/fake/ssh": (fake_ssh, 0o755),
        "/preflight.sh": (r.render_preflight(plan, "mm1"), 0o644),
        "/manual.rules": (after_rules, 0o644),
    }
    script = r"""
mkdir -p /etc/ufw
sh -eu /preflight.sh > /clean.out 2>&1 && echo "clean: ok" || { echo "clean: failed"; cat /clean.out; }
# our own tunnel (it uses our key) is not the manual procedure
/tmp/fake/ssh -N -o IdentityFile=/etc/mattermost-cluster/id_ed25519 -L 127.0.0.1:28204:10.251.0.102:8074 x &
sh -eu /preflight.sh > /ours.out 2>&1 && echo "ours: ok" || { echo "ours: failed"; cat /ours.out; }
# now the manual procedure
touch /manual
cp /manual.rules /etc/ufw/after.rules
iptables -t nat -A OUTPUT -p tcp -d 10.251.0.102 --dport 8074 -j DNAT --to-destination 127.0.0.1:18074
/tmp/fake/ssh -N -f -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes -L 18074:10.251.0.102:8074 10.251.0.102 &
echo "manual pid $!"
cp /etc/ufw/after.rules /snapshot
if sh -eu /preflight.sh > /manual.out 2>&1; then echo "manual: passed"; else echo "manual: refused"; fi
cat /manual.out
cmp -s /etc/ufw/after.rules /snapshot && echo "unchanged"
"""
    out = run_ok(script, files)
    assert "clean: ok" in out and "ours: ok" in out and "manual: refused" in out and "unchanged" in out, out
    pid = re.search(r"manual pid (\d+)", out)[1]  # type: ignore[index]
    assert (
        "/lib/systemd/system/mattermost.service: 'ExecStartPre=-/opt/mattermost/bin/pre_start.sh' starts SSH tunnels"
        in out
    )
    assert "/etc/ufw/after.rules line 6: '-A OUTPUT -p tcp -d 10.251.0.102 --dport 8075 -j DNAT" in out
    assert "/etc/ufw/after.rules line 7:" in out and "line 8:" not in out  # --dport 18074 is not a gossip port
    assert (
        "Remove it: iptables -t nat -D OUTPUT -d 10.251.0.102/32 -p tcp -m tcp --dport 8074 -j DNAT --to-destination 127.0.0.1:18074"
        in out
    )
    assert f"Stop it: kill {pid}" in out, out
    assert out.count("kill ") == 1, "our own tunnel must not be reported"


@base
def test_account_create_is_idempotent_delete_removes_only_what_create_made() -> None:
    cfg = make_config(2)
    plan = adapter.cluster_plan(cfg)
    other = adapter.cluster_plan(make_config(2, tunnelUser="tunnelx"))
    files = {
        "/create.sh": (r.render_account_create(plan), 0o644),
        "/delete.sh": (r.render_account_delete(plan), 0o644),
        "/create-x.sh": (r.render_account_create(other), 0o644),
        "/delete-x.sh": (r.render_account_delete(other), 0o644),
    }
    script = r"""
sums() { sha256sum /etc/passwd /etc/passwd- /etc/group /etc/group- /etc/shadow /etc/shadow- /etc/gshadow /etc/gshadow- 2>&1 || true; }
rm -f /etc/gshadow-  # one backup that did not exist before: delete must not leave it behind
sums > /etc-before
sh -eu /create.sh; sh -eu /create.sh
echo "passwd: $(getent passwd mmtunnel | cut -d: -f6,7)"
echo "shadow: $(getent shadow mmtunnel | cut -d: -f2)"
sh -eu /delete.sh
getent passwd mmtunnel >/dev/null && echo "still there" || echo "gone"
sums | cmp -s - /etc-before && echo "etc identical" || { sums | diff /etc-before -; }
[ -e /var/lib/mattermost-transport-encryption ] && echo "state left" || echo "no state"
# an account that exists already and can log in is refused, and never deleted
useradd --create-home --shell /bin/bash tunnelx
if sh -eu /create-x.sh 2>/err; then echo "reused a login account"; else echo "refused: $(cat /err)"; fi
sh -eu /delete-x.sh; getent passwd tunnelx >/dev/null && echo "tunnelx kept"
# one without a login shell is used as it is, and also kept on delete
usermod -s /usr/sbin/nologin tunnelx
sh -eu /create-x.sh; sh -eu /delete-x.sh; getent passwd tunnelx >/dev/null && echo "nologin kept"
"""
    out = run_ok(script, files)
    assert_prints(
        out,
        "passwd: /var/lib/mmtunnel:/usr/sbin/nologin",
        "shadow: *",
        "gone",
        "no state",
        "tunnelx kept",
        "nologin kept",
    )
    assert "refused: account tunnelx already exists with the login shell /bin/bash" in out


@base
def test_real_sshd_and_tunnel_from_the_rendered_files() -> None:
    """Two network namespaces (mm1 10.251.0.101, mm2 10.251.0.102) joined by a veth, mm2 running
    sshd with our Match block and authorized_keys, mm1 running the rendered tunnel command as the
    tunnel account with our DNAT: gossip to mm2:8074 arrives through the tunnel; everything the
    key must not do is refused."""
    host_priv, host_pub = ssh_keypair()
    priv1, pub1 = ssh_keypair()
    _, pub2 = ssh_keypair()
    cfg = config.parse(
        raw_config(
            [
                {"name": "mm1", "address": "10.251.0.101"},
                {"name": "mm2", "address": "10.251.0.102", "ssh": {"hostKey": host_pub}},
                {"name": "mm3", "address": "10.251.0.103"},
            ]
        )
    )
    plan = adapter.cluster_plan(cfg)
    pubs = {"mm1": pub1, "mm2": pub2, "mm3": ssh_keypair()[1]}
    wrong_kh = r.render_known_hosts(plan, "mm1").replace(host_pub.split()[1], HOST_KEY.split()[1])
    local = plan.local_ports("mm2")[0]
    files = {
        "/etc/ssh/ssh_host_ed25519_key": (host_priv, 0o600),
        "/etc/ssh/ssh_host_ed25519_key.pub": (host_pub + "\n", 0o644),
        r.SSHD_DROPIN: (r.render_sshd_dropin(plan, "mm2"), 0o644),
        r.AUTHORIZED_KEYS: (r.render_authorized_keys(plan, "mm2", pubs), 0o644),
        r.CLIENT_KEY: (priv1, 0o600),
        "/probe_known_hosts": (r.render_known_hosts(plan, "mm1"), 0o644),
        r.TUNNEL_TABLE: (r.render_tunnel_table(plan, "mm1"), 0o644),
        "/wrong_known_hosts": (wrong_kh, 0o644),
        r.HELPER: (r.render_helper(), 0o755),
        r.FIREWALL_RULES: (r.render_firewall_rules(plan, "mm1"), 0o644),
        "/account.sh": (r.render_account_create(plan), 0o644),
        "/validate.sh": (r.render_sshd_validate(plan, "mm2"), 0o644),
    }
    script = rf"""
sh -eu /account.sh >/dev/null
chown mmtunnel:mmtunnel {r.CLIENT_KEY}
chmod 755 /etc/mattermost-cluster
# mm2: a second network namespace, reached over a veth
unshare --net sleep 600 & peer=$!
sleep 0.2
ip link add mm1 type veth peer name mm2 netns $peer
ip addr add 10.251.0.101/24 dev mm1; ip addr add 10.251.0.109/24 dev mm1; ip link set mm1 up
in2() {{ nsenter -t $peer -n "$@"; }}
in2 ip link set lo up; in2 ip addr add 10.251.0.102/24 dev mm2; in2 ip link set mm2 up
in2 sh -eu /validate.sh && echo "sshd validate ok"
in2 /usr/sbin/sshd -E /sshd.log
in2 python3 -c '
import socket, os
s = socket.socket(); s.bind(("10.251.0.102", 8074)); s.listen()
if os.fork(): os._exit(0)
while True:
    c, a = s.accept(); c.sendall(("gossip-from " + a[0]).encode()); c.close()
'
mm-cluster start
as_tunnel() {{ setpriv --reuid mmtunnel --regid mmtunnel --init-groups env HOME=/var/lib/mmtunnel "$@"; }}
# the tunnel exactly as its unit starts it: the helper reads mm2's line of the table and execs ssh
mkdir -p /run/mm-tunnel-mm2; chown mmtunnel:mmtunnel /run/mm-tunnel-mm2  # what RuntimeDirectory= does
setpriv --reuid mmtunnel --regid mmtunnel --init-groups env HOME=/var/lib/mmtunnel RUNTIME_DIRECTORY=/run/mm-tunnel-mm2 mm-cluster tunnel mm2 2>/tunnel.err & tunnel=$!
MAINPID=$tunnel as_tunnel mm-cluster wait-tunnel mm2 20 && echo "tunnel listening" || {{ cat /tunnel.err; cat /sshd.log; }}
ss -Hltn "sport = :{local}" | grep -q 127.0.0.1 && echo "on loopback only"
tr '\000' ' ' < /proc/$tunnel/cmdline > /tunnel.cmdline
grep -q "^/usr/bin/ssh " /tunnel.cmdline && echo "ssh runs as the unit's main process"
grep -q "Ciphers={r.AES_CIPHERS}" /tunnel.cmdline && echo "cipher: aes-gcm first" || echo "cipher: openssh default"
python3 -c '
import socket
s = socket.create_connection(("10.251.0.102", 8074), timeout=5)
print("client got:", s.recv(100).decode())
'
# everything the key must not do
as_tunnel ssh -F none -o BatchMode=yes -o IdentityFile={r.CLIENT_KEY} -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile=/probe_known_hosts -o HostKeyAlias=mm-cluster-mm2 mmtunnel@10.251.0.102 id \
  >/session.out 2>&1 && echo "session allowed" || echo "session refused"
as_tunnel ssh -F none -o BatchMode=yes -o IdentityFile={r.CLIENT_KEY} -o StrictHostKeyChecking=yes -o ExitOnForwardFailure=yes \
  -o UserKnownHostsFile=/probe_known_hosts -o HostKeyAlias=mm-cluster-mm2 -N -L 127.0.0.1:29022:10.251.0.102:22 mmtunnel@10.251.0.102 2>/other.err & other=$!
mm-cluster wait-listen 20 29022
python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 29022), timeout=5)
print("other port got:", repr(s.recv(100)))
'
kill $other
timeout 20 setpriv --reuid mmtunnel --regid mmtunnel --init-groups ssh -F none -o BatchMode=yes -o IdentityFile={r.CLIENT_KEY} \
  -o StrictHostKeyChecking=yes -o ExitOnForwardFailure=yes -o UserKnownHostsFile=/probe_known_hosts \
  -o HostKeyAlias=mm-cluster-mm2 -N -R 127.0.0.1:29023:127.0.0.1:22 mmtunnel@10.251.0.102 >/remote.err 2>&1 \
  && echo "remote forward allowed" || echo "remote forward refused"
timeout 20 setpriv --reuid mmtunnel --regid mmtunnel --init-groups ssh -F none -o BatchMode=yes -o IdentityFile={r.CLIENT_KEY} \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/probe_known_hosts -o HostKeyAlias=mm-cluster-mm2 \
  -b 10.251.0.109 -N mmtunnel@10.251.0.102 >/from.err 2>&1 && echo "other source allowed" || echo "other source refused"
timeout 20 setpriv --reuid mmtunnel --regid mmtunnel --init-groups ssh -F none -o BatchMode=yes -o IdentityFile={r.CLIENT_KEY} \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/wrong_known_hosts -o HostKeyAlias=mm-cluster-mm2 \
  -N mmtunnel@10.251.0.102 >/hostkey.err 2>&1 && echo "wrong host key allowed" || echo "wrong host key refused"
grep -q "Host key verification failed" /hostkey.err && echo "host key verification failed"
grep -q "administratively prohibited" /other.err && echo "permitopen enforced"
kill $tunnel
"""
    out = run_ok(script, files)
    assert_prints(
        out,
        "sshd validate ok",
        "tunnel listening",
        "on loopback only",
        "ssh runs as the unit's main process",
        # the CPU here decides (the chroot sees this machine's /proc/cpuinfo)
        "cipher: aes-gcm first" if AES_CPU else "cipher: openssh default",
        # sshd on mm2 made the connection to its own address: the bytes crossed the link inside SSH
        "client got: gossip-from 10.251.0.102",
        "session refused",
        "other port got: b''",
        "permitopen enforced",
        "remote forward refused",
        "other source refused",
        "wrong host key refused",
        "host key verification failed",
    )


@base
def test_sshd_validate_fails_when_sshd_ignores_the_drop_in_directory() -> None:
    plan = adapter.cluster_plan(make_config(2))
    files = {
        r.SSHD_DROPIN: (r.render_sshd_dropin(plan, "mm1"), 0o644),
        "/validate.sh": (r.render_sshd_validate(plan, "mm1"), 0o644),
    }
    script = r"""
ssh-keygen -A >/dev/null
sh -eu /validate.sh && echo "with include: ok"
sed -i '/^Include/d' /etc/ssh/sshd_config
if sh -eu /validate.sh 2>/err; then echo "without include: ok"; else echo "without include: $(cat /err)"; fi
"""
    assert_prints(
        run_ok(script, files),
        "with include: ok",
        "without include: sshd does not apply /etc/ssh/sshd_config.d/50-mattermost-cluster-tunnel.conf",
    )


# systemctl played by a stub that keeps unit state in /st (no systemd in the chroot); restarting a
# tunnel records its table line where the real unit's helper does (/run/mm-tunnel-<peer>/line)
_SYSTEMCTL = r"""#!/bin/sh
echo "systemctl $*" >> /calls
mkdir -p /st
case "$1" in
list-units) for f in /st/*; do [ -e "$f" ] || continue; u=${f##*/}; case "$u" in mm-tunnel@*) echo "$u loaded $(cat "$f")";; esac; done ;;
is-active) [ "$(cat "/st/$3" 2>/dev/null)" = active ]; exit $? ;;
restart|start)
  shift; [ "$1" = --no-block ] && shift
  rc=0
  for u in "$@"; do
    case "$u" in
    *bad*) echo failed > "/st/$u"; rc=1 ;;
    mm-tunnel@*) p=${u#mm-tunnel@}; p=${p%.service}; mkdir -p "/run/mm-tunnel-$p"
      awk -v p="$p" '$1 == p' /etc/mattermost-cluster/tunnels > "/run/mm-tunnel-$p/line"; echo active > "/st/$u" ;;
    *) echo active > "/st/$u" ;;
    esac
  done
  exit $rc ;;
stop) shift; for u in "$@"; do echo inactive > "/st/$u"; p=${u#mm-tunnel@}; rm -rf "/run/mm-tunnel-${p%.service}"; done ;;
reload) /usr/local/sbin/mm-cluster reload ;;
esac
exit 0
"""


@base
def test_tunnels_apply_restarts_exactly_the_changed_tunnels_and_stops_the_rest() -> None:
    p3 = adapter.cluster_plan(make_config(3))
    p4 = adapter.cluster_plan(make_config(4))
    bad = r.render_tunnel_table(p4, "mm1").replace("\nmm4 ", "\nmm4bad ")
    files = {
        r.HELPER: (r.render_helper(), 0o755),
        "/usr/local/sbin/systemctl": (_SYSTEMCTL, 0o755),
        "/usr/local/sbin/journalctl": ("#!/bin/sh\necho \"journal of $*\"\n", 0o755),
        "/t3": (r.render_tunnel_table(p3, "mm1"), 0o644),
        "/t4": (r.render_tunnel_table(p4, "mm1"), 0o644),
        "/tbad": (bad, 0o644),
        f"{r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}": (r.render_tunnel_template(p3, "mm1"), 0o644),
    }
    script = f"""
step() {{ : > /calls; echo "== $1"; }}
calls() {{ grep -E 'restart|stop' /calls | sed 's/^systemctl //' || true; }}
mkdir -p /st /etc/mattermost-cluster; echo active > /st/mm-tunnel-mm2.service
step first; cp /t3 {r.TUNNEL_TABLE}; mm-cluster tunnels-apply >/dev/null; calls
step again; mm-cluster tunnels-apply >/dev/null; calls
step add; cp /t4 {r.TUNNEL_TABLE}; mm-cluster tunnels-apply >/dev/null; calls
step rekey; sed -i 's/^mm3 \\([^ ]*\\) [^ ]*/mm3 \\1 AAAAnewkey/' {r.TUNNEL_TABLE}; mm-cluster tunnels-apply >/dev/null; calls
step killed; echo failed > /st/mm-tunnel@mm2.service; mm-cluster tunnels-apply >/dev/null; calls
step remove; cp /t3 {r.TUNNEL_TABLE}; mm-cluster tunnels-apply >/dev/null; calls
step bad; cp /tbad {r.TUNNEL_TABLE}; if mm-cluster tunnels-apply >/out 2>&1; then echo "bad: passed"; else echo "bad: failed"; fi; cat /out; calls
step gone; rm {r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}; mm-cluster tunnels-apply >/dev/null; calls
"""
    out = run_ok(script, files)
    steps = dict(
        (chunk.split("\n", 1)[0], chunk.split("\n", 1)[1] if "\n" in chunk else "")
        for chunk in out.split("== ")[1:]
    )
    # the per-pair unit of the earlier design makes way for its successor, all start in one job
    assert steps["first"] == "stop mm-tunnel-mm2.service\nrestart mm-tunnel@mm2.service mm-tunnel@mm3.service\n"
    assert steps["again"] == ""
    assert steps["add"] == "restart mm-tunnel@mm4.service\n"
    assert steps["rekey"] == "restart mm-tunnel@mm3.service\n"  # a new pin restarts that tunnel only
    assert steps["killed"] == "restart mm-tunnel@mm2.service\n"
    # mm4 leaves; mm3's line is the original again (its key went back), so it restarts once more
    assert steps["remove"] == "stop mm-tunnel@mm4.service\nrestart mm-tunnel@mm3.service\n"
    assert "bad: failed" in steps["bad"] and "did not come up: mm-tunnel@mm4bad.service" in steps["bad"]
    assert "journal of -u mm-tunnel@mm4bad.service" in steps["bad"]
    assert set(steps["gone"].splitlines()) == {
        f"stop mm-tunnel@{p}.service" for p in ("mm2", "mm3", "mm4", "mm4bad")  # every loaded instance
    }


@base
def test_drift_is_reported_and_healed_without_restarting_anything() -> None:
    """A flushed DNAT chain, a removed jump and a stopped tunnel are found by `drift` (what the
    audit reports) and put back by `heal` (what the timer runs): the firewall unit is reloaded,
    never restarted (a restart would take Mattermost down through Requires=)."""
    cfg = make_config(3, streamingPort=8075)
    plan = adapter.cluster_plan(cfg)
    files = {
        r.HELPER: (r.render_helper(), 0o755),
        "/usr/local/sbin/systemctl": (_SYSTEMCTL, 0o755),
        r.FIREWALL_RULES: (r.render_firewall_rules(plan, "mm1"), 0o644),
        r.TUNNEL_TABLE: (r.render_tunnel_table(plan, "mm1"), 0o644),
        f"{r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}": (r.render_tunnel_template(plan, "mm1"), 0o644),
    }
    script = f"""
mkdir -p /st; for u in {r.FIREWALL_UNIT} mm-tunnel@mm2.service mm-tunnel@mm3.service; do echo active > /st/$u; done
mm-cluster start
mm-cluster drift && echo "clean: no drift"
iptables -t nat -F {r.NAT_CHAIN}
mm-cluster drift > /d1 || echo "flushed: $(cat /d1)"
: > /calls; mm-cluster heal 2>/dev/null; echo "heal calls: $(grep -v is-active /calls | tr '\\n' ';')"
mm-cluster drift && echo "after heal: no drift"
echo "dnat: $(iptables -t nat -S {r.NAT_CHAIN} | grep -c DNAT)"
iptables -D INPUT -j {r.IN_CHAIN}
iptables -A {r.IN_CHAIN} -j ACCEPT
echo inactive > /st/mm-tunnel@mm3.service
mm-cluster drift > /d2 || echo "second: $(cat /d2 | tr '\\n' ';')"
mm-cluster heal 2>/dev/null; mm-cluster drift && echo "after second heal: no drift"
echo "tunnel: $(cat /st/mm-tunnel@mm3.service)"
"""
    out = run_ok(script, files)
    assert "clean: no drift" in out
    assert f"flushed: firewall: chain {r.NAT_CHAIN} differs from {r.FIREWALL_RULES}" in out
    heal = next(line for line in out.splitlines() if line.startswith("heal calls:"))
    assert f"systemctl reload {r.FIREWALL_UNIT}" in heal and "restart" not in heal and " stop" not in heal
    assert "after heal: no drift" in out and "dnat: 4" in out
    second = next(line for line in out.splitlines() if line.startswith("second:"))
    assert f"firewall: no jump from filter INPUT to {r.IN_CHAIN}" in second
    assert f"firewall: chain {r.IN_CHAIN} differs" in second
    assert "tunnel: mm-tunnel@mm3.service is not running" in second
    assert "after second heal: no drift" in out and "tunnel: active" in out
