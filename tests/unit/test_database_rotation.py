"""Password rotation without a failed login (database_render "password rotation"), on throwaway
MariaDB and PostgreSQL servers (the fixtures of tests/unit/test_database_render.py).

During a rotation both logins work: the site's user with its old password until every node
switched (then it is retired), the rotation's login with the new password from before the first
node switches. A second rotation keeps the first login working until its delete. Destroy, in
its order (retire undone, nodes back on the old login, the rotation's login dropped, the user
restored), gives back exactly the user the site had.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components import database_render as r
from components.remote_files_render import encode_bundle, render_block_apply, render_block_restore, strict
from tests.helpers.db_servers import Server, user_state
from tests.helpers.scripts import run_script

OLD = "before-pw"


def test_the_login_name_fits_every_server_or_names_the_key() -> None:
    assert r.rotation_login("postgres", "mmuser", "ab12cd34") == "mmuser_ab12cd34"
    with pytest.raises(ValueError, match=r"database.user: .* at most 23 characters"):
        r.rotation_login("mysql", "u" * 24, "ab12cd34")
    assert r.rotation_login("mysql", "u" * 23, "ab12cd34")
    with pytest.raises(ValueError, match="suffix"):
        r.rotation_login("mysql", "mmuser", "AB12CD34")


def test_hba_block_lets_members_in_over_tls_and_refuses_the_login_in_plain() -> None:
    block = r.render_rotation_hba_block("mattermost", "mmuser", "mmuser_ab12cd34", ["10.0.0.1", "10.0.0.1", "::1"])
    assert block.splitlines()[1:] == [
        'hostssl "mattermost" +mmuser 10.0.0.1/32 scram-sha-256',
        'hostssl "mattermost" +mmuser ::1/128 scram-sha-256',
        'hostnossl all "mmuser_ab12cd34" all reject',
    ]


def test_the_password_travels_only_in_the_sql_never_in_the_script() -> None:
    script = r.render_rotation_script(who="w", client="psql")
    sql = r.render_rotation_login_sql("postgres", user="mmuser", login="mmuser_ab12cd34", database="mattermost", password="s3cr'et")
    assert "s3cr''et" in sql and "s3cr" not in script
    assert "SET role = 'mmuser'" in sql, "objects the login creates belong to the user"


def _run(srv: Server, sql_lines: list[str], line: int = 1) -> subprocess.CompletedProcess[str]:
    script = strict(r.render_rotation_script(who="rotation", client=srv.control.local_sql, state_dir=srv.state, sql_line=line))
    return run_script(script, encode_bundle(["", *sql_lines]))


def _login(srv: Server, login: str, password: str) -> list[str]:
    return [
        r.render_rotation_login_sql(srv.engine, user="mmuser", login=login, database="mattermost", password=password),
        r.render_rotation_drop_sql(srv.engine, user="mmuser", login=login),
    ]


def _retire(srv: Server) -> list[str]:
    return [r.render_rotation_retire_sql(srv.engine, user="mmuser"), r.render_rotation_retire_sql(srv.engine, user="mmuser", restore=True)]


def _ok(srv: Server, user: str, password: str) -> bool:
    return srv.login(user, password, tls=True).returncode == 0


@pytest.mark.parametrize("tls_on", ["mysql_server", "pg_server"], indirect=True)
def test_two_rotations_and_destroy_never_leave_a_node_without_a_login(tls_on: Server) -> None:
    srv = tls_on
    assert srv.user_apply("mmuser", OLD, "tok").returncode == 0  # the site's user as it runs today
    before = user_state(srv, "mmuser")
    hba = f"{srv.config_dir}/pg_hba.conf"

    def hba_apply(login: str) -> None:
        if srv.engine == "postgres":
            block = r.render_rotation_hba_block("mattermost", "mmuser", login, ["127.0.0.1"])
            script = render_block_apply("db-login-hba", hba, position="top", activate=srv.control.reload, state_dir=srv.state)
            res = run_script(script, encode_bundle([block]))
            assert res.returncode == 0, res.stderr

    # the user command during a rotation leaves the user's password alone
    script = strict(r.render_user_apply(srv.engine, user="mmuser", database="mattermost", client=srv.control.local_sql, state_dir=srv.state))
    res = run_script(script, r.user_stdin("tok", "", r.render_rotation_owner_sql(srv.engine, user="mmuser", database="mattermost")))
    assert res.returncode == 0, res.stderr
    assert user_state(srv, "mmuser") == before

    # phase 1: the new login next to the old one
    hba_apply("mmuser_aaaa1111")
    one = _login(srv, "mmuser_aaaa1111", "new pw 'one'")
    for _ in range(2):  # safe to run twice
        res = _run(srv, one)
        assert res.returncode == 0, res.stderr
    assert _ok(srv, "mmuser", OLD), "nodes not switched yet keep logging in"
    assert _ok(srv, "mmuser_aaaa1111", "new pw 'one'")
    assert srv.login("mmuser_aaaa1111", "new pw 'one'", tls=False).returncode != 0, "the login is TLS only"
    # what the new login creates is the user's (PostgreSQL), so the login can go later
    made = srv.login("mmuser_aaaa1111", "new pw 'one'", tls=True, sql="CREATE TABLE rotated (x int)")
    assert made.returncode == 0, made.stderr
    if srv.engine == "postgres":
        owner = srv.login("mmuser_aaaa1111", "new pw 'one'", tls=True, sql="SELECT tableowner FROM pg_tables WHERE tablename = 'rotated'")
        assert owner.stdout.split() == ["mmuser"], owner.stdout + owner.stderr

    # phase 2: the old login retired; open sessions are not cut (not asserted: no session here)
    assert _run(srv, _retire(srv)).returncode == 0
    assert not _ok(srv, "mmuser", OLD), "the old password is dropped after the switch"
    assert _ok(srv, "mmuser_aaaa1111", "new pw 'one'")

    # a second rotation: create before delete, the first login works until its delete
    hba_apply("mmuser_bbbb2222")
    two = _login(srv, "mmuser_bbbb2222", "new pw two")
    assert _run(srv, two).returncode == 0
    assert _ok(srv, "mmuser_aaaa1111", "new pw 'one'") and _ok(srv, "mmuser_bbbb2222", "new pw two")
    assert srv.login("mmuser_bbbb2222", "new pw two", tls=True, sql="DROP TABLE rotated").returncode == 0
    assert _run(srv, one, line=2).returncode == 0  # the replaced login's delete, last in that up
    assert not _ok(srv, "mmuser_aaaa1111", "new pw 'one'") and _ok(srv, "mmuser_bbbb2222", "new pw two")

    # destroy: retire undone first (nodes go back to the old login), then the login dropped
    assert _run(srv, _retire(srv), line=2).returncode == 0
    assert _ok(srv, "mmuser", OLD) and _ok(srv, "mmuser_bbbb2222", "new pw two")
    res = _run(srv, two, line=2)
    assert res.returncode == 0, res.stderr
    assert not _ok(srv, "mmuser_bbbb2222", "new pw two")
    if srv.engine == "postgres":
        res = run_script(render_block_restore("db-login-hba", hba, restore_activate=srv.control.reload, state_dir=srv.state))
        assert res.returncode == 0, res.stderr
    assert user_state(srv, "mmuser") == before
    assert srv.user_restore("mmuser", "tok").returncode == 0
    assert not Path(srv.state).exists() or not any(Path(srv.state).glob("tmp.*"))


@pytest.mark.parametrize("tls_on", ["mysql_server"], indirect=True)
def test_retiring_locks_every_account_the_nodes_log_in_through(tls_on: Server) -> None:
    """A host-specific account ('mmuser'@'127.0.0.1' beside '%') wins the nodes' login
    (components/database_accounts.py): retiring only '%' left the old password working."""
    srv = tls_on
    assert srv.user_apply("mmuser", OLD, "tok").returncode == 0
    srv.admin(f"CREATE USER 'mmuser'@'127.0.0.1' IDENTIFIED BY '{OLD}'; GRANT ALL ON mattermost.* TO 'mmuser'@'127.0.0.1'")
    try:
        only_any = [r.render_rotation_retire_sql("mysql", user="mmuser", restore=x) for x in (False, True)]
        assert _run(srv, only_any).returncode == 0
        assert _ok(srv, "mmuser", OLD), "the '%'-only retire misses the account that wins the login"
        assert _run(srv, only_any, line=2).returncode == 0
        both = [
            r.render_rotation_retire_sql("mysql", user="mmuser", restore=x, mysql_hosts=["%", "127.0.0.1"])
            for x in (False, True)
        ]
        assert _run(srv, both).returncode == 0
        assert not _ok(srv, "mmuser", OLD)
        assert _run(srv, both, line=2).returncode == 0
        assert _ok(srv, "mmuser", OLD), "destroy lets the site's accounts in again"
    finally:
        srv.admin("DROP USER IF EXISTS 'mmuser'@'127.0.0.1'")
