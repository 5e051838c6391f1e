"""Failed requests per lifecycle step, under the database-touching load (lab; needs root).

    sudo venv/bin/python bench/lifecycle.py      # or: bench/run.py --only lifecycle

Runs exactly the tests of tests/lab/test_zero_failures.py (first up, second up, add a node,
remove it, destroy; then up, rotate the database password, destroy; the same rotation on
MariaDB) on one lab boot, 3 nodes with the cluster mesh on, the BrowserLoad through NGINX for
the whole of each step; then exactly the tests of tests/lab/test_ca_rotation.py on a fresh boot
(renew the certificates, the CA rotation's stage, switch and finish, the up/audit/destroy after
it). Every step runs under tools.load.under_load; prints one row per step (the README's figures
table: requests, failed, seconds). Prints figures, asserts nothing. Takes the lab session lock
like a lab pytest session (other lab runs wait), and takes the lab down at the end.
"""

from __future__ import annotations

import fcntl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _run(tests: list[Callable[..., None]], *args: object) -> None:
    """The test functions themselves, in order (each asserts its 0). A failed assertion is
    printed, not fatal: its step's figure is recorded and the next step runs. Any other error
    (e.g. the load a failed step stopped) ends the sequence, since each step builds on the one
    before; the table then shows what was measured."""
    for i, test in enumerate(tests):
        try:
            test(*args[: test.__code__.co_argcount])
        except AssertionError as e:
            print(f"{test.__name__} FAILED: {(str(e).splitlines() or ['assertion failed'])[0][:300]}")
        except Exception as e:  # noqa: BLE001 - printed; the lab still goes down, the table still prints
            print(f"{test.__name__} ERROR: {type(e).__name__}: {str(e)[-300:]}")
            print("  not run after it:", ", ".join(t.__name__ for t in tests[i + 1 :]) or "-")
            return


def bench_lifecycle() -> None:
    from lab.hosts import Lab
    from tests.helpers.lab_session import SESSION_LOCK
    from tests.lab import test_ca_rotation as ca
    from tests.lab import test_zero_failures as t
    from tools.load import figures_table

    figures: list[Any] = []
    with open(SESSION_LOCK, "a") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab()
        try:
            life = t.Lifecycle(lab, Path(tmp))
            life.boot()
            _run([
                t.test_first_up, t.test_second_up, t.test_adding_a_node, t.test_removing_a_node, t.test_destroy,
                t.test_rotating_the_database_password, t.test_destroy_after_a_rotation,
                t.test_mariadb_rotation_and_its_destroy,
            ], life)
            figures += life.figures
            rotation = ca.Ctx(lab, Path(tmp) / "carotate.json")
            rotation.boot()
            try:
                _run([
                    ca.test_renewing_the_certificates_fails_no_request,
                    ca.test_switch_without_stage_is_refused_before_any_host_changes,
                    ca.test_stage_trusts_both_cas_everywhere_without_a_failed_request,
                    ca.test_switch_serves_new_certificates_without_a_failed_request,
                    ca.test_finish_drops_the_old_ca_without_a_failed_request,
                    ca.test_after_the_rotation_up_changes_nothing_audit_passes_and_destroy_restores,
                ], rotation, Path(tmp))
            finally:
                rotation.close()
                figures += rotation.figures.values()
        finally:
            lab.down()
            fcntl.flock(lock, fcntl.LOCK_UN)
    print(figures_table(figures))


if __name__ == "__main__":
    bench_lifecycle()
