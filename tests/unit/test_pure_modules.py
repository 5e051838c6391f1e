"""The pure decisions take plain values and never import Pulumi (STYLE.md lesson 5, issue 12): each
module below loads, with everything it imports, without `pulumi` or any `pulumi_*` provider SDK,
so it is tested without a runtime and cannot register a resource by accident. The resource
halves (remote_files, host_helper, the components) import these, never the other way round."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE = (
    "components.cluster_render",
    "components.config",
    "components.database_accounts",
    "components.database_render",
    "components.db_replicas_render",
    "components.gitlab_render",
    "components.host_helper_render",
    "components.nginx_live",
    "components.nginx_render",
    "components.node_render",
    "components.passwords",
    "components.platform",
    "components.remote_files_render",
    "components.shell",
    "components.ssh_keys",
    "components.teleport_render",
    "components.tls_files",
)

CODE = (
    "import json, sys\n"
    "import {module}\n"
    "print(json.dumps([m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi.') or m.startswith('pulumi_')]))\n"
)


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_pulumi(module: str) -> None:
    """In a fresh interpreter: this process has Pulumi loaded by other tests."""
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module=module)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [], f"{module} loads Pulumi"


def test_every_renderer_is_checked() -> None:
    """A new `*_render.py` is pure by its name: it belongs in PURE."""
    renderers = {f"components.{p.stem}" for p in (ROOT / "components").glob("*_render.py")}
    assert len(renderers) >= 8 and renderers <= set(PURE), sorted(renderers - set(PURE))


def test_the_check_sees_pulumi_when_it_is_loaded() -> None:
    """It can fail: a module that does import Pulumi is reported."""
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module="components.remote_files")], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert {"pulumi", "pulumi_command"} <= set(json.loads(out.stdout))
