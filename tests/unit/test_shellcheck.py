"""shellcheck over every .sh file in components/ (the templates and the host helper); the
scripts the renderers produce are checked in tests/program/test_shellcheck_rendered.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from components import cluster_render, database_accounts, database_render
from components.shell import TEMPLATES
from tests.helpers.scripts import ALLOWED_LINES, shellcheck

COMPONENTS = Path(cluster_render.__file__).parent
SH_FILES = sorted(COMPONENTS.rglob("*.sh"))
# A template's parameters are assigned by its renderer (shell.script / the `name='value'` head
# it puts first), so in the file alone they look unassigned or unused: the rendered scripts are
# checked without this exclusion. A number placeholder (`[ "$n" -ge @wait_seconds@ ]`) is a
# number only once rendered.
TEMPLATE_ONLY = ["SC2154", "SC2034", "SC2170"]


def test_every_sh_file_is_found() -> None:
    names = {p.name for p in SH_FILES}
    assert {"mmtls-helper.sh", "cluster-helper.sh", "node-preflight.sh", "dsn-checks.sh"} <= names
    assert all(p.parent in (TEMPLATES, COMPONENTS / "scripts") for p in SH_FILES), SH_FILES


@pytest.mark.parametrize("path", SH_FILES, ids=lambda p: p.name)
def test_shellcheck_finds_nothing_in_the_file(path: Path) -> None:
    exclude = TEMPLATE_ONLY if path.parent == TEMPLATES else []
    assert shellcheck({path.name: path.read_text()}, exclude=exclude) == []


def test_every_allowed_line_still_exists() -> None:
    """An allowance for a line that is gone would silently cover a new one (the scripts are the
    .sh files and the renderers' text)."""
    sources = [*SH_FILES, *COMPONENTS.glob("*.py")]
    lines = {line.strip() for p in sources for line in p.read_text().splitlines()}
    for _code, text in ALLOWED_LINES:
        assert any(text in line for line in lines), text


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


def test_database_scripts_the_lab_preview_leaves_unknown_are_clean() -> None:
    """The user, REQUIRE SSL and rotation scripts run on values known only at apply time, so the
    replay's preview (tests/program/test_shellcheck_rendered.py) does not render them: here with
    representative values, for both engines and every variant."""
    scripts: dict[str, str] = {}
    for engine in ("mysql", "postgres"):
        client = database_render.server_control(engine, service="db", port=5432, config_dir="/etc/db").local_sql
        gitlab = {"user": "gitlab", "database": "gitlab_mm"}
        scripts[f"{engine} user apply"] = database_render.render_user_apply(
            engine, user="mmuser", database="mattermost", client=client
        )
        scripts[f"{engine} user restore"] = database_render.render_user_restore(engine, user="mmuser", client=client)
        scripts[f"{engine} rotation"] = database_render.render_rotation_script(who="database user mmuser", client=client)
        scripts[f"{engine} rotation 2"] = database_render.render_rotation_script(who="x", client=client, sql_line=2)
        if engine == "postgres":
            scripts["gitlab user apply"] = database_render.render_user_apply(
                engine, client=client, before=database_render.render_gitlab_database_create(**gitlab), **gitlab
            )
            scripts["gitlab user restore"] = database_render.render_user_restore(
                engine, user="gitlab", client=client, before=database_render.render_gitlab_database_drop(**gitlab)
            )
        else:
            for restore in (False, True):
                scripts[f"require ssl {restore}"] = database_render.render_mysql_require_ssl(
                    user="mmuser", client=client, restore=restore
                )
            scripts["accounts read"] = database_accounts.render_accounts_read(user="mmuser", client=client)
    assert shellcheck(scripts) == []


_SHELL = re.compile(r"set -eu|; (then|do)\n|(^|\n) *(fi|done|esac)\n")


def _shell_strings(tree: ast.AST) -> list[str]:
    """The string constants (f-string parts too, docstrings not) that hold a compound command."""
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs and _SHELL.search(n.value)
    ]


def test_multi_line_shell_lives_in_templates() -> None:
    """No component module assembles an if/for/while/case or a `set -eu` script from strings."""
    found = {p.name: _shell_strings(ast.parse(p.read_text())) for p in sorted(COMPONENTS.glob("*.py"))}
    assert "cluster_render.py" in found and "remote_files.py" in found
    assert {k: v for k, v in found.items() if v} == {}


def test_the_shell_check_finds_a_script_in_python() -> None:
    """It can fail: an f-string if-block, a loop's end on its own, `set -eu`; not a docstring."""
    for code in ('x = f"if [ -e {p} ]; then\\n  rm -f {p}\\n"', 'x = "  done\\n"', "x = 'set -eu\\n'"):
        assert _shell_strings(ast.parse(code)), code
    assert _shell_strings(ast.parse('def f():\n    """if x; then\n    fi\n"""\n')) == []
