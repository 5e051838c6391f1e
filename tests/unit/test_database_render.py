"""database_render: pure renderers, the scripts run in sh with stand-in commands, and the real
scripts run against throwaway MariaDB and PostgreSQL servers on this machine.

The real-server tests start private instances (temp datadir, 127.0.0.1, a free port, own
socket dir), never the system services, and skip when the servers are not installed or we are
not root. They prove: TLS config applied through remote_files (rollback on a broken key,
restore to byte-identical), a plain login of the Mattermost user refused and a verified TLS
login accepted, the user's backup/restore round trip, running twice, create-before-delete.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from components import database_render as r
from components.remote_files_render import encode_bundle, render_block_apply, render_block_restore, strict
from tests.helpers.db_servers import Server, make_pki, mysql_user_state, pg_user_state, user_state
from tests.helpers.scripts import SHELLS, run_script

HOSTILE = [
    "a'b",
    'a"b',
    "back\\slash",
    "trailing\\",
    "\\'",
    "''",
    "'; DROP USER root; --",
    "$(touch /tmp/mmtls-pwned)`id`",
    "p@ss:w/rd?x=1&y=2#frag%20",
    " spaces  inside ",
    "ünïcødé-пароль-密码",
    "#not a comment",
    "a;b c",
    "-_.~",
]


# ---------------------------------------------------------------- server configuration


def test_mysql_cnf_offers_tls_but_does_not_yet_refuse_plain() -> None:
    text = r.render_mysql_cnf("/etc/mysql/mariadb.conf.d/mattermost-tls")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[mysqld]"
    settings = dict(line.split(" = ", 1) for line in lines[1:])
    assert settings == {
        "ssl_ca": "/etc/mysql/mariadb.conf.d/mattermost-tls/ca.crt",
        "ssl_cert": "/etc/mysql/mariadb.conf.d/mattermost-tls/server.crt",
        "ssl_key": "/etc/mysql/mariadb.conf.d/mattermost-tls/server.key",
        "tls_version": "TLSv1.2,TLSv1.3",
    }


def test_mysql_enforce_cnf_is_its_own_file_that_refuses_plain_tcp() -> None:
    text = r.render_mysql_enforce_cnf()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["[mysqld]", "require_secure_transport = ON"]
    path = r.mysql_enforce_config_path("/etc/mysql/mariadb.conf.d/")
    assert path == "/etc/mysql/mariadb.conf.d/91-mattermost-tls-enforce.cnf"
    # read after the phase-1 file, so it is never shadowed by it
    assert path.rsplit("/", 1)[1] > r.server_config_path("mysql", "/etc/mysql/mariadb.conf.d").rsplit("/", 1)[1]


def test_pg_conf_sets_each_tls_setting_once() -> None:
    text = r.render_pg_conf("/etc/postgresql/15/main/mattermost-tls")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    settings = dict(line.split(" = ", 1) for line in lines)
    assert len(settings) == len(lines) == 5
    assert settings == {
        "ssl": "on",
        "ssl_cert_file": "'/etc/postgresql/15/main/mattermost-tls/server.crt'",
        "ssl_key_file": "'/etc/postgresql/15/main/mattermost-tls/server.key'",
        "ssl_ca_file": "'/etc/postgresql/15/main/mattermost-tls/ca.crt'",
        "ssl_min_protocol_version": "'TLSv1.2'",
    }
    assert set(settings) == set(r.PG_SETTINGS)


@pytest.mark.parametrize("bad", ["relative/dir", "/etc/x y", "/etc/x'y", "/etc/../root", "/etc/x\ny"])
def test_config_renderers_refuse_paths_that_could_break_out(bad: str) -> None:
    with pytest.raises(ValueError):
        r.render_mysql_cnf(bad)
    with pytest.raises(ValueError):
        r.render_pg_conf(bad)


def test_server_config_paths_are_conf_d_files() -> None:
    assert (
        r.server_config_path("mysql", "/etc/mysql/mariadb.conf.d") == "/etc/mysql/mariadb.conf.d/90-mattermost-tls.cnf"
    )
    assert r.server_config_path("postgres", "/etc/postgresql/15/main/") == (
        "/etc/postgresql/15/main/conf.d/90-mattermost-tls.conf"
    )
    with pytest.raises(ValueError):
        r.server_config_path("oracle", "/etc")


def test_hba_block_allows_each_client_over_tls_and_rejects_nothing_yet() -> None:
    text = r.render_pg_hba_block("mattermost", "mmuser", ["10.251.0.101", "10.251.0.102", "10.251.0.101", "fd00::5"])
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        ["hostssl", '"mattermost"', '"mmuser"', "10.251.0.101/32", "scram-sha-256"],
        ["hostssl", '"mattermost"', '"mmuser"', "10.251.0.102/32", "scram-sha-256"],
        ["hostssl", '"mattermost"', '"mmuser"', "fd00::5/128", "scram-sha-256"],
    ]
    # phase 1 only adds TLS lines: plain logins go on to the file's older lines until phase 2
    assert not [x for x in rules if x[0] != "hostssl"]


def test_hba_enforce_block_rejects_every_plain_login_of_the_user() -> None:
    text = r.render_pg_hba_enforce_block("mmuser")
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [["hostnossl", "all", '"mmuser"', "all", "reject"]]
    with pytest.raises(ValueError):
        r.render_pg_hba_enforce_block("mm user")


def test_hba_block_quotes_names_that_are_keywords() -> None:
    text = r.render_pg_hba_block("all", "all", ["10.0.0.1"])
    assert 'hostnossl all "all" all reject' in r.render_pg_hba_enforce_block("all")
    assert 'hostssl "all" "all" 10.0.0.1/32 scram-sha-256' in text


@pytest.mark.parametrize("bad", [[], ["10.0.0.0/24"], ["db.example.com"], ["10.0.0.1 trust"]])
def test_hba_block_refuses_anything_but_addresses(bad: list[str]) -> None:
    with pytest.raises(ValueError):
        r.render_pg_hba_block("mattermost", "mmuser", bad)


# ---------------------------------------------------------------- passwords, SQL, DSN


@pytest.mark.parametrize("pw", HOSTILE)
def test_printable_passwords_are_accepted(pw: str) -> None:
    assert r.check_password(pw) == pw


@pytest.mark.parametrize("pw", ["", "new\nline", "tab\tin", "nul\x00", "del\x7f", "c1\x85", "x" * 1025])
def test_passwords_that_would_break_framing_are_refused_naming_the_key(pw: str) -> None:
    with pytest.raises(ValueError, match="^dbPassword: "):
        r.check_password(pw)


def test_random_password_alphabet_needs_no_escaping_anywhere() -> None:
    import string
    from urllib.parse import quote

    for c in string.ascii_letters + string.digits + r.RANDOM_PASSWORD_SPECIALS:
        assert quote(c, safe="") == c  # URL
        assert r.mysql_string(c) == f"'{c}'" and r.pg_string(c) == f"'{c}'"  # SQL
        assert c not in "\"'\\$`%@:/?#&; "  # shell, systemd EnvironmentFile, DSN syntax
    assert r.RANDOM_PASSWORD_LENGTH >= 32


def test_mysql_user_sql_leaves_require_flags_and_keeps_the_password_inside_one_literal() -> None:
    pw = "it's a \\ test"
    sql = r.render_user_sql("mysql", user="mmuser", database="matter_most", password=pw)
    assert "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';" in sql
    assert "CREATE USER IF NOT EXISTS 'mmuser'@'%' IDENTIFIED BY 'it''s a \\ test';" in sql
    assert "ALTER USER 'mmuser'@'%' IDENTIFIED BY 'it''s a \\ test';" in sql
    # REQUIRE SSL is phase 2 (render_mysql_require_ssl), after every node uses its TLS DSN
    assert "REQUIRE" not in sql
    # '_' is a wildcard in GRANT ... ON db.*: escaped, so no other database matches
    assert "GRANT ALL PRIVILEGES ON `matter\\_most`.* TO 'mmuser'@'%';" in sql


def test_postgres_user_sql_sets_scram_password_in_one_transaction() -> None:
    sql = r.render_user_sql("postgres", user="mmUser", database="mattermost", password="it's")
    assert "SET standard_conforming_strings = on;" in sql
    assert sql.index("BEGIN;") < sql.index("password_encryption = 'scram-sha-256'") < sql.index("COMMIT;")
    assert "ALTER ROLE \"mmUser\" WITH LOGIN PASSWORD 'it''s';" in sql
    assert 'ALTER DATABASE "mattermost" OWNER TO "mmUser";' in sql
    assert "rolname = 'mmUser'" in sql


@pytest.mark.parametrize("bad", ["mm user", "mm'user", "1mm", 'mm"u', "mm`u", ""])
def test_sql_renderers_refuse_identifiers_that_need_quoting(bad: str) -> None:
    for engine in r.ENGINES:
        with pytest.raises(ValueError):
            r.render_user_sql(engine, user=bad, database="mattermost", password="x")
        with pytest.raises(ValueError):
            r.render_user_sql(engine, user="mmuser", database=bad, password="x")


def go_sql_driver_parse(dsn: str) -> dict[str, object]:
    """go-sql-driver/mysql ParseDSN, transcribed: last '/', then the last '@' before it, then
    the first ':' before that; the password is never unescaped."""
    i = dsn.rindex("/")
    j = dsn[: i + 1].rindex("@")
    cred = dsn[:j]
    k = cred.find(":")
    user, password = (cred[:k], cred[k + 1 :]) if k >= 0 else (cred, "")
    proto = dsn[j + 1 : i]
    assert proto.endswith(")")
    net, addr = proto[: proto.index("(")], proto[proto.index("(") + 1 : -1]
    dbname, _, query = dsn[i + 1 :].partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    return {"user": user, "password": password, "net": net, "addr": addr, "db": unquote(dbname), "params": params}


@pytest.mark.parametrize("pw", HOSTILE)
def test_mysql_dsn_round_trips_through_the_drivers_parser(pw: str) -> None:
    dsn = r.render_dsn("mysql", "mmuser", pw, "10.251.0.20", 3306, "mattermost", "true", "/unused")
    assert go_sql_driver_parse(dsn) == {
        "user": "mmuser",
        "password": pw,
        "net": "tcp",
        "addr": "10.251.0.20:3306",
        "db": "mattermost",
        "params": {"charset": "utf8mb4,utf8", "writeTimeout": "30s", "tls": "true"},
    }


@pytest.mark.parametrize("pw", HOSTILE)
def test_postgres_dsn_round_trips_as_a_url(pw: str) -> None:
    dsn = r.render_dsn("postgres", "mmuser", pw, "db.internal", 5432, "mattermost", "verify-full", "/etc/mm-tls/ca.crt")
    u = urlsplit(dsn)
    assert (u.scheme, unquote(u.username or ""), unquote(u.password or "")) == ("postgres", "mmuser", pw)
    assert (u.hostname, u.port, u.path) == ("db.internal", 5432, "/mattermost")
    params = dict(p.split("=", 1) for p in u.query.split("&"))
    assert params == {"sslmode": "verify-full", "sslrootcert": "/etc/mm-tls/ca.crt", "connect_timeout": "10"}


def test_postgres_dsn_refuses_ca_paths_that_need_escaping() -> None:
    with pytest.raises(ValueError):
        r.render_dsn("postgres", "mmuser", "pw", "h", 5432, "mattermost", "verify-full", "/etc/mm tls/ca.crt")


def test_dsns_match_the_design_contract() -> None:
    assert r.render_dsn("mysql", "mmuser", "pw", "10.251.0.20", 3306, "mattermost", "true", "/x") == (
        "mmuser:pw@tcp(10.251.0.20:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s&tls=true"
    )
    assert r.render_dsn(
        "postgres", "mmuser", "p w", "10.251.0.21", 5432, "mattermost", "verify-full", "/etc/t/ca.crt"
    ) == (
        "postgres://mmuser:p%20w@10.251.0.21:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/t/ca.crt&connect_timeout=10"
    )
    assert "tcp([fd00::20]:3306)" in r.render_dsn("mysql", "u", "p", "fd00::20", 3306, "d", "true", "/x")
    assert "@[fd00::21]:5432/" in r.render_dsn("postgres", "u", "p", "fd00::21", 5432, "d", "verify-full", "/x")


def test_option_file_and_passfile_escaping() -> None:
    cnf = r.render_admin_secret(
        "mysql", admin_user="admin", admin_password="a\"b\\c'd", address="10.0.0.20", port=3306, ca_file="/t/ca.crt"
    )
    assert 'password = "a\\"b\\\\c\\\'d"' in cnf
    assert "ssl-ca = /t/ca.crt" in cnf and "ssl-verify-server-cert" in cnf
    pgpass = r.render_admin_secret(
        "postgres", admin_user="admin", admin_password="a:b\\c", address="10.0.0.21", port=5432, ca_file="/t/ca.crt"
    )
    assert pgpass == "*:*:*:admin:a\\:b\\\\c\n"


def test_server_control_restarts_the_postgres_cluster_unit_not_the_umbrella() -> None:
    c = r.server_control("postgres", service="postgresql", port=5433, config_dir="/etc/postgresql/15/main")
    assert c.restart == "systemctl restart postgresql@15-main"
    assert c.reload == "systemctl reload postgresql@15-main"
    assert "-p 5433" in c.probe and "-p 5433" in c.local_sql
    assert "/var/log/postgresql/postgresql-15-main.log" in c.logs
    own = r.server_control("postgres", service="pg-custom", port=5432, config_dir="/srv/pg")
    assert own.restart == "systemctl restart pg-custom"
    m = r.server_control("mysql", service="mariadb", port=3306, config_dir="/etc/mysql/mariadb.conf.d")
    assert m.restart == "systemctl restart mariadb" and "journalctl -u mariadb -n 30" in m.logs
    with pytest.raises(ValueError):
        r.server_control("mysql", service="mariadb; reboot", port=3306, config_dir="/etc/mysql")


def test_tls_probe_verifies_the_name_the_dsn_uses() -> None:
    ip = r.render_tls_probe("postgres", address="10.0.0.21", port=5432, ca_file="/t/ca.crt", server_name="10.0.0.21")
    assert "-starttls postgres" in ip and "-verify_ip 10.0.0.21" in ip and "-verify_return_error" in ip
    dns = r.render_tls_probe("mysql", address="fd00::20", port=3306, ca_file="/t/ca.crt", server_name="db.internal")
    assert "-connect '[fd00::20]:3306'" in dns and "-verify_hostname db.internal" in dns


def test_user_stdin_frames_token_admin_and_sql() -> None:
    assert r.user_stdin("tok-1", "", "SELECT 1;").splitlines() == encode_bundle(["tok-1", "", "SELECT 1;"]).splitlines()
    for bad in ["", "a b", "x;y", "a" * 65]:
        with pytest.raises(ValueError):
            r.user_stdin(bad, "", "")


# ---------------------------------------------------------------- scripts: parse, and run with stand-ins


def _all_scripts() -> list[str]:
    out = []
    for engine in r.ENGINES:
        control = r.server_control(engine, service="x", port=5432, config_dir="/etc/postgresql/15/main")
        client = r.admin_client(engine, control, admin_user="admin", address="10.0.0.1", port=1, ca_file="/t/ca.crt")
        for c in (control.local_sql, client):
            out.append(strict(r.render_user_apply(engine, user="mmuser", database="mattermost", client=c)))
            out.append(strict(r.render_user_restore(engine, user="mmuser", client=c)))
        probe = r.render_tls_probe(engine, address="10.0.0.1", port=1, ca_file="/t/ca.crt", server_name="db")
        out.append(r.render_activate(control, config_file="/etc/x.conf", tls_probe=probe))
        out.append(r.render_validate(engine, control, config_file="/etc/x.conf", tls_dir="/etc/t"))
        out.append(r.render_hba_validate(control, hba_file="/etc/pg_hba.conf"))
        out.append(control.restart + "\n" + control.logs + "\n" + control.probe)
    return out


@pytest.mark.parametrize("shell", SHELLS)
def test_every_rendered_script_parses(shell: str) -> None:
    for script in _all_scripts():
        res = subprocess.run([shell, "-n", "-c", script], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr + script


def fake_control(*, restart: str = "true", probe: str = "true") -> r.ServerControl:
    return r.ServerControl(
        name="fakedb",
        restart=restart,
        reload="true",
        probe=probe,
        logs="echo 'FATAL: the server said why'",
        local_sql="false",
    )


def test_activate_prints_the_servers_log_when_the_restart_fails(tmp_path: Path) -> None:
    script = r.render_activate(
        fake_control(restart="echo 'Job failed' >&2; false"), config_file="/nonexistent", tls_probe="true"
    )
    res = run_script(script)
    assert res.returncode == 1
    assert "fakedb: restart failed" in res.stdout and "Job failed" in res.stdout
    assert "FATAL: the server said why" in res.stdout


def test_activate_gives_up_after_a_bounded_wait(tmp_path: Path) -> None:
    res = run_script(r.render_activate(fake_control(probe="false"), config_file="/x", tls_probe="true", wait_seconds=2))
    assert res.returncode == 1
    assert "does not answer 2 s after the restart" in res.stdout and "FATAL: the server said why" in res.stdout


def test_activate_fails_if_tls_is_not_served_and_skips_the_probe_without_our_config(tmp_path: Path) -> None:
    conf = tmp_path / "90-mattermost-tls.conf"
    conf.write_text("ssl = on\n")
    bad_probe = "echo 'verify error:num=19:self-signed certificate' >&2; false"
    res = run_script(r.render_activate(fake_control(), config_file=str(conf), tls_probe=bad_probe))
    assert res.returncode == 1 and "does not serve the stack CA's certificate" in res.stdout
    assert "self-signed certificate" in res.stdout and "FATAL: the server said why" in res.stdout
    # after a rollback of the first apply our file is gone: restart only, no probe
    conf.unlink()
    res = run_script(r.render_activate(fake_control(), config_file=str(conf), tls_probe=bad_probe))
    assert res.returncode == 0 and "fakedb: restarted" in res.stdout


def _recording_client(tmp: Path) -> str:
    """A stand-in admin client that records every call and fails the test if the script expects answers."""
    log = tmp / "client.log"
    return f"echo called >> {log}; false"


def test_user_restore_of_a_replaced_resource_leaves_the_new_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    backup, owner = r.user_state_files("mmuser", str(state))
    Path(backup).write_text("DROP USER IF EXISTS 'mmuser'@'%';\n")
    Path(owner).write_text("new-token\n")
    for engine in r.ENGINES:
        script = strict(
            r.render_user_restore(engine, user="mmuser", client=_recording_client(tmp_path), state_dir=str(state))
        )
        res = run_script(script, r.user_stdin("old-token", "", "x"))
        assert res.returncode == 0, res.stderr
        assert "owned by another resource now" in res.stdout
    assert not (tmp_path / "client.log").exists(), "the old owner's delete must not touch the database"
    assert Path(backup).exists() and Path(owner).read_text() == "new-token\n"


def test_user_restore_without_its_backup_fails_and_says_how_to_proceed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _, owner = r.user_state_files("mmuser", str(state))
    Path(owner).write_text("tok\n")
    script = strict(
        r.render_user_restore("mysql", user="mmuser", client=_recording_client(tmp_path), state_dir=str(state))
    )
    res = run_script(script, r.user_stdin("tok", "", "x"))
    assert res.returncode == 1 and "backup" in res.stderr and "missing" in res.stderr


def test_user_scripts_refuse_truncated_or_forged_stdin(tmp_path: Path) -> None:
    script = strict(
        r.render_user_apply("postgres", user="mmuser", database="mattermost", client="false", state_dir=str(tmp_path))
    )
    res = run_script(script, encode_bundle(["tok"]))
    assert res.returncode == 1 and "stdin ended" in res.stderr
    res = run_script(script, encode_bundle(["tok; rm -rf /", "", ""]))
    assert res.returncode == 1 and "owner token must be" in res.stderr


# ---------------------------------------------------------------- real servers

def _tree(path: str) -> dict[str, tuple[bytes, int]]:
    out = {}
    for p in sorted(Path(path).rglob("*")):
        out[str(p)] = (p.read_bytes() if p.is_file() else b"dir", p.stat().st_mode)
    return out


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_tls_config_rolls_back_a_broken_key_then_applies_and_restores(
    engine: str, request: pytest.FixtureRequest
) -> None:
    srv: Server = request.getfixturevalue("mysql_server" if engine == "mysql" else "pg_server")
    before = _tree(srv.config_dir)
    # another CA's key does not match the certificate: the server does not come back with it
    broken = make_pki().key_pem
    res = srv.tls_apply(key_pem=broken)
    assert res.returncode != 0
    assert "activation failed; the previous configuration is back in place" in res.stderr
    server_words = "Failed to setup SSL" if engine == "mysql" else "private key"
    assert server_words in res.stderr, res.stderr
    assert _tree(srv.config_dir) == before, "the broken files are gone"
    assert run_script(srv.control.probe).returncode == 0, "the server is back, on the previous configuration"
    assert srv.login("mmuser", "before-pw", tls=False).returncode == 0, "and still the old (plain) way"

    res = srv.tls_apply()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "TLS verified with the stack CA" in res.stdout
    ok = srv.login("mmuser", "before-pw", tls=True)
    assert ok.returncode == 0 and "TLSv1." in ok.stdout, ok.stderr
    # a client that trusts another CA refuses the server
    wrong = srv.login("mmuser", "before-pw", tls=True, ca_pem=srv.pki.other_ca_pem)
    assert wrong.returncode != 0
    # phase 1 offers TLS but does not refuse plain logins yet (nodes switch one at a time)
    assert srv.login("mmuser", "before-pw", tls=False).returncode == 0, "plain still allowed in phase 1"
    if engine == "mysql":
        # phase 2: require_secure_transport live, without a restart; its delete turns it off again
        res = srv.enforce_apply()
        assert res.returncode == 0, res.stdout + res.stderr
        assert "require_secure_transport = ON" in res.stdout and "restarted" not in res.stdout
        assert srv.admin("SELECT @@GLOBAL.require_secure_transport") == "1"
        assert srv.login("mmuser", "before-pw", tls=False).returncode != 0, "require_secure_transport refuses plain TCP"
        assert srv.login("mmuser", "before-pw", tls=True).returncode == 0
        res = srv.enforce_restore()
        assert res.returncode == 0, res.stdout + res.stderr
        assert srv.admin("SELECT @@GLOBAL.require_secure_transport") == "0"
        assert srv.login("mmuser", "before-pw", tls=False).returncode == 0, "plain logins back after the enforce delete"

    again = srv.tls_apply()
    assert again.returncode == 0 and "db-server-tls: unchanged" in again.stdout and "restarted" not in again.stdout

    res = srv.tls_restore()
    assert res.returncode == 0, res.stderr
    assert _tree(srv.config_dir) == before, "restore leaves the config dir byte-identical"
    assert srv.login("mmuser", "before-pw", tls=False).returncode == 0


def test_validate_catches_a_setting_that_would_be_shadowed(pg_server: Server) -> None:
    srv = pg_server
    srv.admin("ALTER SYSTEM SET ssl_key_file = '/elsewhere/server.key'")
    try:
        res = srv.tls_apply()
        assert res.returncode != 0 and "validation failed" in res.stderr
        assert "would not apply" in res.stderr and "postgresql.auto.conf" in res.stderr, res.stderr
    finally:
        srv.admin("ALTER SYSTEM RESET ssl_key_file")
    assert not Path(srv.config_file).exists()


@pytest.mark.parametrize("tls_on", ["mysql_server", "pg_server"], indirect=True)
def test_existing_user_needs_tls_and_gets_back_exactly_what_it_had(tls_on: Server) -> None:
    srv = tls_on
    before = user_state(srv, "mmuser")
    assert srv.login("mmuser", "before-pw", tls=False).returncode == 0 or srv.engine == "mysql"
    if srv.engine == "postgres":
        hba = f"{srv.config_dir}/pg_hba.conf"
        block = r.render_pg_hba_block("mattermost", "mmuser", ["127.0.0.1"])
        res = run_script(
            render_block_apply(
                "db-pg-hba",
                hba,
                position="top",
                validate=r.render_hba_validate(srv.control, hba_file=hba),
                activate=srv.control.reload,
                state_dir=srv.state,
            ),
            encode_bundle([block]),
        )
        assert res.returncode == 0, res.stderr

    res = srv.user_apply("mmuser", "new pw with 'quotes'", "tok-a")
    assert res.returncode == 0, res.stderr
    backup, owner = r.user_state_files("mmuser", srv.state)
    assert oct(Path(backup).stat().st_mode & 0o777) == "0o600"
    saved = Path(backup).read_text()
    if srv.engine == "mysql":
        assert "IDENTIFIED BY PASSWORD '*" in saved and "REQUIRE SSL" not in saved
    else:
        assert "SCRAM-SHA-256$" in saved and "LOGIN" in saved
    # phase 1: the new password works over TLS and, until phase 2, still in plain text
    assert srv.login("mmuser", "new pw with 'quotes'", tls=True).returncode == 0
    plain = srv.login("mmuser", "new pw with 'quotes'", tls=False)
    assert plain.returncode == 0, f"phase 1 must not refuse a plain login yet: {plain.stderr}"
    res = srv.enforce_apply()
    assert res.returncode == 0, res.stdout + res.stderr
    if srv.engine == "mysql":
        required = Path(srv.state, "db-user-mmuser.require").read_text()
        assert required.strip() == "ALTER USER 'mmuser'@'%' REQUIRE NONE;", required
        assert "REQUIRE SSL" in srv.admin("SHOW CREATE USER 'mmuser'@'%'")
    else:
        assert "plain logins of mmuser are refused" in res.stdout
    srv.assert_tls_only("mmuser", "new pw with 'quotes'")
    assert srv.login("mmuser", "before-pw", tls=True).returncode != 0, "the old password is gone"
    if srv.engine == "mysql":
        # each layer holds on its own: the user's REQUIRE SSL without require_secure_transport
        srv.admin("SET GLOBAL require_secure_transport = OFF")
        try:
            plain = srv.login("mmuser", "new pw with 'quotes'", tls=False)
            assert plain.returncode != 0, "REQUIRE SSL must refuse a plain login by itself"
        finally:
            srv.admin("SET GLOBAL require_secure_transport = ON")

    # running twice changes nothing that matters and keeps the true original
    res = srv.user_apply("mmuser", "new pw with 'quotes'", "tok-a")
    assert res.returncode == 0, res.stderr
    assert Path(backup).read_text() == saved
    srv.assert_tls_only("mmuser", "new pw with 'quotes'")

    # create-before-delete: the replacement (token b) runs first, then the old delete (token a)
    assert srv.user_apply("mmuser", "replaced-pw", "tok-b").returncode == 0
    res = srv.user_restore("mmuser", "tok-a")
    assert res.returncode == 0 and "owned by another resource" in res.stdout
    srv.assert_tls_only("mmuser", "replaced-pw")
    # enforcing again changes nothing; the saved REQUIRE flags stay the true original
    assert srv.enforce_apply().returncode == 0
    srv.assert_tls_only("mmuser", "replaced-pw")

    # destroy order: phase 2 goes first and lets plain logins in again, then the user's own delete
    res = srv.enforce_restore()
    assert res.returncode == 0, res.stdout + res.stderr
    plain = srv.login("mmuser", "replaced-pw", tls=False)
    assert plain.returncode == 0, f"plain logins back once enforcement is deleted: {plain.stderr}"
    if srv.engine == "mysql":
        assert "REQUIRE" not in srv.admin("SHOW CREATE USER 'mmuser'@'%'")
        assert not Path(srv.state, "db-user-mmuser.require").exists()
    else:
        # the activation re-run after a rollback (block gone) only reloads, it proves nothing
        again = run_script(
            r.render_pg_enforce_activate(
                srv.control, hba_file=hba, address="127.0.0.1", port=srv.port, user="mmuser", database="mattermost"
            )
        )
        assert again.returncode == 0 and again.stdout.strip().endswith("reloaded"), again.stdout + again.stderr

    res = srv.user_restore("mmuser", "tok-b")
    assert res.returncode == 0, res.stderr
    assert "previous state restored" in res.stdout
    assert user_state(srv, "mmuser") == before, "hash, plugin, flags and grants as before"
    assert not Path(backup).exists() and not Path(owner).exists()
    if srv.engine == "postgres":
        res = run_script(render_block_restore("db-pg-hba", hba, restore_activate=srv.control.reload, state_dir=srv.state))
        assert res.returncode == 0, res.stderr
        assert srv.login("mmuser", "before-pw", tls=False).returncode == 0, "plain login back as it was"
    assert srv.login("mmuser", "before-pw", tls=True).returncode == 0
    # a second delete is harmless
    assert srv.user_restore("mmuser", "tok-b").returncode == 0


@pytest.mark.parametrize("tls_on", ["mysql_server", "pg_server"], indirect=True)
def test_new_user_with_hostile_passwords_then_removed(tls_on: Server) -> None:
    srv = tls_on
    database = "mattermost" if srv.engine == "mysql" else "mmnewdb"
    before = user_state(srv, "mmnew")
    assert "absent" in before
    if srv.engine == "postgres":
        hba = f"{srv.config_dir}/pg_hba.conf"
        res = run_script(
            render_block_apply("db-pg-hba-new", hba, position="top", activate=srv.control.reload, state_dir=srv.state),
            encode_bundle([r.render_pg_hba_block(database, "mmnew", ["127.0.0.1"])]),
        )
        assert res.returncode == 0, res.stderr
    for i, pw in enumerate(HOSTILE):
        res = srv.user_apply("mmnew", pw, "tok", database=database)
        assert res.returncode == 0, f"{pw!r}: {res.stderr}"
        ok = srv.login("mmnew", pw, tls=True, database=database)
        assert ok.returncode == 0, f"{pw!r}: {ok.stderr}"
        if i == 0:
            assert srv.login("mmnew", pw, tls=False, database=database).returncode == 0, "phase 1: plain allowed"
            res = srv.enforce_apply("mmnew", database)
            assert res.returncode == 0, res.stdout + res.stderr
            assert srv.login("mmnew", pw, tls=False, database=database).returncode != 0
    assert not Path("/tmp/mmtls-pwned").exists()
    # Mattermost can create its tables (PostgreSQL 15: only the database owner may create in public)
    create = srv.login("mmnew", HOSTILE[-1], tls=True, database=database, sql="CREATE TABLE mm_probe (id int)")
    assert create.returncode == 0, create.stderr
    srv.login("mmnew", HOSTILE[-1], tls=True, database=database, sql="DROP TABLE mm_probe")

    assert srv.login("mmnew", HOSTILE[-1], tls=False, database=database).returncode != 0, "still enforced"
    res = srv.enforce_restore("mmnew")
    assert res.returncode == 0, res.stdout + res.stderr
    res = srv.user_restore("mmnew", "tok")
    assert res.returncode == 0, res.stderr
    assert user_state(srv, "mmnew") == before, "a user that did not exist is gone again"
    if srv.engine == "postgres":
        assert (
            run_script(
                render_block_restore("db-pg-hba-new", hba, restore_activate=srv.control.reload, state_dir=srv.state)
            ).returncode
            == 0
        )


@pytest.mark.parametrize("tls_on", ["mysql_server"], indirect=True)
def test_mysql_grant_does_not_leak_to_similarly_named_databases(tls_on: Server) -> None:
    srv = tls_on
    res = srv.user_apply("mmgrant", "pw", "tok", database="matter_most")
    assert res.returncode == 0, res.stderr
    try:
        assert srv.login("mmgrant", "pw", tls=True, database="matter_most").returncode == 0
        # unescaped, '_' would match any character and grant matterxmost too
        denied = srv.login("mmgrant", "pw", tls=True, database="matterxmost")
        assert denied.returncode != 0 and "denied" in denied.stderr
    finally:
        assert srv.user_restore("mmgrant", "tok").returncode == 0
    assert mysql_user_state(srv, "mmgrant") == "absent"


def test_pg_role_that_came_to_own_tables_is_kept_without_login(pg_server: Server) -> None:
    srv = pg_server
    res = srv.user_apply("mmkeep", "pw", "tok", database="mmnewdb")
    assert res.returncode == 0, res.stderr
    assert srv.admin("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mmnewdb'") == "mmkeep"
    # Mattermost's tables belong to its role
    res = run_script(
        f"cd / && {srv.control.local_sql} -d mmnewdb -c 'SET ROLE mmkeep; CREATE TABLE posts (id int); INSERT INTO posts VALUES (1)'"
    )
    assert res.returncode == 0, res.stderr
    try:
        res = srv.user_restore("mmkeep", "tok")
        assert res.returncode == 0, res.stderr
        assert "no data is lost" in res.stderr
        assert (
            srv.admin(
                "SELECT rolcanlogin::text || ' ' || coalesce(rolpassword, 'NULL') FROM pg_authid WHERE rolname = 'mmkeep'"
            )
            == "false NULL"
        )
        assert srv.admin("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mmnewdb'") == "postgres"
        rows = run_script(f"cd / && {srv.control.local_sql} -d mmnewdb -At -c 'SELECT count(*) FROM posts'")
        assert rows.stdout.strip() == "1"
    finally:
        run_script(f"cd / && {srv.control.local_sql} -d mmnewdb -c 'DROP TABLE IF EXISTS posts'")
        srv.admin("DROP ROLE IF EXISTS mmkeep")


def test_missing_database_fails_before_anything_changes(pg_server: Server, mysql_server: Server) -> None:
    for srv in (pg_server, mysql_server):
        res = srv.user_apply("mmuser", "pw", "tok", database="nosuchdb")
        assert res.returncode != 0 and "database nosuchdb does not exist" in res.stderr, res.stderr
        assert not Path(r.user_state_files("mmuser", srv.state)[0]).exists(), "no backup taken"
        assert srv.login("mmuser", "before-pw", tls=False).returncode == 0 or srv.engine == "mysql"


ADMIN_PW = "adm'in\"pw\\ #;$x ü:"


@pytest.mark.parametrize("tls_on", ["mysql_server", "pg_server"], indirect=True)
def test_admin_over_verified_tls_with_a_hostile_password(tls_on: Server) -> None:
    srv = tls_on
    if srv.engine == "mysql":
        srv.admin(
            "SET NAMES utf8mb4; SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'; "
            f"CREATE USER 'mtmadmin'@'%' IDENTIFIED BY {r.mysql_string(ADMIN_PW)}; "
            "GRANT ALL ON *.* TO 'mtmadmin'@'%' WITH GRANT OPTION"
        )
    else:
        srv.admin(f"CREATE ROLE mtmadmin SUPERUSER LOGIN PASSWORD {r.pg_string(ADMIN_PW)}")
    try:
        ca = r.tls_paths(srv.tls_dir).ca
        client = r.admin_client(
            srv.engine, srv.control, admin_user="mtmadmin", address="127.0.0.1", port=srv.port, ca_file=ca
        )
        secret = r.render_admin_secret(
            srv.engine, admin_user="mtmadmin", admin_password=ADMIN_PW, address="127.0.0.1", port=srv.port, ca_file=ca
        )
        database = "mattermost" if srv.engine == "mysql" else "mmnewdb"
        res = srv.user_apply("mmadm", "pw-adm", "tok", database=database, client=client, admin_secret=secret)
        assert res.returncode == 0, res.stderr
        assert ADMIN_PW not in res.stdout + res.stderr
        assert srv.login("mmadm", "pw-adm", tls=True, database=database).returncode == 0
        res = srv.user_restore("mmadm", "tok", client=client, admin_secret=secret)
        assert res.returncode == 0, res.stderr
        assert "absent" in user_state(srv, "mmadm")
        assert not list(Path(srv.state).glob("tmp.*")), "the credentials file is gone"
    finally:
        if srv.engine == "mysql":
            srv.admin("DROP USER IF EXISTS 'mtmadmin'@'%'")
        else:
            srv.admin("DROP ROLE IF EXISTS mtmadmin")


def test_postgres_tls_goes_live_by_reload_keeping_open_connections(pg_server: Server) -> None:
    """A restart would drop every node's open connections, and each node's next query would
    need a login while the server starts; a reload keeps them (SSL settings are SIGHUP since
    PostgreSQL 10)."""
    import psycopg2

    srv = pg_server
    conn = psycopg2.connect(host="127.0.0.1", port=srv.port, user="mmuser", password="before-pw",
                            dbname="mattermost", sslmode="disable", connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as c:
            c.execute("SELECT pg_backend_pid()")
            pid = c.fetchone()[0]
        res = srv.tls_apply()
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reloaded; TLS verified with the stack CA" in res.stdout, res.stdout
        with conn.cursor() as c:
            c.execute("SELECT pg_backend_pid()")
            assert c.fetchone()[0] == pid, "the open connection survived"
        assert srv.login("mmuser", "before-pw", tls=True).returncode == 0
    finally:
        conn.close()
        res = srv.tls_restore()
        assert res.returncode == 0, res.stderr
    assert "reloaded" in res.stdout
    assert srv.admin("SHOW ssl") == "off"


@pytest.mark.parametrize("tls_on", ["pg_server"], indirect=True)
def test_gitlab_role_gets_its_own_database_created_then_dropped(tls_on: Server) -> None:
    """GitLab's bundled Mattermost: its own database (created, since it is missing) owned by its
    own role, TLS only once enforced; destroy drops the database it created and the role, and
    leaves the nodes' database and role as they were."""
    srv, user, database = tls_on, "gitlab_mmuser", "gitlab_mattermost"
    before = pg_user_state(srv, user), pg_user_state(srv, "mmuser")
    assert before[0].startswith("absent") and database not in before[0]
    hba = f"{srv.config_dir}/pg_hba.conf"
    res = run_script(
        render_block_apply("db-gitlab-pg-hba", hba, position="top", activate=srv.control.reload, state_dir=srv.state),
        encode_bundle([r.render_pg_hba_block(database, user, ["127.0.0.1"])]),
    )
    assert res.returncode == 0, res.stderr
    client = srv.control.local_sql

    def apply(token: str) -> subprocess.CompletedProcess[str]:
        script = r.render_user_apply(
            "postgres", user=user, database=database, client=client, state_dir=srv.state,
            before=r.render_gitlab_database_create(user=user, database=database, state_dir=srv.state),
        )
        sql = r.render_user_sql("postgres", user=user, database=database, password="gl pw 'x'")
        return run_script(strict(script), r.user_stdin(token, "", sql))

    def restore(token: str) -> subprocess.CompletedProcess[str]:
        script = r.render_user_restore(
            "postgres", user=user, client=client, state_dir=srv.state,
            before=r.render_gitlab_database_drop(user=user, database=database, state_dir=srv.state),
        )
        return run_script(strict(script), r.user_stdin(token, "", "-- unused by delete"))

    res = apply("tok")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"created database {database}" in res.stdout
    assert srv.admin(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'") == user
    assert apply("tok").returncode == 0 and "created database" not in apply("tok").stdout, "a second run creates nothing"
    assert srv.login(user, "gl pw 'x'", tls=True, database=database).returncode == 0
    make = srv.login(user, "gl pw 'x'", tls=True, database=database, sql="CREATE TABLE mm_probe (id int)")
    assert make.returncode == 0, make.stderr
    res = srv.enforce_apply(user, database)
    assert res.returncode == 0, res.stdout + res.stderr
    srv.assert_tls_only(user, "gl pw 'x'", database=database)

    assert srv.enforce_restore(user).returncode == 0
    res = restore("tok")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"dropped database {database}" in res.stdout
    assert (pg_user_state(srv, user), pg_user_state(srv, "mmuser")) == before, "role and database gone, nodes' as before"
    assert not Path(r.gitlab_database_marker(user, srv.state)).exists()
    assert run_script(render_block_restore("db-gitlab-pg-hba", hba, restore_activate=srv.control.reload, state_dir=srv.state)).returncode == 0
    assert restore("tok").returncode == 0, "a second delete is harmless"
