"""Fixtures for tests against the real lab hosts (marker ``lab``).

Owns: the session-scoped ``lab`` fixture, which brings the lab up once
(``lab.hosts.Lab.up``; the cached base is built first if needed) from a clean
slate, so every session starts from the seeded "before" state (``LAB_REUSE=1``
keeps an already-running lab instead), and takes it down at the end unless
``LAB_KEEP=1``. Tests are skipped, with the reason, on
a machine that cannot run the lab (not root, no systemd-nspawn, no network
namespaces).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from lab import _base
from lab.hosts import Lab


def _cannot_run_lab() -> str | None:
    """Why this machine cannot run the lab, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, cgroups, systemd-nspawn)"
    try:
        _base.ensure_vm_tools()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot install debootstrap/systemd-container: {exc}"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are not available: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
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
