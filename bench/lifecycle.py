"""Failed requests per lifecycle step, under the database-touching load (lab; needs root).

    sudo venv/bin/python bench/lifecycle.py      # or: bench/run.py --only lifecycle

Runs exactly the tests of tests/lab/test_zero_failures.py (first up, second up, add a node,
remove it, destroy; then up, rotate the database password, destroy; the same rotation on
MariaDB) on one lab boot, 3 nodes with the cluster mesh on, the BrowserLoad through NGINX for the whole of each step,
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
    from tests.helpers.lab_session import SESSION_LOCK
    from tests.lab import test_zero_failures as t

    with open(SESSION_LOCK, "a") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab()
        try:
            life = t.Lifecycle(lab, Path(tmp))
            life.boot()
            # the test functions themselves (each asserts its 0: a failed one is printed, not fatal)
            for test in (
                t.test_first_up, t.test_second_up, t.test_adding_a_node, t.test_removing_a_node, t.test_destroy,
                t.test_rotating_the_database_password, t.test_destroy_after_a_rotation,
                t.test_mariadb_rotation_and_its_destroy,
            ):
                try:
                    test(life)
                except AssertionError as e:
                    print(f"{test.__name__}: {str(e).splitlines()[0][:200]}")
        finally:
            lab.down()
            fcntl.flock(lock, fcntl.LOCK_UN)
    FIGURES = t.FIGURES
    print(f"{'step':40} {'requests':>8} {'failed':>6} {'seconds':>7}")
    for f in FIGURES:
        print(f"{f.step:40} {f.requests:8d} {f.failed:6d} {f.seconds:7.1f}")


if __name__ == "__main__":
    bench_lifecycle()
