"""The one lab session lock: there is one lab per machine, and a second session's down/up would
pull the hosts out from under the first, so every lab user (a lab pytest session through the
`lab` fixture of tests/lab/conftest.py, the lab benchmarks) holds this lock while it runs."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

SESSION_LOCK = Path(os.environ.get("MMTLS_LAB_SESSION_LOCK", "/run/mmtls-lab-session.lock"))


@contextlib.contextmanager
def session_lock() -> Iterator[None]:
    """Hold the lab session lock (others wait here)."""
    with open(SESSION_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
