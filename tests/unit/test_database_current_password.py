"""The site's current database password, read on a node at apply time (components/database.py
keeps it unless dbPassword or database.rotatePassword says otherwise).

The read script RUNS (dash and bash) against a temp tree with a stub `systemctl` whose MainPID is
a real process started with MM_* variables, so /proc/<pid>/environ is the kernel's own; the
parser is fed what the script printed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import database_render as r

PW = "s1te:Pass@word/#in use"


def _pg(user: str = "mmuser", pw: str = PW) -> str:
    from urllib.parse import quote

    return f"postgres://{user}:{quote(pw, safe='')}@10.0.0.5:5432/mattermost?sslmode=disable&connect_timeout=10"


def _run(tmp: Path, shell: str, *, running_env: dict[str, str] | None, env_file: str | None, config: dict | None) -> str:
    install = tmp / "opt/mattermost"
    (install / "config").mkdir(parents=True, exist_ok=True)
    cfg_file = install / "config/config.json"
    if config is not None:
        cfg_file.write_text(json.dumps(config))
    elif cfg_file.exists():
        cfg_file.unlink()
    envf = tmp / "etc/mattermost-tls/mattermost.env"
    envf.parent.mkdir(parents=True, exist_ok=True)
    if env_file is not None:
        envf.write_text(env_file)
    elif envf.exists():
        envf.unlink()
    proc = None
    pid = "0"
    if running_env is not None:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env={**running_env, "PATH": os.environ["PATH"]})
        pid = str(proc.pid)
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "systemctl"
    stub.write_text(f"#!/bin/sh\n[ \"$*\" = 'show -p MainPID --value mattermost.service' ] || exit 3\necho {pid}\n")
    stub.chmod(0o755)
    script = "set -eu\n" + r.render_read_current_dsn(unit="mattermost", install_dir=str(install), env_file=str(envf))
    try:
        res = subprocess.run(
            [shell, "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=30
        )
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    assert res.returncode == 0, res.stderr
    return res.stdout.rstrip("\n")  # pulumi-command trims one trailing newline


@pytest.fixture(params=["dash", "bash"])
def shell(request: pytest.FixtureRequest) -> str:
    return request.param


def test_config_json_of_a_node_that_never_ran_our_env(tmp_path: Path, shell: str) -> None:
    out = _run(tmp_path, shell, running_env=None, env_file=None, config={"SqlSettings": {"DataSource": _pg()}})
    assert r.current_password("postgres", "mmuser", out, node="mm1") == PW


def test_the_running_servers_environment_wins(tmp_path: Path, shell: str) -> None:
    env = {"MM_SQLSETTINGS_DATASOURCE": _pg(pw="from-the-process")}
    out = _run(tmp_path, shell, running_env=env, env_file=None, config={"SqlSettings": {"DataSource": _pg()}})
    assert r.current_password("postgres", "mmuser", out, node="mm1") == "from-the-process"


def test_our_environment_file_when_not_running(tmp_path: Path, shell: str) -> None:
    from components import node_render

    env_text = node_render.render_env_file({"MM_SQLSETTINGS_DATASOURCE": _pg(pw='q"uo$te`d\\pw'), "MM_X": "y"})
    out = _run(tmp_path, shell, running_env=None, env_file=env_text, config={"SqlSettings": {"DataSource": _pg()}})
    assert r.current_password("postgres", "mmuser", out, node="mm1") == 'q"uo$te`d\\pw'


def test_mysql_dsn_password_is_taken_raw_like_go_sql_driver() -> None:
    dsn = "mmuser:p@ss:w/rd@tcp(10.0.0.5:3306)/mattermost?charset=utf8mb4,utf8"
    assert r.dsn_credentials("mysql", dsn) == ("mmuser", "p@ss:w/rd")


def test_postgres_key_value_form() -> None:
    assert r.dsn_credentials("postgres", "host=h user=mmuser password='it''s\\' x' dbname=m") [0] == "mmuser"
    assert r.dsn_credentials("postgres", "host=h user=mmuser password=plain dbname=m") == ("mmuser", "plain")


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "no SqlSettings.DataSource found"),
        ("\n\n" + base64.b64encode(json.dumps({"SqlSettings": {"DataSource": _pg(user="other")}}).encode()).decode(), "logs in as 'other'"),
        ("\n\n" + base64.b64encode(b"{not json").decode(), "not valid JSON"),
        (
            base64.b64encode(f"MM_SQLSETTINGS_DATASOURCE={_pg(pw='a')}\nmm_sqlsettings_datasource_x={_pg(pw='b')}".encode()).decode(),
            "more than one",
        ),
    ],
)
def test_what_cannot_be_found_fails_naming_the_fix_never_the_value(stdout: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        r.current_password("postgres", "mmuser", stdout, node="mm1")
    assert "dbPassword" in str(err.value) and "rotatePassword" in str(err.value)
    assert PW not in str(err.value) and "postgres://" not in str(err.value)


def test_a_dsn_of_the_other_engine_is_refused() -> None:
    config = base64.b64encode(json.dumps({"SqlSettings": {"DataSource": _pg()}}).encode()).decode()
    with pytest.raises(ValueError, match="is a postgres one, not for database.engine 'mysql'"):
        r.current_password("mysql", "mmuser", "\n\n" + config, node="mm1")


def test_datasource_replicas_are_not_the_datasource() -> None:
    proc = base64.b64encode(f"MM_SQLSETTINGS_DATASOURCEREPLICAS={_pg(pw='replica')}\n".encode()).decode()
    with pytest.raises(ValueError, match="no SqlSettings.DataSource found") as err:
        r.current_password("postgres", "mmuser", proc + "\n\n", node="mm1")
    assert "replica" not in str(err.value)
