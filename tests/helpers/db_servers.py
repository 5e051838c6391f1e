"""Private MariaDB and PostgreSQL servers for the tests that run the database scripts for real.

Each server runs on this machine as its service user (temp datadir, 127.0.0.1, a free port, its
own socket dir), never the system service; Debian's layouts (PostgreSQL's config beside the data,
conf.d included last). `Server` applies and restores the rendered TLS config and user scripts
against it. The fixtures (`mysql_server`, `pg_server`, `tls_on`) are registered in
tests/unit/conftest.py; a machine without the servers or root skips them (which fails CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from components import database_render as r
from components import remote_files_render as rf
from components.database_accounts import render_require_ssl_sql
from components.platform import DEBIAN
from tests.helpers.certs import make_ca, make_leaf, pem
from tests.helpers.scripts import run_script

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def have_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DbPki:
    ca_pem: str
    cert_pem: str
    key_pem: str
    other_ca_pem: str


def make_pki(name: str = "127.0.0.1") -> DbPki:
    """A CA, a server certificate for the IP `name` from it (key in the traditional EC form the
    servers' docs show), and an unrelated CA."""
    ca = make_ca(days=2)
    cert_pem, pkcs8 = make_leaf(ca, [name])
    key = serialization.load_pem_private_key(pkcs8.encode(), None)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return DbPki(ca_pem=pem(ca[1]), cert_pem=cert_pem, key_pem=key_pem, other_ca_pem=pem(make_ca(days=2)[1]))


@dataclass
class Server:
    """A throwaway database server and how the program's scripts operate it."""

    engine: str
    root: Path
    port: int
    control: r.ServerControl
    config_dir: str
    pki: DbPki

    @property
    def tls_dir(self) -> str:
        return f"{self.config_dir}/mattermost-tls"

    @property
    def config_file(self) -> str:
        return r.server_config_path(self.engine, self.config_dir)

    @property
    def state(self) -> str:
        return str(self.root / "state")

    def specs(self) -> list[rf.FileSpec]:
        p = r.tls_paths(self.tls_dir)
        svc = DEBIAN.server_user(self.engine)
        return [
            rf.FileSpec(p.ca, "0644"),
            rf.FileSpec(p.cert, "0644"),
            rf.FileSpec(p.key, "0600", svc, svc),
            rf.FileSpec(self.config_file, "0644"),
        ]

    def activate(self) -> str:
        probe = r.render_tls_probe(
            self.engine,
            address="127.0.0.1",
            port=self.port,
            ca_file=r.tls_paths(self.tls_dir).ca,
            server_name="127.0.0.1",
        )
        # as components/database.py wires it: PostgreSQL reloads, MySQL/MariaDB restarts
        activate = r.render_pg_reload_activate if self.engine == "postgres" else r.render_activate
        return activate(self.control, config_file=self.config_file, tls_probe=probe)

    def tls_apply(self, key_pem: str | None = None) -> subprocess.CompletedProcess[str]:
        conf = r.render_mysql_cnf(self.tls_dir) if self.engine == "mysql" else r.render_pg_conf(self.tls_dir)
        script = rf.render_files_apply(
            "db-server-tls",
            self.specs(),
            validate=r.render_validate(self.engine, self.control, config_file=self.config_file, tls_dir=self.tls_dir),
            activate=self.activate(),
            state_dir=self.state,
        )
        return run_script(script, rf.encode_bundle([self.pki.ca_pem, self.pki.cert_pem, key_pem or self.pki.key_pem, conf]))

    def tls_restore(self) -> subprocess.CompletedProcess[str]:
        return run_script(
            rf.render_files_restore("db-server-tls", self.specs(), restore_activate=self.activate(), state_dir=self.state)
        )

    def enforce_apply(
        self, user: str = "mmuser", database: str = "mattermost", hosts: tuple[str, ...] = ("%",)
    ) -> subprocess.CompletedProcess[str]:
        """Phase 2 as the Database component runs it: PostgreSQL's reject block (reload, then the
        refusal proven); MySQL's option file (require_secure_transport set live) and REQUIRE SSL."""
        owner = f"db-enforce-tls-{user}"
        if self.engine == "postgres":
            hba = f"{self.config_dir}/pg_hba.conf"
            script = rf.render_block_apply(
                owner,
                hba,
                position="top",
                validate=r.render_hba_validate(self.control, hba_file=hba),
                activate=r.render_pg_enforce_activate(
                    self.control, hba_file=hba, address="127.0.0.1", port=self.port, user=user, database=database
                ),
                state_dir=self.state,
            )
            return run_script(script, rf.encode_bundle([r.render_pg_hba_enforce_block(user)]))
        path = r.mysql_enforce_config_path(self.config_dir)
        files = run_script(
            rf.render_files_apply(
                owner,
                [rf.FileSpec(path, "0644")],
                activate=r.render_mysql_enforce_activate(self.control, config_file=path),
                state_dir=self.state,
            ),
            rf.encode_bundle([r.render_mysql_enforce_cnf()]),
        )
        if files.returncode != 0:
            return files
        res = run_script(
            rf.strict(r.render_mysql_require_ssl(user=user, client=self.control.local_sql, state_dir=self.state)),
            rf.encode_bundle(["", *render_require_ssl_sql(user, hosts)]),
        )
        return subprocess.CompletedProcess(
            res.args, res.returncode, files.stdout + res.stdout, files.stderr + res.stderr
        )

    def enforce_restore(self, user: str = "mmuser") -> subprocess.CompletedProcess[str]:
        owner = f"db-enforce-tls-{user}"
        if self.engine == "postgres":
            hba = f"{self.config_dir}/pg_hba.conf"
            return run_script(rf.render_block_restore(owner, hba, restore_activate=self.control.reload, state_dir=self.state))
        res = run_script(
            rf.strict(
                r.render_mysql_require_ssl(user=user, client=self.control.local_sql, state_dir=self.state, restore=True)
            ),
            rf.encode_bundle([""]),
        )
        if res.returncode != 0:
            return res
        path = r.mysql_enforce_config_path(self.config_dir)
        activate = r.render_mysql_enforce_activate(self.control, config_file=path)
        return run_script(
            rf.render_files_restore(owner, [rf.FileSpec(path, "0644")], restore_activate=activate, state_dir=self.state)
        )

    def admin(self, sql: str) -> str:
        """Run SQL as the local superuser; return its output."""
        flags = "-N -B -r -e" if self.engine == "mysql" else "-At -c"
        res = run_script(f"cd / && {self.control.local_sql} {flags} {shq(sql)}")
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def user_apply(
        self,
        user: str,
        password: str,
        token: str,
        *,
        database: str = "mattermost",
        client: str | None = None,
        admin_secret: str = "",
    ) -> subprocess.CompletedProcess[str]:
        script = rf.strict(
            r.render_user_apply(
                self.engine, user=user, database=database, client=client or self.control.local_sql, state_dir=self.state
            )
        )
        sql = r.render_user_sql(self.engine, user=user, database=database, password=password)
        return run_script(script, r.user_stdin(token, admin_secret, sql))

    def user_restore(
        self, user: str, token: str, *, client: str | None = None, admin_secret: str = ""
    ) -> subprocess.CompletedProcess[str]:
        script = rf.strict(
            r.render_user_restore(self.engine, user=user, client=client or self.control.local_sql, state_dir=self.state)
        )
        return run_script(script, r.user_stdin(token, admin_secret, "-- unused by delete"))

    def login(
        self,
        user: str,
        password: str,
        *,
        tls: bool,
        database: str = "mattermost",
        sql: str | None = None,
        ca_pem: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A client login over TCP: verified TLS (CA + server name) or plain text."""
        ca = str(self.root / "client-ca.crt")
        Path(ca).write_text(ca_pem or self.pki.ca_pem)
        env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}
        if self.engine == "mysql":
            env["MYSQL_PWD"] = password
            mode = ["--ssl-ca", ca, "--ssl-verify-server-cert"] if tls else ["--skip-ssl"]
            argv = [
                "mariadb",
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                str(self.port),
                "-u",
                user,
                *mode,
                "-D",
                database,
                "-N",
                "-B",
                "-e",
                sql or "SHOW STATUS LIKE 'Ssl_version'",
            ]
        else:
            env["PGPASSWORD"] = password
            env["PGCONNECT_TIMEOUT"] = "10"
            mode = f"sslmode=verify-full sslrootcert={ca}" if tls else "sslmode=disable"
            conninfo = f"host=127.0.0.1 port={self.port} user={user} dbname={database} {mode}"
            argv = [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql or "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                conninfo,
            ]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, cwd="/")

    def assert_tls_only(self, user: str, password: str, database: str = "mattermost") -> None:
        ok = self.login(user, password, tls=True, database=database)
        assert ok.returncode == 0, ok.stderr
        assert "TLSv1.3" in ok.stdout or "TLSv1.2" in ok.stdout
        plain = self.login(user, password, tls=False, database=database)
        assert plain.returncode != 0, f"a plain login of {user} must fail: {plain.stdout}"


def shq(s: str) -> str:
    import shlex

    return shlex.quote(s)


def needs(*tools: str, users: tuple[str, ...] = ()) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (private servers run as their service users)")
    missing = [t for t in tools if not (shutil.which(t) or Path(t).exists())]
    missing += [u for u in users if not have_user(u)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install mariadb-server postgresql)")


MY_CTL = """#!/bin/sh
# Stand-in for `systemctl restart mariadb` (Type=notify): returns once the server answers, fails if it dies.
set -u
root={root}
pidf=$root/run/mysqld.pid
stop() {{
  [ -s "$pidf" ] || return 0
  pid=$(cat "$pidf")
  kill "$pid" 2>/dev/null || return 0
  i=0
  while kill -0 "$pid" 2>/dev/null; do i=$((i + 1)); [ "$i" -lt 600 ] || {{ echo "mariadbd does not stop"; exit 1; }}; sleep 0.1; done
}}
start() {{
  setsid mariadbd --defaults-file=$root/my.cnf --user=mysql </dev/null >>$root/run/out.log 2>&1 &
  pid=$!
  i=0
  until mariadb-admin --no-defaults --socket=$root/run/mysqld.sock ping >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || {{ echo "mariadbd exited while starting"; exit 1; }}
    i=$((i + 1)); [ "$i" -lt 600 ] || {{ echo "mariadbd does not answer"; exit 1; }}
    sleep 0.1
  done
}}
case "$1" in
  stop) stop ;;
  *) stop; start ;;
esac
"""


@pytest.fixture(scope="module")
def mysql_server() -> Iterator[Server]:
    needs(
        "mariadbd", "mariadb-install-db", "mariadb", "mysql", "mariadb-admin", "openssl", "runuser", users=("mysql",)
    )
    root = Path(tempfile.mkdtemp(prefix="mmtls-mysql-"))
    root.chmod(0o755)
    try:
        (root / "data").mkdir()
        (root / "run").mkdir()
        conf = root / "conf"
        conf.mkdir()
        shutil.chown(root / "data", "mysql", "mysql")
        shutil.chown(root / "run", "mysql", "mysql")
        port = free_port()
        (root / "my.cnf").write_text(
            "[mysqld]\n"
            f"datadir={root}/data\nsocket={root}/run/mysqld.sock\nport={port}\nbind-address=127.0.0.1\n"
            f"pid-file={root}/run/mysqld.pid\nlog-error={root}/run/err.log\nskip-log-bin\nskip-name-resolve\n"
            "innodb_buffer_pool_size=16M\n"
            f"!includedir {conf}\n"
        )
        res = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={root}/data",
                "--user=mysql",
                "--auth-root-authentication-method=socket",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0:
            pytest.skip(f"mariadb-install-db failed: {res.stderr[-500:]}")
        (root / "ctl.sh").write_text(MY_CTL.format(root=root))
        sock = f"{root}/run/mysqld.sock"
        control = r.ServerControl(
            name="test-mariadb",
            restart=f"sh {root}/ctl.sh restart",
            reload=f"sh {root}/ctl.sh restart",
            probe=f"mariadb-admin --no-defaults --socket={sock} --connect-timeout=2 ping",
            logs=f"tail -n 30 {root}/run/err.log",
            local_sql=f"mariadb --no-defaults --socket={sock} -uroot",
            config_check=f"mariadbd --defaults-file={root}/my.cnf --help --verbose",
        )
        srv = Server("mysql", root, port, control, str(conf), make_pki())
        res = run_script(control.restart)
        assert res.returncode == 0, res.stdout + (root / "run/err.log").read_text()
        # the "before" state of a manual install: no TLS, the user without REQUIRE SSL
        srv.admin("DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES")
        srv.admin(
            "CREATE DATABASE mattermost; CREATE DATABASE matter_most; CREATE DATABASE matterxmost; "
            "CREATE USER 'mmuser'@'%' IDENTIFIED BY 'before-pw'; GRANT SELECT ON mattermost.* TO 'mmuser'@'%'"
        )
        yield srv
    finally:
        run_script(f"sh {root}/ctl.sh stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Server]:
    needs(
        str(PG_BIN / "initdb"), str(PG_BIN / "pg_ctl"), "psql", "pg_isready", "openssl", "runuser", users=("postgres",)
    )
    root = Path(tempfile.mkdtemp(prefix="mmtls-pg-"))
    root.chmod(0o755)
    pg_ctl = PG_BIN / "pg_ctl"
    etc = root / "etc"
    try:
        for d in ("data", "run", "etc", "etc/conf.d"):
            (root / d).mkdir()
            shutil.chown(root / d, "postgres", "postgres")
        (root / "data").chmod(0o700)
        res = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "initdb"),
                "-D",
                f"{root}/data",
                "-U",
                "postgres",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        if res.returncode != 0:
            pytest.skip(f"initdb failed: {res.stderr[-500:]}")
        for f in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.move(root / "data" / f, etc / f)
        port = free_port()
        # Debian's layout: config beside, data elsewhere, conf.d included last
        with open(etc / "postgresql.conf", "a") as fh:
            fh.write(
                f"data_directory = '{root}/data'\nhba_file = '{etc}/pg_hba.conf'\nident_file = '{etc}/pg_ident.conf'\n"
                f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}/run'\n"
                "shared_buffers = 16MB\nssl = off\ninclude_dir = 'conf.d'\n"
            )
        log = f"{root}/run/postgres.log"
        as_pg = "runuser -u postgres --"
        control = r.ServerControl(
            name="test-postgres",
            restart=f"{as_pg} {pg_ctl} -D {etc} -l {log} -w -t 60 restart",
            reload=f"{as_pg} {pg_ctl} -D {etc} reload",
            probe=f"pg_isready -q -h {root}/run -p {port} -t 2",
            logs=f"tail -n 30 {log}",
            local_sql=f"{as_pg} psql -X -q -v ON_ERROR_STOP=1 -h {root}/run -p {port} -d postgres",
        )
        srv = Server("postgres", root, port, control, str(etc), make_pki())
        res = run_script(f"cd / && {as_pg} {pg_ctl} -D {etc} -l {log} -w -t 60 start")
        assert res.returncode == 0, res.stdout + res.stderr
        srv.admin("CREATE ROLE mmuser LOGIN PASSWORD 'before-pw'")
        srv.admin("CREATE DATABASE mattermost OWNER mmuser")
        srv.admin("CREATE DATABASE mmnewdb")
        yield srv
    finally:
        run_script(f"cd / && runuser -u postgres -- {pg_ctl} -D {etc} -m immediate -w stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tls_on(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv: Server = request.getfixturevalue(request.param)
    res = srv.tls_apply()
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        yield srv
    finally:
        res = srv.tls_restore()
        assert res.returncode == 0, res.stderr


def mysql_user_state(srv: Server, user: str) -> str:
    if srv.admin(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{user}' AND Host = '%'") == "0":
        return "absent"
    return srv.admin(f"SHOW CREATE USER '{user}'@'%'") + "\n" + srv.admin(f"SHOW GRANTS FOR '{user}'@'%'")


def pg_user_state(srv: Server, user: str) -> str:
    role = srv.admin(
        f"SELECT rolcanlogin::text || ' ' || coalesce(rolpassword, 'NULL') FROM pg_authid WHERE rolname = '{user}'"
    )
    owners = srv.admin(
        "SELECT string_agg(datname || '=' || pg_get_userbyid(datdba), ',' ORDER BY datname) FROM pg_database"
    )
    return f"{role or 'absent'} {owners}"


def user_state(srv: Server, user: str) -> str:
    return mysql_user_state(srv, user) if srv.engine == "mysql" else pg_user_state(srv, user)
