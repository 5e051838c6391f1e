"""Fixtures for tests against the real lab hosts (marker ``lab``).

Owns: the session-scoped ``lab`` fixture, which brings the lab up once
(``lab.hosts.Lab.up``; the cached base is built first if needed) from a clean
slate, so every session starts from the seeded "before" state (``LAB_REUSE=1``
keeps an already-running lab instead), and takes it down at the end unless
``LAB_KEEP=1``. Tests are skipped, with the reason, on
a machine that cannot run the lab (not root, no systemd-nspawn, no network
namespaces).

``test_hosts.py`` checks the freshly seeded "before" state, so it runs first
among the lab tests; its last tests leave a freshly brought-up lab behind for
the modules after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import base_image
from lab.hosts import Lab
from tests.helpers.lab_session import session_lock


def _cannot_run_lab() -> str | None:
    """Why this machine cannot run the lab, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, cgroups, systemd-nspawn)"
    try:
        base_image.ensure_vm_tools()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot install debootstrap/systemd-container: {exc}"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are not available: {probe.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests/lab/test_hosts.py before the other lab modules (stable otherwise)."""
    here = Path(__file__).parent
    first = here / "test_hosts.py"
    slots = [i for i, item in enumerate(items) if here in Path(str(item.fspath)).parents]
    ordered = sorted((items[i] for i in slots), key=lambda item: 0 if Path(str(item.fspath)) == first else 1)
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def lab_session_lock() -> Iterator[None]:
    """One lab test session at a time on this machine (tests/helpers/lab_session.py)."""
    with session_lock():
        yield


@pytest.fixture(scope="session")
def lab(lab_session_lock: None) -> Iterator[Lab]:
    """The running lab (3 nodes, proxy, mariadb, postgres) in its seeded "before" state."""
    reason = _cannot_run_lab()
    if reason:
        pytest.skip(reason)
    the_lab = Lab()
    if os.environ.get("LAB_REUSE") != "1":
        the_lab.down()
    the_lab.up(nodes=3, extra=[])
    yield the_lab
    if os.environ.get("LAB_KEEP") != "1":
        the_lab.down()
