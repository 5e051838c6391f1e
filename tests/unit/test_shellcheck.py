"""shellcheck over every .sh file in components/ (the templates and the host helper); the
scripts the renderers produce are checked in tests/program/test_shellcheck_rendered.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import cluster_render
from components.shell import TEMPLATES
from tests.helpers.scripts import ALLOWED_LINES, shellcheck

COMPONENTS = Path(cluster_render.__file__).parent
SH_FILES = sorted(COMPONENTS.rglob("*.sh"))
# A template's parameters are assigned by its renderer (shell.script / the `name='value'` head
# it puts first), so in the file alone they look unassigned or unused: the rendered scripts are
# checked without this exclusion.
TEMPLATE_ONLY = ["SC2154", "SC2034"]


def test_every_sh_file_is_found() -> None:
    names = {p.name for p in SH_FILES}
    assert {"mmtls-helper.sh", "cluster-helper.sh", "node-preflight.sh", "dsn-checks.sh"} <= names
    assert all(p.parent in (TEMPLATES, COMPONENTS / "scripts") for p in SH_FILES), SH_FILES


@pytest.mark.parametrize("path", SH_FILES, ids=lambda p: p.name)
def test_shellcheck_finds_nothing_in_the_file(path: Path) -> None:
    exclude = TEMPLATE_ONLY if path.parent == TEMPLATES else []
    assert shellcheck({path.name: path.read_text()}, exclude=exclude) == []


def test_every_allowed_line_still_exists() -> None:
    """An allowance for a line that is gone would silently cover a new one."""
    lines = {line.strip() for p in SH_FILES for line in p.read_text().splitlines()}
    for _code, start in ALLOWED_LINES:
        assert any(line.startswith(start) for line in lines), start


@pytest.mark.parametrize(
    ("broken", "code"),
    [
        ('if [ $mtm_n -ge 3 ]; then echo "$mtm_n"; fi\n', "SC2086"),  # unquoted, splits and globs
        ("for f in $(ls /etc); do echo \"$f\"; done\n", "SC2045"),
        ('x=1\nif [ "$x" == 1 ]; then echo yes; fi\n', "SC3014"),  # bash-only in sh
        ('echo "$undefined_name"\n', "SC2154"),
    ],
)
def test_a_broken_script_is_reported(broken: str, code: str) -> None:
    """The check can fail: each deliberately broken line in an otherwise clean rendered script."""
    good = cluster_render.render_firewall_activate()
    assert shellcheck({"good": good}) == []
    findings = shellcheck({"broken": good + broken})
    assert findings and all(f.startswith("broken:") for f in findings)
    assert any(f"[{code}]" in f for f in findings), findings
