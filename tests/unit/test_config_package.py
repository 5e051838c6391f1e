"""The config package stays a schema: reading it imports no renderer (the password rule is a
plain-values module) and nothing of the lab (the inventory merge is lab/stack_inventory.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_config_imports_no_renderer_and_nothing_of_the_lab() -> None:
    loaded = _modules_after("import components.config")
    assert "components.config.schema" in loaded  # the probe sees the package's own modules
    assert not {m for m in loaded if m.endswith("_render") or m.startswith("lab")}, sorted(loaded)


def test_a_lab_stack_merges_its_inventory_through_the_lab(tmp_path: Path) -> None:
    loaded = _modules_after(
        "from components.config import parse\n"
        "try:\n    parse({'inventoryFile': 'missing.json'}, base_dir=__import__('pathlib').Path('/nonexistent'))\n"
        "except Exception as e:\n    assert 'inventoryFile' in str(e), e"
    )
    assert "lab.stack_inventory" in loaded
