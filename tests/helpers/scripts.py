"""Running rendered shell scripts the way the program's commands run them (`sh -c`, the payload
on stdin), and fingerprinting the file trees they change."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

SHELLS = [s for s in ("/bin/sh", "/bin/dash", "/bin/bash") if Path(s).exists()]
"""Every POSIX shell a host may run the scripts with: each script must behave alike in all."""


def sh(
    script: str,
    stdin: str = "",
    shell: str = "/bin/sh",
    env: Mapping[str, str] | None = None,
    timeout: int = 120,
) -> subprocess.CompletedProcess[str]:
    """`shell -c script` with `stdin`; `env` replaces the environment when given."""
    return subprocess.run(
        [shell, "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
    )


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every path below `root` with its content hash (or link target, or "dir") and mode: two
    equal digests mean byte-identical trees."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link:" + os.readlink(p), 0)
        elif p.is_file():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        else:
            out[str(p)] = ("dir", p.stat().st_mode)
    return out
