"""Benchmark of the cluster transport on the lab: what the SSH tunnel costs, and how fast it heals.

Owns the `tunnel` part of bench/run.py. On the 3-node lab with the `lab` stack applied (cluster
on), between mm1 and its peer mm2:

- latency: 64-byte round trips on one open TCP connection, and connect + first round trip,
  p50/p99, through the tunnel (mm1 -> peer_ip:gossipPort, which mm1's DNAT sends into
  `ssh -L 127.0.0.1:<local>:peer_ip:gossipPort`, so mm2's sshd delivers it to peer_ip:gossipPort)
  vs direct to a port on the same address that is not tunnelled (same veth/bridge link);
- throughput: a bulk upload to a sink on mm2, through the tunnel vs direct;
- ciphers: the same throughput and round trips through a second tunnel with the same pinned
  command line and `-o Ciphers=` chacha20-poly1305 (OpenSSH's default) vs aes128-gcm (what the
  helper picks where the CPU has AES instructions);
- healing: seconds from `kill -9` of the ssh process of mm-tunnel@<peer>.service until the local
  forward port accepts connections again (systemd's Restart=always, RestartSec, the ssh login
  and ExecStartPost's wait for the listener).

The stand-in's gossip owns peer_ip:gossipPort on mm2, so Mattermost is stopped on mm2 while an
echo/sink server (Python, a transient systemd unit) listens there and on the direct port; it is
started again afterwards. Figures are printed, nothing is asserted; a wrong path (the "tunnel"
connection not arriving through mm2's sshd) raises instead of printing a misleading ratio.

Lab rules: the whole measurement holds the lab session lock (/run/mmtls-lab-session.lock, the
lock every lab pytest session takes), starts from the seeded before state and leaves it there
(`destroy`, verified by the replay result).
"""

from __future__ import annotations

import json
import shlex
import statistics
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT, PEER = "mm1", "mm2"
DIRECT_PORT = 9099
"""Not a gossip port: neither DNAT nor the cluster filter touch it, so it measures the bare link."""
SERVER_UNIT = "mmtls-bench-echo"
SERVER_FILE = "/run/mmtls-bench-echo.py"
ROUND_TRIPS = 2000
CONNECTS = 200
BULK_MIB = 64
BULK_REPEATS = 3
KILLS = 5

# Runs on the peer: an echo ("E") and sink ("S") server on every address:port given.
_SERVER = r"""
import socket, sys, threading

def serve(conn, peer):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = conn.recv(1)
        if mode == b"E":
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        elif mode == b"S":
            total = 0
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                total += len(data)
            conn.sendall(f"{total} {peer[0]}".encode())

def listen(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()

for spec in sys.argv[1:]:
    addr, port = spec.rsplit(":", 1)
    threading.Thread(target=listen, args=(addr, int(port)), daemon=True).start()
threading.Event().wait()
"""

# Runs on the client node; prints one JSON line.
_CLIENT = r"""
import json, socket, sys, time
host, port, trips, connects, mib, repeats = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7])
payload = b"x" * 64

def recv_exact(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise OSError("connection closed")
        got += chunk
    return got

def connect():
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

s = connect()
s.sendall(b"E")
rtt = []
for i in range(trips + 100):
    t0 = time.perf_counter()
    s.sendall(payload)
    recv_exact(s, len(payload))
    if i >= 100:  # warm-up
        rtt.append(time.perf_counter() - t0)
s.close()

conn = []
for _ in range(connects):
    t0 = time.perf_counter()
    c = connect()
    c.sendall(b"E" + payload)
    recv_exact(c, len(payload))
    conn.append(time.perf_counter() - t0)
    c.close()

bulk, peers = [], set()
block = b"\0" * (1 << 20)
for _ in range(repeats):
    c = connect()
    t0 = time.perf_counter()
    c.sendall(b"S")
    for _ in range(mib):
        c.sendall(block)
    c.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        chunk = c.recv(100)
        if not chunk:
            break
        reply += chunk
    took = time.perf_counter() - t0
    c.close()
    total, peer = reply.decode().split()
    if int(total) != mib << 20:
        raise SystemExit(f"sink got {total} bytes, sent {mib << 20}")
    peers.add(peer)
    bulk.append((mib << 20) / took)
print(json.dumps({"rtt": rtt, "connect": conn, "bulk": bulk, "peers": sorted(peers)}))
"""

# Runs on the client node: kill -9 the tunnel's ssh, time until the forward port accepts again.
_HEAL = r"""
import json, os, socket, subprocess, sys, time
unit, port, kills = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def accepts():
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False

def main_pid():
    return int(subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", unit]).strip() or 0)

out = []
for _ in range(kills):
    end = time.monotonic() + 60
    while not (main_pid() and accepts()):  # steady state before each kill
        if time.monotonic() > end:
            raise SystemExit(f"{unit} is not listening on {port}")
        time.sleep(0.05)
    time.sleep(1)
    pid = main_pid()
    t0 = time.monotonic()
    os.kill(pid, 9)
    while os.path.exists(f"/proc/{pid}"):  # the old listener is really gone
        time.sleep(0.005)
    seen_down = False
    while True:
        if accepts():
            if seen_down or main_pid() not in (0, pid):
                break
        else:
            seen_down = True
        if time.monotonic() - t0 > 60:
            raise SystemExit(f"{unit} did not come back within 60 s")
        time.sleep(0.01)
    out.append(time.monotonic() - t0)
print(json.dumps(out))
"""


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _python(lab: Any, host: str, script: str, *args: object, timeout: float = 600) -> str:
    argv = " ".join(shlex.quote(str(a)) for a in args)
    return lab.ssh(host, f"python3 - {argv}", input=script, timeout=timeout).stdout


def _measure(lab: Any, address: str, port: int) -> dict[str, Any]:
    out = _python(lab, CLIENT, _CLIENT, address, port, ROUND_TRIPS, CONNECTS, BULK_MIB, BULK_REPEATS)
    return json.loads(out.strip().splitlines()[-1])


def _wait_ping(lab: Any, host: str) -> None:
    lab.ssh(
        host,
        "for i in $(seq 120); do curl -sfk https://127.0.0.1:8065/api/v4/system/ping >/dev/null && exit 0; "
        "sleep 0.5; done; exit 1",
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _report(direct: dict[str, Any], tunnel: dict[str, Any], heal: list[float]) -> dict[str, float]:
    fig: dict[str, float] = {}
    for key, label in (("rtt", "round trip 64 B on an open connection"), ("connect", "connect + first round trip")):
        d50, d99 = pct(direct[key], 50), pct(direct[key], 99)
        t50, t99 = pct(tunnel[key], 50), pct(tunnel[key], 99)
        print(f"  {label} (n={len(direct[key])}):")
        print(f"    direct  p50 {_ms(d50)}  p99 {_ms(d99)}")
        print(f"    tunnel  p50 {_ms(t50)}  p99 {_ms(t99)}")
        print(f"    tunnel/direct  p50 x{t50 / d50:.1f}  p99 x{t99 / d99:.1f}")
        fig |= {f"{key} p50 direct ms": d50 * 1e3, f"{key} p99 direct ms": d99 * 1e3}
        fig |= {f"{key} p50 tunnel ms": t50 * 1e3, f"{key} p99 tunnel ms": t99 * 1e3}
        fig |= {f"{key} p50 ratio": t50 / d50, f"{key} p99 ratio": t99 / d99}
    db, tb = statistics.median(direct["bulk"]), statistics.median(tunnel["bulk"])
    print(f"  throughput, {BULK_MIB} MiB upload, median of {BULK_REPEATS}:")
    print(f"    direct {db / 2**20:.0f} MiB/s, tunnel {tb / 2**20:.0f} MiB/s, tunnel/direct x{tb / db:.2f}")
    fig |= {"throughput direct MiB/s": db / 2**20, "throughput tunnel MiB/s": tb / 2**20, "throughput ratio": tb / db}
    print(
        f"  killed tunnel (kill -9 of its ssh) accepting again after: {', '.join(f'{h:.2f}' for h in heal)} s "
        f"(median {statistics.median(heal):.2f} s)"
    )
    fig["tunnel heal median s"] = statistics.median(heal)
    fig["tunnel heal max s"] = max(heal)
    return fig


def bench_tunnel() -> dict[str, float]:
    """Apply the lab stack to a fresh lab, measure, destroy; returns the figures (also printed)."""
    from lab import replay
    from lab.hosts import Lab
    from tests.helpers.lab_session import session_lock

    with session_lock():
        lab = Lab()
        lab.down()
        lab.up(nodes=3, extra=[])
        with tempfile.TemporaryDirectory(prefix="mmtls-bench-tunnel-") as tmp:
            state = Path(tmp) / "lab.json"
            try:
                ev = replay.up(ROOT, "lab", state_path=state)
                if not ev.ok:
                    raise RuntimeError(
                        "applying the lab stack failed: "
                        + "; ".join(f"{s.name}: {s.error[-300:]}" for s in ev.failed_steps)
                        + ev.program_error
                    )
                return _bench_applied(lab)
            finally:
                gone = replay.destroy(ROOT, "lab", state_path=state)
                if not gone.ok:
                    print(
                        "  WARNING: destroy failed, the lab is not in its before state: "
                        + "; ".join(f"{s.name}: {s.error[-300:]}" for s in gone.failed_steps)
                    )


def _bench_applied(lab: Any) -> dict[str, float]:
    from components import adapter, cluster_render
    from tools.audit import load_stack

    cfg = load_stack("lab")
    plan = adapter.cluster_plan(cfg)
    peer = plan.member(PEER)
    unit = cluster_render.tunnel_unit_name(PEER)
    local = plan.local_ports(PEER)[0]
    print(
        f"  path: {CLIENT} -> {peer.address}:{plan.gossip_port} (DNAT -> 127.0.0.1:{local} -> ssh -> "
        f"{PEER} sshd -> {peer.address}:{plan.gossip_port}) vs direct {peer.address}:{DIRECT_PORT}"
    )
    lab.ssh(PEER, f"cat > {SERVER_FILE}", input=_SERVER)
    # the stand-in's gossip holds the gossip port on the peer: stop it for the measurement
    lab.ssh(PEER, "systemctl stop mattermost.service")
    try:
        lab.ssh(
            PEER,
            f"systemd-run --unit={SERVER_UNIT} --collect python3 {SERVER_FILE} "
            f"{peer.address}:{plan.gossip_port} {peer.address}:{DIRECT_PORT}\n"
            f"for i in $(seq 100); do ss -Hltn 'sport = :{DIRECT_PORT}' | grep -q . && exit 0; sleep 0.1; done; exit 1",
        )
        direct = _measure(lab, peer.address, DIRECT_PORT)
        tunnel = _measure(lab, peer.address, plan.gossip_port)
        by_cipher = {c: _measure_cipher(lab, plan.tunnel_user, c) for c in CIPHERS}
    finally:
        lab.ssh(
            PEER,
            f"systemctl stop {SERVER_UNIT} 2>/dev/null; rm -f {SERVER_FILE}; systemctl start mattermost.service",
            check=False,
        )
    client_address = plan.member(CLIENT).address
    # through the tunnel the peer's own sshd connects; directly, the client does
    if tunnel["peers"] != [peer.address] or direct["peers"] != [client_address]:
        raise RuntimeError(f"unexpected paths: tunnel from {tunnel['peers']}, direct from {direct['peers']}")
    _wait_ping(lab, PEER)
    if any(m["peers"] != [peer.address] for m in by_cipher.values()):
        raise RuntimeError(f"unexpected cipher tunnel paths: {by_cipher}")
    running = lab.ssh(CLIENT, f"tr '\\000' ' ' < /proc/$(systemctl show -p MainPID --value {unit})/cmdline").stdout
    chosen = next((a.split("=", 1)[1].split(",")[0] for a in running.split() if a.startswith("Ciphers=")), None)
    print(f"  the running tunnel's cipher (chosen from this CPU): {chosen or 'OpenSSH default (chacha20-poly1305)'}")
    heal = json.loads(_python(lab, CLIENT, _HEAL, unit, local, KILLS).strip().splitlines()[-1])
    fig = _report(direct, tunnel, heal)
    db, d50 = statistics.median(direct["bulk"]), pct(direct["rtt"], 50)
    print("  per cipher (a second tunnel with the same pinned command line and -o Ciphers=...):")
    for c, m in by_cipher.items():
        tb, t50 = statistics.median(m["bulk"]), pct(m["rtt"], 50)
        print(
            f"    {c:<32} throughput {tb / 2**20:>5.0f} MiB/s (x{tb / db:.2f} of direct {db / 2**20:.0f}), "
            f"round trip p50 {_ms(t50)} (x{t50 / d50:.1f} of direct {_ms(d50)})"
        )
        fig[f"throughput {c} MiB/s"] = tb / 2**20
        fig[f"rtt p50 {c} ms"] = t50 * 1e3
    names = list(by_cipher)
    if len(names) == 2:
        a, b = (statistics.median(by_cipher[n]["bulk"]) for n in names)
        print(f"    {names[1]} vs {names[0]}: x{b / a:.2f} throughput")
    return fig


CIPHERS = ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com")
CIPHER_PORT = 29990
CIPHER_UNIT = "mmtls-bench-cipher"


def _measure_cipher(lab: Any, user: str, cipher: str) -> dict[str, Any]:
    """A second tunnel to the peer from the client's table line (same pins, same account), with
    `cipher` forced and its own loopback port; measured like the real one, then removed."""
    from components import cluster_render

    start = (
        f"line=$(awk -v p={shlex.quote(PEER)} '$1 == p' {cluster_render.TUNNEL_TABLE})\n"
        "set -f; set -- $line; shift 3; bin=$1; shift\n"
        "args=''; for a in \"$@\"; do case $a in 127.0.0.1:*:*:*) a=127.0.0.1:"
        f"{CIPHER_PORT}:${{a#127.0.0.1:*:}};; esac; args=\"$args $a\"; done\n"
        f"systemd-run --unit={CIPHER_UNIT} --collect --uid={shlex.quote(user)} "
        f"--gid={shlex.quote(user)} $bin -o Ciphers={shlex.quote(cipher)} $args\n"
        f"for i in $(seq 100); do ss -Hltn 'sport = :{CIPHER_PORT}' | grep -q . && exit 0; sleep 0.1; done; exit 1\n"
    )
    lab.ssh(CLIENT, start)
    try:
        return _measure(lab, "127.0.0.1", CIPHER_PORT)
    finally:
        lab.ssh(CLIENT, f"systemctl stop {CIPHER_UNIT} 2>/dev/null || true", check=False)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    bench_tunnel()
