"""Helpers for testing with the replay engine: throwaway projects.

Owns writing a minimal Pulumi project (Pulumi.yaml, __main__.py, optional stack file) into a
directory, so engine tests run real programs without the real project.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml


def write_project(
    directory: str | Path,
    program: str,
    *,
    name: str = "demo",
    stack: str = "dev",
    config: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a project whose __main__.py is `program` (dedented); returns the directory."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text(f"name: {name}\nruntime: python\n")
    (root / "__main__.py").write_text(textwrap.dedent(program).lstrip())
    if config is not None:
        (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root
