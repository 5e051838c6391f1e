"""Cluster transport: the stand-in's gossip on this machine, then the real thing in the lab.

The first part (no marker) runs the stand-in's gossip subsystem in-process on loopback addresses
with an SQLite stand-in for the database: members are found through ClusterDiscovery, gossip
flows over TCP and UDP, encrypted nodes share the Systems key, and nodes in different modes never
see each other. The libcrypto AES-GCM the lab hosts use is checked against `cryptography`.

The second part (marker `lab`) applies the program with the cluster enabled to the lab hosts
through the replay engine and checks it from the hosts and the bridge.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components import cluster_render as r
from lab import replay
from lab.hosts import Lab
from lab.replay.runners import SshRunner
from lab.standin.mmstandin import gossip
from lab.standin.mmstandin.config import DEFAULTS, Config
from lab.standin.mmstandin.runtime import Context, Logger
from tools.capture import capture

# ---------------------------------------------------------------- the stand-in's gossip, in-process


class SqliteDatabase:
    """What gossip needs from the database subsystem (`query` with %s placeholders)."""

    name = "database"

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self.conn.execute(sql.replace("%s", "?"), params)
            return cur.fetchall()


def make_node(db: SqliteDatabase, address: str, encrypted: bool, name: str) -> tuple[gossip.Gossip, Context]:
    data = {
        "SqlSettings": {"DriverName": "postgres"},
        "ClusterSettings": {
            "Enable": True,
            "ClusterName": "labcluster",
            "BindAddress": address,
            "AdvertiseAddress": address,
            "OverrideHostname": name,
            "GossipPort": 28974,
            "EnableGossipEncryption": encrypted,
        },
    }
    ctx = Context(config=Config(path="-", data=data), log=Logger("fatal"))
    ctx.subsystems["database"] = db  # type: ignore[assignment]
    node = gossip.create(ctx)
    node.start()
    return node, ctx


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(gossip, "INTERVAL", 0.1)
    started: list[tuple[gossip.Gossip, Context]] = []
    db = SqliteDatabase()

    def start(address: str, encrypted: bool, name: str) -> gossip.Gossip:
        node, ctx = make_node(db, address, encrypted, name)
        started.append((node, ctx))
        return node

    start.db = db  # type: ignore[attr-defined]
    yield start
    for node, ctx in started:
        ctx.stopping.set()
        node.stop()


def wait_for(predicate: Any, what: str, limit: float = 20) -> None:
    # a bound on waiting, not a timing assertion: the condition either holds or the test fails
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def both_ways(node: gossip.Gossip, peer: str) -> bool:
    m = node.status()["members"].get(peer)
    return bool(m and m["tcpAgeSeconds"] is not None and m["udpAgeSeconds"] is not None and m["alive"])


@pytest.mark.parametrize("encrypted", [False, True])
def test_nodes_find_each_other_and_gossip_over_tcp_and_udp(cluster: Any, encrypted: bool) -> None:
    nodes = {n: cluster(f"127.0.0.{i + 2}", encrypted, n) for i, n in enumerate(("mm1", "mm2", "mm3"))}
    for name, node in nodes.items():
        for peer in nodes:
            if peer != name:
                wait_for(lambda node=node, peer=peer: both_ways(node, peer), f"{name} sees {peer} over TCP and UDP")
        assert node.status()["encryption"] is encrypted and not node.status()["rejected"]
    rows = cluster.db.query("SELECT Hostname FROM ClusterDiscovery WHERE ClusterName = %s", ("labcluster",))
    assert sorted(r[0] for r in rows) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    keys = cluster.db.query("SELECT Value FROM Systems WHERE Name = %s", ("ClusterEncryptionKey",))
    assert len(keys) == (1 if encrypted else 0)


def test_encrypted_and_plain_nodes_never_see_each_other(cluster: Any) -> None:
    sealed = cluster("127.0.0.2", True, "mm1")
    plain = cluster("127.0.0.3", False, "mm2")
    wait_for(lambda: gossip.ERR_ENCRYPTED in plain.status()["rejected"], "the plain node rejects sealed gossip")
    wait_for(lambda: gossip.ERR_NOT_ENCRYPTED in sealed.status()["rejected"], "the sealed node rejects plain gossip")
    assert not sealed.status()["alive"] and not plain.status()["alive"]


def test_a_node_with_another_key_is_rejected(cluster: Any) -> None:
    first = cluster("127.0.0.2", True, "mm1")
    # the key row changes under a running node: the next node uses the new key
    cluster.db.query(
        "UPDATE Systems SET Value = %s WHERE Name = %s",
        (gossip.base64.b64encode(secrets.token_bytes(32)).decode(), "ClusterEncryptionKey"),
    )
    second = cluster("127.0.0.3", True, "mm2")
    wait_for(lambda: any("authentication failed" in e for e in first.status()["rejected"]), "wrong key rejected")
    assert not second.status()["alive"]


def test_sealed_frames_carry_no_plaintext_and_plain_ones_do() -> None:
    msg = {"type": "ping", "marker": gossip.PLAIN_MARKER, "cluster": "labcluster"}
    sealed = gossip.Codec(secrets.token_bytes(32)).encode(msg)
    plain = gossip.Codec(None).encode(msg)
    assert gossip.PLAIN_MARKER.encode() in plain and b"labcluster" in plain
    assert gossip.PLAIN_MARKER.encode() not in sealed and b"labcluster" not in sealed


@pytest.mark.parametrize("size", [16, 24, 32])
def test_libcrypto_aes_gcm_matches_cryptography(size: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce, aad = secrets.token_bytes(size), secrets.token_bytes(12), b"aad"
    ours, ref = gossip.OpenSslAesGcm(key), AESGCM(key)
    for data in (b"", b"x", secrets.token_bytes(1000)):
        sealed = ours.encrypt(nonce, data, aad)
        assert sealed == ref.encrypt(nonce, data, aad)
        assert ours.decrypt(nonce, sealed, aad) == data
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        with pytest.raises(gossip.InvalidFrame):
            ours.decrypt(nonce, tampered, aad)


def test_disabled_cluster_is_inert() -> None:
    ctx = Context(config=Config(path="-", data={}), log=Logger("fatal"))
    node = gossip.create(ctx)
    node.start()
    node.stop()
    assert node.status()["enabled"] is False and DEFAULTS["ClusterSettings"]["Enable"] is False


# ---------------------------------------------------------------- the lab (real hosts)

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("ssh-key", "account", "client-key", "firewall", "tunnels", "gossip-mode")
AES_CPU = any(
    line.split(":", 1)[0].strip() in ("flags", "Features") and "aes" in line.split(":", 1)[1].split()
    for line in Path("/proc/cpuinfo").read_text().splitlines()
    if ":" in line
)
BRIDGE = "mmtls-br0"
NODES3 = ["mm1", "mm2", "mm3"]
NODES4 = [*NODES3, "mm4"]
ADDRESS = {n: f"10.251.0.{100 + int(n[2:])}" for n in NODES4}
# node <-> node only: the VM (10.251.0.1) drives SSH too and must not count
BETWEEN_NODES = "src net 10.251.0.96/28 and dst net 10.251.0.96/28"
SNAPSHOT = r"""
cd /
find etc opt usr/local var/lib/mattermost-transport-encryption var/lib/mmtunnel -xdev \( -type f -o -type l \) 2>/dev/null \
  | grep -v -e '^opt/mattermost/logs/' -e '^opt/mattermost/data/' -e '^etc/ld.so.cache$' | LC_ALL=C sort \
  | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L:$(readlink "$f") $f"; else echo "$(sha256sum < "$f" | cut -c1-16):$(stat -c %a.%U.%G "$f") $f"; fi
done
getent passwd mmtunnel || true
iptables -S | grep -c MMTLS || true
iptables -t nat -S | grep -c MMTLS || true
systemctl list-units --all --no-legend 'mm-*' | wc -l
"""


class LabRun:
    """What the ordered lab tests hand each other."""

    def __init__(self, lab: Lab, state: Path) -> None:
        self.lab = lab
        self.state = state
        self.before: dict[str, str] = {}
        self.last: replay.Evaluation | None = None
        self.report: dict[str, Any] = {}


def up(run: LabRun, nodes: list[str], **cluster: Any) -> replay.Evaluation:
    config = {"nodes": [{"name": n} for n in nodes], "cluster": {"enabled": True, **cluster}}
    ev = replay.up(ROOT, "lab", state_path=run.state, config=config)
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-2000:]}" for s in ev.failed_steps) or ev.program_error
    run.last = ev
    return ev


def changed(ev: replay.Evaluation) -> dict[str, str]:
    return {s.name: s.op for s in ev.steps if s.op != "same"}


def gossip_status(lab: Lab, node: str) -> dict[str, Any]:
    out = lab.ssh(
        node,
        "curl -sk https://127.0.0.1:8065/standin/status || curl -s http://127.0.0.1:8065/standin/status",
        check=False,
    ).stdout
    try:
        return json.loads(out)["subsystems"].get("gossip", {})
    except (ValueError, KeyError):
        return {}


def wait_all_alive(lab: Lab, nodes: list[str], limit: float = 120) -> dict[str, dict[str, Any]]:
    """Bounded wait until every node sees every other one alive (over TCP and UDP)."""
    end = time.monotonic() + limit
    seen: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        seen = {n: gossip_status(lab, n) for n in nodes}
        if all(sorted(seen[n].get("alive", [])) == sorted(p for p in nodes if p != n) for n in nodes):
            both = all(
                m["tcpAgeSeconds"] is not None and m["udpAgeSeconds"] is not None
                for s in seen.values()
                for m in s["members"].values()
            )
            if both:
                return seen
        time.sleep(1)
    pytest.fail(f"not every node sees every other one: {json.dumps(seen, indent=1)[-3000:]}")


def count(pcap: Path, bpf: str, grep: str | None = None) -> int:
    """Packets in `pcap` matching `bpf` (and, with `grep`, whose ASCII dump contains it)."""
    dump = subprocess.run(["tcpdump", "-nn", "-A", "-r", str(pcap), bpf], capture_output=True, text=True).stdout
    if grep is None:
        return sum(1 for line in dump.splitlines() if " IP " in line)
    return dump.count(grep)


@pytest.fixture(scope="module")
def run(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    # a fresh "before" state, with a fourth node booted and waiting to be added
    lab.down()
    lab.up(nodes=4, extra=[])
    r_ = LabRun(lab, tmp_path_factory.mktemp("cluster-state") / "lab.json")
    for host in NODES4:
        r_.before[host] = lab.ssh(host, SNAPSHOT, timeout=120).stdout
    return r_


@pytest.mark.lab
def test_up_builds_the_mesh_and_every_node_sees_every_peer(run: LabRun) -> None:
    t0 = time.monotonic()
    ev = up(run, NODES3)
    run.report["first up (s)"] = round(time.monotonic() - t0, 1)
    assert {s.op for s in ev.steps if "-cluster-" in s.name} == {"create"}
    seen = wait_all_alive(run.lab, NODES3)
    for n in NODES3:
        assert seen[n]["encryption"] is True and not seen[n]["rejected"], seen[n]
        units = run.lab.ssh(n, "systemctl list-units --state=active --no-legend 'mm-tunnel@*' | wc -l").stdout
        assert units.strip() == "2"
        # the cipher follows the CPU: AES-GCM first where it has AES instructions
        cmd = run.lab.ssh(n, f"tr '\\000' ' ' < /proc/$(systemctl show -p MainPID --value {r.tunnel_unit_name('mm1' if n != 'mm1' else 'mm2')})/cmdline").stdout
        assert cmd.startswith("/usr/bin/ssh ") and (f"Ciphers={r.AES_CIPHERS}" in cmd) is AES_CPU, cmd
        # our DNAT is the only one, first in nat OUTPUT, and nothing forwarding or localnet was switched on
        nat = run.lab.ssh(
            n, "iptables -t nat -S OUTPUT; sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.route_localnet"
        ).stdout
        assert nat.splitlines()[1] == f"-A OUTPUT -j {r.NAT_CHAIN}" and nat.count("DNAT") == 0, nat
        assert nat.splitlines()[-2:] == ["0", "0"], nat


@pytest.mark.lab
def test_no_plaintext_gossip_crosses_the_wire(run: LabRun, tmp_path: Path) -> None:
    pcap = tmp_path / "gossip.pcap"
    with capture(BRIDGE, f"({BETWEEN_NODES}) and (port 8074 or tcp port 22)", pcap, settle=2):
        time.sleep(8)  # gossip runs every second: several rounds of TCP push/pull and UDP ping
        # control: one plain gossip frame, as an unencrypted node would send it
        frame = gossip.Codec(None).encode({"type": "ping", "marker": gossip.PLAIN_MARKER, "cluster": "control"})
        run.lab.netns_exec(
            "mm1",
            [
                "python3",
                "-c",
                "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                ".sendto(bytes.fromhex(sys.argv[1]), ('10.251.0.102', 8074))",
                frame.hex(),
            ],
        )
    tcp_gossip = count(pcap, "tcp port 8074")
    udp_gossip = count(pcap, "udp port 8074")
    ssh = count(pcap, "tcp port 22")
    plain_udp = count(pcap, "udp port 8074", gossip.PLAIN_MARKER)
    run.report["capture"] = {"tcp 8074": tcp_gossip, "udp 8074": udp_gossip, "tcp 22": ssh, "plain udp": plain_udp}
    print(run.report["capture"])
    assert ssh > 20, "no SSH between the nodes: the tunnels carry nothing, the capture proves nothing"
    assert udp_gossip > 10, "no UDP gossip seen: the capture proves nothing"
    assert tcp_gossip == 0, "TCP gossip crossed the wire outside the tunnels"
    assert plain_udp == 1, "the control datagram must be seen, and nothing else in plain text"
    # the control datagram was dropped by mm2's stand-in as memberlist would
    assert any(gossip.ERR_NOT_ENCRYPTED in e for e in gossip_status(run.lab, "mm2")["rejected"])


@pytest.mark.lab
def test_direct_tcp_to_the_gossip_port_is_refused_and_non_peers_are_filtered(run: LabRun) -> None:
    # from the proxy (not a peer): the gossip ports are closed to it, TCP and UDP
    probe = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n    s.connect(('10.251.0.101', 8074)); print('tcp open')\n"
        "except OSError as e:\n    print('tcp closed', type(e).__name__)\n"
    )
    out = run.lab.netns_exec("proxy", ["python3", "-c", probe]).stdout
    assert "tcp closed" in out, out
    drops = run.lab.ssh("mm1", f"iptables -L {r.IN_CHAIN} -v -n -x").stdout
    assert "DROP" in drops and "10.251.0.102" in drops and "10.251.0.10 " not in drops


@pytest.mark.lab
def test_up_again_changes_nothing(run: LabRun) -> None:
    ev = up(run, NODES3)
    assert changed(ev) == {}, changed(ev)


@pytest.mark.lab
def test_a_flushed_dnat_chain_and_a_stopped_tunnel_heal_without_restarting_mattermost(run: LabRun) -> None:
    """What a second `up` cannot see (the files are unchanged), each node's drift check puts back:
    the audit's `mm-cluster drift` reports it first; Mattermost keeps running throughout."""
    lab = run.lab
    pid = lab.ssh("mm1", "systemctl show -p MainPID --value mattermost").stdout.strip()
    # in one command, so the timer cannot heal it between the break and the report
    drift = lab.ssh(
        "mm1",
        f"iptables -w -t nat -F {r.NAT_CHAIN}; systemctl stop {r.tunnel_unit_name('mm3')}; {r.HELPER} drift",
        check=False,
    )
    assert drift.returncode == 1 and f"chain {r.NAT_CHAIN} differs" in drift.stdout, drift.stdout
    assert f"{r.tunnel_unit_name('mm3')} is not running" in drift.stdout
    assert changed(up(run, NODES3)) == {}  # the program's files are as installed: nothing to do
    t0 = time.monotonic()
    end = t0 + 3 * r.HEAL_INTERVAL_SECONDS
    healed = False
    while time.monotonic() < end:
        if lab.ssh("mm1", f"{r.HELPER} drift", check=False).returncode == 0:
            healed = True
            break
        time.sleep(0.5)
    assert healed, lab.ssh("mm1", f"{r.HELPER} drift; journalctl -u {r.HEAL_SERVICE} -n 20 --no-pager", check=False).stdout
    run.report["drift healed after (s)"] = round(time.monotonic() - t0, 1)
    assert lab.ssh("mm1", f"iptables -t nat -S {r.NAT_CHAIN} | grep -c DNAT").stdout.strip() == "2"
    assert lab.ssh("mm1", "systemctl show -p MainPID --value mattermost").stdout.strip() == pid, "Mattermost restarted"
    assert "drift" in lab.ssh("mm1", f"journalctl -u {r.HEAL_SERVICE} --no-pager -n 20").stdout
    wait_all_alive(lab, NODES3)


@pytest.mark.lab
def test_a_killed_tunnel_is_back_within_seconds(run: LabRun) -> None:
    unit = r.tunnel_unit_name("mm2")
    port = r.local_port(28000, 102, 1, 0)
    lab = run.lab
    before = int(lab.ssh("mm1", f"systemctl show -p NRestarts --value {unit}").stdout.strip())
    t0 = time.monotonic()
    lab.ssh("mm1", f"systemctl kill --signal=KILL {unit}")
    back = None
    end = time.monotonic() + 60
    while time.monotonic() < end:
        r_ = lab.ssh("mm1", f"systemctl is-active {unit}; ss -Hltn 'sport = :{port}' | wc -l", check=False)
        lines = r_.stdout.split()
        after = int(lab.ssh("mm1", f"systemctl show -p NRestarts --value {unit}").stdout.strip())
        if lines[:2] == ["active", "1"] and after > before:
            back = time.monotonic() - t0
            break
        time.sleep(0.2)
    assert back is not None, "the tunnel did not come back"
    run.report["tunnel restored after kill (s)"] = round(back, 1)
    print(f"tunnel mm1 -> mm2 listening again {back:.1f}s after SIGKILL")
    wait_all_alive(lab, NODES3)


@pytest.mark.lab
def test_a_fourth_node_changes_only_its_resources_and_pair_entries(run: LabRun) -> None:
    before = {
        n: run.lab.ssh(
            n,
            f"systemctl show -p ActiveEnterTimestampMonotonic --value mattermost {r.tunnel_unit_name('mm1' if n != 'mm1' else 'mm2')}",
        ).stdout
        for n in NODES3
    }
    ev = up(run, NODES4)
    ch = {k: v for k, v in changed(ev).items() if "-cluster-" in k and not k.startswith("cluster-")}
    created = {k for k, v in ch.items() if v == "create"}
    assert created == {f"mm4-cluster-{role}" for role in ROLES}, ch
    assert {k for k, v in ch.items() if v != "create"} == {
        f"{n}-cluster-{x}" for n in NODES3 for x in ("firewall", "tunnels")
    }, ch
    assert {v for k, v in ch.items() if v != "create"} == {"update"}
    # existing Mattermost processes and tunnels were not restarted
    after = {
        n: run.lab.ssh(
            n,
            f"systemctl show -p ActiveEnterTimestampMonotonic --value mattermost {r.tunnel_unit_name('mm1' if n != 'mm1' else 'mm2')}",
        ).stdout
        for n in NODES3
    }
    assert after == before
    wait_all_alive(run.lab, NODES4)


@pytest.mark.lab
def test_removing_the_fourth_node_puts_it_back_as_it_was(run: LabRun) -> None:
    ev = up(run, NODES3)
    deleted = {k for k, v in changed(ev).items() if v == "delete" and "-cluster-" in k}
    assert {f"mm4-cluster-{role}" for role in ROLES} == deleted
    port = r.local_port(28000, 104, 1, 0)
    for n in NODES3:
        state = run.lab.ssh(n, f"systemctl is-active {r.tunnel_unit_name('mm4')}; ss -Hltn 'sport = :{port}' | wc -l", check=False)
        assert state.stdout.split() == ["inactive", "0"], state.stdout
    wait_all_alive(run.lab, NODES3)


@pytest.mark.lab
def test_switching_gossip_encryption_stops_all_then_all_return_in_the_new_mode(run: LabRun, tmp_path: Path) -> None:
    """Off: every node stops before any restarts, all come back plain (and the capture now sees
    plaintext UDP gossip: the control that the encrypted capture's zero means something). On again."""
    t0 = time.monotonic()
    ev = up(run, NODES3, gossipEncryption=False)
    run.report["switch to plain gossip (s)"] = round(time.monotonic() - t0, 1)
    ops = {(st.name, st.op) for st in ev.steps if st.op != "same" and "-cluster-" in st.name}
    expected = {(f"{n}-cluster-gossip-mode", op) for n in NODES3 for op in ("replace", "delete-replaced")}
    assert ops == expected, ops
    # every stop ran before any node restarted
    order = [s.name for s in ev.steps if s.op != "same"]
    last_stop = max(order.index(f"{n}-cluster-gossip-mode") for n in NODES3)
    first_restart = min(order.index(f"{n}-tls-files") for n in NODES3)
    assert last_stop < first_restart, order
    seen = wait_all_alive(run.lab, NODES3)
    assert all(s["encryption"] is False for s in seen.values())
    pcap = tmp_path / "plain.pcap"
    with capture(BRIDGE, f"({BETWEEN_NODES}) and port 8074", pcap, settle=2):
        time.sleep(5)
    assert count(pcap, "udp port 8074", gossip.PLAIN_MARKER) > 5, "plain gossip must be visible now"
    assert count(pcap, "tcp port 8074") == 0, "TCP gossip still only inside the tunnels"
    ev = up(run, NODES3)
    assert {(st.name, st.op) for st in ev.steps if st.op != "same" and "-cluster-" in st.name} == expected
    seen = wait_all_alive(run.lab, NODES3)
    assert all(s["encryption"] is True for s in seen.values())


@pytest.mark.lab
def test_destroy_puts_every_node_back(run: LabRun) -> None:
    ev = replay.destroy(ROOT, "lab", state_path=run.state)
    assert ev.ok, [s.error[-1500:] for s in ev.failed_steps]
    for n in NODES4:
        now = run.lab.ssh(n, SNAPSHOT, timeout=120).stdout
        assert now == run.before[n], f"{n} differs after destroy"
    print("cluster lab report:", json.dumps(run.report))


# ---------------------------------------------------------------- 9 and 10 nodes, and the upgrade


class CountingRunner(SshRunner):
    """The replay's SSH runner (one connection per command, as pulumi-command), counting per
    host the connections and the most open at once (sshd's MaxStartups 10:30:100 starts dropping
    unauthenticated connections beyond 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.per_host: dict[str, int] = {}
        self.open: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def run(self, connection: dict[str, Any], command: str, **kw: Any) -> Any:
        with self._counted(connection):
            return super().run(connection, command, **kw)

    def copy(self, connection: dict[str, Any], source: str, remote_path: str) -> None:
        """A CopyToRemote (the host helper's upload) dials its own connection too."""
        with self._counted(connection):
            super().copy(connection, source, remote_path)

    @contextlib.contextmanager
    def _counted(self, connection: dict[str, Any]) -> Iterator[None]:
        host = str(connection.get("host"))
        with self.lock:
            self.per_host[host] = self.per_host.get(host, 0) + 1
            self.open[host] = self.open.get(host, 0) + 1
            self.peak[host] = max(self.peak.get(host, 0), self.open[host])
        try:
            yield
        finally:
            with self.lock:
                self.open[host] -= 1


def lab_up(state: Path, nodes: list[str], project: Path = ROOT, **config: Any) -> tuple[replay.Evaluation, CountingRunner]:
    counting = CountingRunner()
    cfg = {"nodes": [{"name": n} for n in nodes], "cluster": {"enabled": True}, **config}
    ev = replay.up(project, "lab", state_path=state, config=cfg, runner=counting)
    # no retry anywhere: the first attempt of every step has to succeed
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-2000:]}" for s in ev.failed_steps) or ev.program_error
    return ev, counting


def node_hosts(counting: CountingRunner, nodes: list[str]) -> tuple[set[int], int]:
    addresses = {ADDRESSES[n] for n in nodes}
    return {v for k, v in counting.per_host.items() if k in addresses}, max(counting.peak.values())


ADDRESSES = {f"mm{i}": f"10.251.0.{100 + i}" for i in range(1, 11)}
NODES9 = [f"mm{i}" for i in range(1, 10)]
NODES10 = [f"mm{i}" for i in range(1, 11)]
CA2 = {"commonName": "Mattermost lab transport CA 2", "organization": "Lab"}


NODE_HOST_CONNECTIONS = {10, 11}
"""SSH connections to each node host in a fresh `up`, whatever the node count: the node's preflight
(with the cluster's check for the manual procedure), its host helper's upload (SFTP) and install,
5 cluster commands (sshd's files in the host setup's), its DSN's CA file (deleted after the node's restart in a
destroy: components/node.py) and its TLS files; the first node one more (the read of the site's
current database password)."""


@pytest.mark.lab
def test_nine_nodes_whole_lifecycle_past_the_manual_six_node_limit(lab: Lab, tmp_path: Path) -> None:
    """9 nodes (the manual procedure's <k>8075 ports stop at 6): fresh up, no-op up, a 10th node,
    one removed, the CA rotated, destroy with every host byte-identical; no step fails, none retried."""
    lab.down()
    lab.up(nodes=10, extra=[])
    before = {h: lab.ssh(h, SNAPSHOT, timeout=120).stdout for h in NODES10}
    state = tmp_path / "nine.json"
    report: dict[str, Any] = {}

    t0 = time.monotonic()
    ev, counting = lab_up(state, NODES9)
    report["fresh up 9 nodes (s)"] = round(time.monotonic() - t0, 1)
    per_node, peak = node_hosts(counting, NODES9)
    report["SSH connections per node host"] = sorted(per_node)
    report["most SSH connections open at once to one host"] = peak
    report["SSH connections total"] = counting.connections
    assert per_node == NODE_HOST_CONNECTIONS and peak <= 10, report
    wait_all_alive(lab, NODES9)

    ev, counting = lab_up(state, NODES9)
    assert changed(ev) == {} and counting.connections == 0, changed(ev)

    t0 = time.monotonic()
    ev, counting = lab_up(state, NODES10)
    report["add a 10th node (s)"] = round(time.monotonic() - t0, 1)
    ch = changed(ev)
    assert {k for k, v in ch.items() if v == "create" and "-cluster-" in k} == {f"mm10-cluster-{x}" for x in ROLES}
    assert {k for k, v in ch.items() if v != "create" and k.startswith("mm")} == {
        f"{n}-cluster-{x}" for n in NODES9 for x in ("firewall", "tunnels")
    }, ch
    wait_all_alive(lab, NODES10)

    rest = [n for n in NODES10 if n != "mm5"]
    ev, counting = lab_up(state, rest)
    assert {k for k, v in changed(ev).items() if v == "delete" and "-cluster-" in k} == {
        f"mm5-cluster-{x}" for x in ROLES
    }
    wait_all_alive(lab, rest)

    t0 = time.monotonic()
    ev, counting = lab_up(state, rest, ca=CA2)
    report["CA rotation (s)"] = round(time.monotonic() - t0, 1)
    # the mesh does not depend on the CA: no cluster resource changes with it
    assert not {k for k in changed(ev) if "-cluster-" in k}, changed(ev)
    wait_all_alive(lab, rest)

    t0 = time.monotonic()
    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error[-1500:] for s in gone.failed_steps]
    report["destroy (s)"] = round(time.monotonic() - t0, 1)
    for h in NODES10:
        assert lab.ssh(h, SNAPSHOT, timeout=120).stdout == before[h], f"{h} differs after destroy"
    print("nine-node lab report:", json.dumps(report))


@pytest.mark.lab
def test_three_nodes_fresh_up_connections(lab: Lab, tmp_path: Path) -> None:
    """The 3-node figures beside the 9-node ones: the same connections per node host."""
    lab.down()
    lab.up(nodes=3, extra=[])
    before = {h: lab.ssh(h, SNAPSHOT, timeout=120).stdout for h in NODES3}
    state = tmp_path / "three.json"
    t0 = time.monotonic()
    ev, counting = lab_up(state, NODES3)
    took = round(time.monotonic() - t0, 1)
    per_node, peak = node_hosts(counting, NODES3)
    print("three-node lab report:", json.dumps({"fresh up 3 nodes (s)": took, "SSH connections per node host": sorted(per_node),
                                                "most open at once to one host": peak, "total": counting.connections}))
    assert per_node == NODE_HOST_CONNECTIONS and peak <= 10
    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok
    for h in NODES3:
        assert lab.ssh(h, SNAPSHOT, timeout=120).stdout == before[h], f"{h} differs after destroy"


BASELINE_REF = "2d3e109"
"""main before the tunnel table (per-pair tunnel resources)."""


def apply_old_design(lab: Lab, ref: str, tree: Path, state: Path) -> None:
    """`up` of the program at git `ref` (from a worktree at `tree`, which the caller removes)
    through that tree's own replay engine, in a process of its own (this one has imported this
    tree's `components`), against the lab's 3 nodes with the cluster on."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    config = {
        "nodes": [{"name": n} for n in NODES3],
        "cluster": {"enabled": True},
        "inventoryFile": str(lab.inventory_file),
    }
    prog = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from lab import replay\n"
        "ev = replay.up(sys.argv[1], 'lab', state_path=sys.argv[2], config=json.loads(sys.argv[3]))\n"
        "print('ok' if ev.ok else [s.error[-1500:] for s in ev.failed_steps] or ev.program_error)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", prog, str(tree), str(state), json.dumps(config)],
        capture_output=True, text=True, cwd=tree, timeout=900,
    )
    assert res.stdout.strip().splitlines()[-1:] == ["ok"], res.stdout[-3000:] + res.stderr[-3000:]


@pytest.mark.lab
def test_upgrade_from_per_pair_tunnels_keeps_the_mesh_and_destroy_gives_back_every_byte(
    lab: Lab, tmp_path: Path
) -> None:
    """Apply the previous design, then this one: the per-pair resources are deleted AFTER the
    tunnel sets are created (create-before-delete) and their delete leaves the new files and
    tunnels alone; the legacy units are gone, the mesh never stops working."""
    lab.down()
    lab.up(nodes=3, extra=[])
    before = {h: lab.ssh(h, SNAPSHOT, timeout=120).stdout for h in NODES3}
    state = tmp_path / "upgrade.json"
    old = tmp_path / "old-tree"
    try:
        apply_old_design(lab, BASELINE_REF, old, state)
        wait_all_alive(lab, NODES3)
        assert lab.ssh("mm1", "systemctl is-active mm-tunnel-mm2.service").stdout.strip() == "active"
        pid = lab.ssh("mm1", "systemctl show -p MainPID --value mattermost").stdout.strip()
        ev, counting = lab_up(state, NODES3)
        ops = changed(ev)
        legacy = {f"{n}-cluster-tunnel-{p}" for n in NODES3 for p in NODES3 if p != n}
        # and the old design's generated password: the new program keeps the password the site
        # uses (read from mm1's current DSN), so nothing changes on the database
        units = {f"{n}-cluster-units" for n in NODES3}  # their files joined the firewall command
        units |= {f"{n}-cluster-sshd" for n in NODES3}  # and so did sshd's
        # and the cluster's checks: read-only, they now run in each node's preflight
        checks = {f"{n}-cluster-preflight" for n in NODES3}
        assert {k for k, v in ops.items() if v == "delete"} == legacy | units | checks | {"database-password"}, ops
        order = [s.name for s in ev.steps if s.op != "same"]
        assert max(order.index(f"{n}-cluster-tunnels") for n in NODES3) < min(order.index(k) for k in legacy)
        # the firewall command takes the unit files over before the units' own command goes,
        # and that delete leaves them: the drift check and the tunnels target stay
        assert max(order.index(f"{n}-cluster-firewall") for n in NODES3) < min(order.index(k) for k in units)
        for n in NODES3:
            kept = lab.ssh(
                n, f"systemctl is-active {r.HEAL_TIMER}; test -f {r.SYSTEMD_DIR}/{r.TUNNELS_TARGET} && echo target", check=False
            ).stdout.split()
            assert kept == ["active", "target"], (n, kept)
        for n in NODES3:
            peers = [p for p in NODES3 if p != n]
            state_ = lab.ssh(
                n,
                "systemctl is-active " + " ".join(r.tunnel_unit_name(p) for p in peers) + " "
                + " ".join(r.legacy_tunnel_unit_name(p) for p in peers) + "; "
                f"ls {r.CONF_DIR}; ls /etc/systemd/system/{r.TUNNELS_TARGET}.d; {r.HELPER} drift",
                check=False,
            ).stdout.split()
            assert state_[: 2 * len(peers)] == ["active"] * len(peers) + ["inactive"] * len(peers), state_
            assert "known_hosts.d" not in state_ and "tunnels" in state_ and "peers.conf" in state_, state_
            assert not any(x.startswith("mm-tunnel-") for x in state_), state_
        assert lab.ssh("mm1", "systemctl show -p MainPID --value mattermost").stdout.strip() == pid
        wait_all_alive(lab, NODES3)
        ev, counting = lab_up(state, NODES3)
        assert changed(ev) == {} and counting.connections == 0
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error[-1500:] for s in gone.failed_steps]
    for h in NODES3:
        assert lab.ssh(h, SNAPSHOT, timeout=120).stdout == before[h], f"{h} differs after destroy"


PREVIOUS_TABLE_REF = "38a01f3"
"""main before the short tunnel table and packed manifests (full ssh argv per table line, a
known_hosts file per node, helper input format 1 only)."""


@pytest.mark.lab
def test_upgrade_from_the_full_argv_table_restarts_no_mattermost_and_destroy_gives_back_every_byte(
    lab: Lab, tmp_path: Path
) -> None:
    """Hosts the previous layout configured: the helper is updated in place, the tunnel sets get
    the short table (every tunnel restarts once, its line changed) and lose their known_hosts
    file (its original, none, is back), nothing is replaced, only the per-node barriers (no
    command) are deleted, no Mattermost restarts,
    the next `up` changes nothing and destroy gives back every byte."""
    lab.down()
    lab.up(nodes=3, extra=[])
    before = {h: lab.ssh(h, SNAPSHOT, timeout=120).stdout for h in NODES3}
    state = tmp_path / "upgrade.json"
    try:
        apply_old_design(lab, PREVIOUS_TABLE_REF, tmp_path / "old-tree", state)
        wait_all_alive(lab, NODES3)
        assert lab.ssh("mm1", f"test -f {r.CONF_DIR}/known_hosts && echo there").stdout.strip() == "there"
        pids = {n: lab.ssh(n, "systemctl show -p MainPID --value mattermost").stdout.strip() for n in NODES3}
        ev, _ = lab_up(state, NODES3)
        assert ev.ok, [s.error[-1500:] for s in ev.failed_steps]
        ops = changed(ev)
        # the node's CA file moved into its own command (`<node>-db-ca`, created; the helper's
        # ledger hands the path over, its original kept) since that layout: no other create
        created = {n for n, o in ops.items() if o == "create"}
        # and the two-phase steps' own components (no command: their children moved under them
        # by alias, components/deployment.py)
        # and the Deployment component (no command: everything moves under it by alias)
        # and each host's helper upload (the helper travels as a file asset: issue 11)
        uploads = {n for n in created if n.startswith("host-helper-") and n.endswith("-upload")}
        installs = {n for n in ops if n.startswith("host-helper-") and not n.endswith(("-upload", "-copy"))}
        assert len(uploads) == len(installs) > 0, ops
        # and each node host's `<helper>-copy` (a delete only: the node's preflight now reads its
        # check from the host's copy of the helper, which that removes on destroy after a refusal)
        copies = {n for n in created if n.startswith("host-helper-") and n.endswith("-copy")}
        assert len(copies) == len(NODES3), ops
        assert created == {f"{n}-db-ca" for n in NODES3} | {"proxy-final-site", "database-tls-enforced", "deployment"} | uploads | copies, ops
        # and the per-node barriers (`<node>-cluster-ready`, no command) are gone: each node's
        # restart waits for `cluster-gossip-stopped` itself
        # and the units' own command (its files joined the firewall's: the ledger hands them over)
        units = {f"{n}-cluster-units" for n in NODES3} | {f"{n}-cluster-sshd" for n in NODES3}  # sshd's files too
        # and the cluster's checks (read-only, no delete script): they run in each node's preflight
        checks = {f"{n}-cluster-preflight" for n in NODES3}
        assert {n for n, o in ops.items() if o == "delete"} == {f"{n}-cluster-ready" for n in NODES3} | units | checks, ops
        assert set(ops.values()) == {"update", "create", "delete"}, ops
        assert {f"{n}-cluster-tunnels" for n in NODES3} <= set(ops) and any(k.startswith("host-helper-") for k in ops), ops
        for n in NODES3:
            peers = [p for p in NODES3 if p != n]
            out = lab.ssh(
                n,
                "systemctl is-active " + " ".join(r.tunnel_unit_name(p) for p in peers) + "; "
                f"ls {r.CONF_DIR}; cat /run/mm-tunnel-{peers[0]}/known_hosts; {r.HELPER} drift",
                check=False,
            ).stdout
            assert out.split()[: len(peers)] == ["active"] * len(peers), out
            assert "known_hosts" not in out.split() and f"mm-cluster-{peers[0]} ssh-ed25519 " in out, out
            assert lab.ssh(n, "systemctl show -p MainPID --value mattermost").stdout.strip() == pids[n], n
        wait_all_alive(lab, NODES3)
        ev, counting = lab_up(state, NODES3)
        assert changed(ev) == {} and counting.connections == 0
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp_path / "old-tree")], capture_output=True)
    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error[-1500:] for s in gone.failed_steps]
    for h in NODES3:
        assert lab.ssh(h, SNAPSHOT, timeout=120).stdout == before[h], f"{h} differs after destroy"
