"""Failed requests per lifecycle step, under the database-touching load (lab; needs root).

    sudo venv/bin/python bench/lifecycle.py      # or: bench/run.py --only lifecycle

Runs exactly the steps tests/lab/test_zero_failures.py asserts (its Lifecycle: first up, second
up, add a node, remove it, destroy; then up, rotate the database password, destroy) on one lab
boot, 3 nodes with the cluster mesh on, the BrowserLoad through NGINX for the whole of each step,
and prints one line per step: requests, failed, seconds. Prints figures, asserts nothing. Takes
the lab session lock like a lab pytest session (other lab runs wait), and takes the lab down at
the end.
"""

from __future__ import annotations

import fcntl
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_lifecycle() -> None:
    from lab.hosts import Lab
    from tests.lab.conftest import SESSION_LOCK
    from tests.lab.test_zero_failures import FIGURES, Lifecycle

    with open(SESSION_LOCK, "a") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab()
        try:
            life = Lifecycle(lab, Path(tmp))
            life.boot()
            for step in (life.first_up, life.second_up, life.add_node, life.remove_node, life.destroy):
                step()
            life.state = Path(tmp) / "rotate.json"
            life.up("up before the rotation")
            life.rotate_password()
            life.destroy("destroy after a rotation")
        finally:
            lab.down()
            fcntl.flock(lock, fcntl.LOCK_UN)
    print(f"{'step':32} {'requests':>8} {'failed':>6} {'seconds':>7}")
    for f in FIGURES:
        print(f"{f.step:32} {f.requests:8d} {f.failed:6d} {f.seconds:7.1f}")


if __name__ == "__main__":
    bench_lifecycle()
