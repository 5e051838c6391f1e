"""Earlier versions of the program's own modules, read from git history instead of kept as
frozen copies: an upgrade test runs what hosts were configured with, byte for byte as it was
committed. Needs the repository's history (a clone; the lab's upgrade tests need it too)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """The module `path` (relative to the repository) as it was at `commit`, imported as `name`."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{commit}:{path}"
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
