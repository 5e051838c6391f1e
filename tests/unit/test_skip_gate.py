"""The suite's skip gate (tests/conftest.py): a skipped test fails the run unless allowed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _run(tmp_path: Path, body: str, allow: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_one.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "MMTLS_ALLOW_SKIPS"}
    if allow:
        env["MMTLS_ALLOW_SKIPS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SKIPS = "import pytest\n\ndef test_ok():\n    pass\n\ndef test_skips():\n    pytest.skip('no server here')\n"


def test_a_skip_fails_the_run_and_names_the_test_and_reason(tmp_path: Path) -> None:
    r = _run(tmp_path, SKIPS, allow=False)
    assert r.returncode == 1, r.stdout
    assert "unexpected skips" in r.stdout and "test_one.py::test_skips: Skipped: no server here" in r.stdout


def test_skips_pass_when_allowed_and_a_clean_run_passes(tmp_path: Path) -> None:
    assert _run(tmp_path, SKIPS, allow=True).returncode == 0
    clean = _run(tmp_path, "def test_ok():\n    pass\n", allow=False)
    assert clean.returncode == 0 and "unexpected skips" not in clean.stdout


def test_a_failure_keeps_its_own_exit_status(tmp_path: Path) -> None:
    r = _run(tmp_path, SKIPS + "\ndef test_fails():\n    assert False\n", allow=False)
    assert r.returncode == 1 and "1 failed" in r.stdout
