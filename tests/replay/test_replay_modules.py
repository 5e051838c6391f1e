"""The replay forgets the program's own modules between runs but never installed packages, even
when the virtualenv lives inside the project (as Pulumi.yaml's `virtualenv: venv` puts it)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from lab.replay.runtime import forget_program_modules


def test_in_tree_venv_packages_stay_and_program_modules_go(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "mmtls_fake_provider.py").write_text("REGISTERED = True\n")
    (tmp_path / "mmtls_fake_component.py").write_text("X = 1\n")
    sys.path[:0] = [str(tmp_path), str(site)]
    before = set(sys.modules)
    try:
        importlib.import_module("mmtls_fake_provider")
        importlib.import_module("mmtls_fake_component")
        forget_program_modules(tmp_path, before)
        assert "mmtls_fake_provider" in sys.modules, "an installed package must not be imported twice"
        assert "mmtls_fake_component" not in sys.modules, "the program's own module is imported afresh"
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(site))
        sys.modules.pop("mmtls_fake_provider", None)
        sys.modules.pop("mmtls_fake_component", None)
