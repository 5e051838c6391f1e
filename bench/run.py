"""Benchmarks: prints figures, asserts nothing (targets live here, not in timed tests).

    python bench/run.py                 # everything (the lab parts need root and the lab)
    python bench/run.py --only program  # program evaluation under mocks only

- program: evaluation time, peak memory and resource count of the real program under the mock
  runtime for 3, 10, 30 and 50 nodes (prod-like config, cluster encryption on), each in a fresh
  process, so the growth with cluster size is visible.
- lab: fresh converge time, no-op `up` time and SSH sessions per run on the 3-node lab, and destroy.
- tunnel: p50/p99 latency and throughput through a cluster SSH tunnel vs direct on the same lab
  link, and seconds for systemd to bring back a killed tunnel.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_EVAL = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lab.replay import Secret, evaluate

def pub():
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

n = int(sys.argv[2])
key = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
nodes = [{"name": f"mm{i}", "address": f"10.20.{i // 200}.{i % 200 + 10}", "ssh": {"hostKey": pub()}} for i in range(1, n + 1)]
config = {"sshPrivateKey": Secret(key), "nodes": nodes, "cluster": {"enabled": True},
          "database": {"engine": "postgres", "address": "10.20.9.1", "ssh": {"hostKey": pub()}},
          "mattermost": {"version": "11.1.0"}}
t0 = time.perf_counter()
ev = evaluate(sys.argv[1], "prod", config=config)
took = time.perf_counter() - t0
print(json.dumps({"nodes": n, "seconds": round(took, 2), "resources": len(ev.resources),
                  "commands": len(ev.commands()), "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def bench_program(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    for n in sizes:
        r = subprocess.run([sys.executable, "-c", _EVAL, str(ROOT), str(n)], capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            print(f"  {n} nodes: failed: {r.stderr.strip()[-400:]}")
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {row['nodes']:>3} nodes: {row['seconds']:>6.2f} s, {row['resources']:>5} resources "
            f"({row['commands']} remote commands), peak RSS {row['max_rss_mib']} MiB"
        )
    return rows


def bench_lab() -> dict[str, float]:
    import fcntl

    from lab import replay
    from lab.hosts import Lab

    # one lab per machine: wait for any test session or other benchmark to finish with it
    with open("/run/mmtls-lab-session.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _bench_lab(Lab(), replay)


def _bench_lab(lab, replay) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lab.down()
    t0 = time.monotonic()
    lab.up(nodes=3, extra=[])
    boot = time.monotonic() - t0
    state = ROOT / ".lab" / "state" / "bench.json"
    state.unlink(missing_ok=True)
    first = replay.up(ROOT, "lab", state_path=state)
    again = replay.up(ROOT, "lab", state_path=state)
    gone = replay.destroy(ROOT, "lab", state_path=state)
    figures = {
        "lab boot (cached base)": boot,
        "fresh up": first.duration,
        "fresh up SSH sessions": first.ssh_sessions,
        "no-op up": again.duration,
        "no-op up SSH sessions": again.ssh_sessions,
        "destroy": gone.duration,
        "destroy SSH sessions": gone.ssh_sessions,
    }
    for k, v in figures.items():
        print(f"  {k}: {v:.1f}" + ("" if "sessions" in k else " s"))
    assert first.ok and again.ok and gone.ok, "a lab run failed; figures above are not meaningful"
    return figures


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["program", "lab", "tunnel"])
    ap.add_argument("--sizes", default="3,10,30,50")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {platform.python_version()}, "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    if args.only in (None, "program"):
        print("program evaluation under mocks (cluster encryption on):")
        rows = bench_program([int(s) for s in args.sizes.split(",")])
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            print(f"  growth {a['nodes']}->{b['nodes']} nodes: x{b['seconds'] / a['seconds']:.1f} time, "
                  f"x{b['resources'] / a['resources']:.1f} resources")
    if args.only in (None, "lab"):
        print("lab (3 nodes, postgres):")
        bench_lab()
    if args.only in (None, "tunnel"):
        from bench.tunnel import bench_tunnel

        print("cluster tunnel vs direct (lab link):")
        bench_tunnel()
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["pct", "statistics"]
