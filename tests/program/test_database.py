"""The Database component under Pulumi's mock runtime: what it registers for MySQL and PostgreSQL,
what depends on what, what is secret, and that no secret reaches any command text.

The recording monitor of tests/helpers/pulumi_mocks.py keeps every RegisterResource request
(parent, dependencies, options, raw inputs with their secret markers) and every
RegisterResourceOutputs, which the stock mock throws away. No dependency on lab.replay.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pulumi
import pytest

from components import config as config_mod
from components import database_render as r
from components.config import PROJECT
from components.remote_files_render import stdin_contents
from tests.helpers.pulumi_mocks import ProviderMocks, RecordingMonitor, Registration, runs, start, unwrap
from tests.helpers.stack_config import HOST_KEYS, lab_like

KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nMOCK-SERVER-KEY-MATERIAL-0123456789\n-----END EC PRIVATE KEY-----\n"
GENERATED_PW = "Gen3rated-Password_with.tilde~AB"
SITE_PW = "s1te:Pass@word/in-use"
"""The password the site's nodes use before the first up (in their config.json DSN)."""
CONFIGURED_PW = 'it\'s "c0nfigured" \\ p@ss:w/rd?&%'
ADMIN_PW = "admin'pw\"#x"
CA_FILE = "/etc/mattermost-tls/ca.crt"


def make_cfg(engine: str = "postgres", nodes: tuple[str, ...] = ("mm1", "mm2"), **extra: Any) -> config_mod.StackConfig:
    return lab_like(nodes, **{**extra, "database": {"engine": engine, **extra.get("database", {})}})


def node_output(engine: str, user: str) -> str:
    """What database_render.render_read_current_dsn prints on a node of the "before" state: no
    MM_SQLSETTINGS_* in the running server's environment, no EnvironmentFile of ours yet, and a
    config.json whose DSN logs in as `user` with SITE_PW."""
    from urllib.parse import quote

    if engine == "mysql":
        dsn = f"{user}:{SITE_PW}@tcp(10.251.0.20:3306)/mattermost?charset=utf8mb4,utf8"
    else:
        dsn = f"postgres://{user}:{quote(SITE_PW, safe='')}@10.251.0.21:5432/mattermost?sslmode=disable"
    config = json.dumps({"SqlSettings": {"DriverName": engine, "DataSource": dsn}})
    return "\n".join(base64.b64encode(x.encode()).decode() for x in ("", "", config))


class Mocks(ProviderMocks):
    validity_end = "2031-02-03T04:05:06Z"
    node_stdout = ""
    accounts_stdout = ""

    def private_key_pem(self, name: str) -> str:
        return KEY_PEM

    def other(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        if args.typ == "random:index/randomPassword:RandomPassword":
            return {"result": GENERATED_PW}
        if args.typ == "random:index/randomString:RandomString":
            if args.name.endswith("-login"):  # a rotation's login suffix: length 8 of [a-z0-9], as drawn
                return {"result": "ab12cd34"}
            # the provider draws anew whenever keepers change: mimic that with the host
            host = (args.inputs.get("keepers") or {}).get("host", "")
            return {"result": "tok" + "".join(c for c in host if c.isalnum())}
        return {}

    def command_stdout(self, name: str) -> str:
        return {"database-current-password": self.node_stdout, "database-accounts": self.accounts_stdout}.get(name, "")


@dataclass
class Run:
    monitor: RecordingMonitor
    values: dict[str, Any] = field(default_factory=dict)

    def by_name(self, name: str) -> Registration:
        return self.monitor.by_name(name)

    def names(self) -> set[str]:
        return {x.name for x in self.monitor.registrations}

    def commands(self) -> list[Registration]:
        return [x for x in self.monitor.registrations if x.type == "command:remote:Command"]

    def component(self) -> Registration:
        (reg,) = [x for x in self.monitor.registrations if x.type == "mattermost-tls:database:Database"]
        return reg


def start_mocks(cfg: config_mod.StackConfig, accounts_stdout: str = "") -> Run:
    """Pulumi's mock runtime with a RecordingMonitor; the nodes' DSN as in the "before" state."""
    mocks = Mocks()
    mocks.node_stdout = node_output(cfg.database.engine, cfg.database.user)
    mocks.accounts_stdout = accounts_stdout
    return Run(start(mocks))


def run_program(cfg: config_mod.StackConfig, enforce_after: tuple[str, ...] = ()) -> Run:
    """The component alone; with `enforce_after`, one stand-in command per name (a node's
    `ready`) and `enforce_tls` after them, as components/deployment.py wires it."""
    from pulumi_command import remote

    from components import adapter
    from components.database import Database
    from components.pki import Pki, PkiArgs

    run = start_mocks(cfg)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        pki = Pki("pki", PkiArgs(ca=cfg.ca))
        db = Database("database", adapter.database_args(cfg, pki))
        run.values["db"] = db
        if enforce_after:
            after = [
                remote.Command(n, connection=remote.ConnectionArgs(host="10.251.0.250"), create="true")
                for n in enforce_after
            ]
            run.values["enforced"] = db.enforce_tls(after)
        dsn = db.dsn(CA_FILE)
        return pulumi.Output.all(
            [x.urn for x in db.ready],
            db.password,
            pulumi.Output.from_input(db.password.is_secret()),
            dsn,
            pulumi.Output.from_input(dsn.is_secret()),
            db.server_cert_expiry,
        ).apply(
            lambda v: run.values.update(
                ready=v[0], password=v[1], password_secret=v[2], dsn=v[3], dsn_secret=v[4], expiry=v[5]
            )
        )

    program()
    return run


@pytest.fixture(scope="module")
def pg() -> Run:
    return run_program(make_cfg("postgres"))


@pytest.fixture(scope="module")
def my() -> Run:
    return run_program(make_cfg("mysql"))


# ---------------------------------------------------------------- graph


def test_postgres_graph_and_ready(pg: Run) -> None:
    comp = pg.component()
    assert comp.name == "database"
    children = {x.name: x for x in pg.monitor.registrations if x.parent == comp.urn}
    assert set(children) == {
        "database-current-password",
        "database-server-key",
        "database-server-csr",
        "database-server-cert",
        "database-server-tls",
        "database-pg-hba",
        "database-db-user-mmuser-owner",
        "database-db-user-mmuser",
    }
    tls, hba, user = (children[n] for n in ("database-server-tls", "database-pg-hba", "database-db-user-mmuser"))
    assert pg.values["ready"] == [tls.urn, hba.urn, user.urn]
    assert tls.urn in hba.dependencies, "pg_hba changes once TLS is live"
    assert {tls.urn, hba.urn} <= set(user.dependencies), "the user needs TLS only after the server offers it"
    db = pg.values["db"]
    assert db.driver_name == "postgres" and db.server_name == "10.251.0.21"


def test_mysql_graph_has_no_pg_hba_and_ready_is_tls_then_user(my: Run) -> None:
    comp = my.component()
    children = {x.name for x in my.monitor.registrations if x.parent == comp.urn}
    assert "database-pg-hba" not in children
    tls, user = my.by_name("database-server-tls"), my.by_name("database-db-user-mmuser")
    assert my.values["ready"] == [tls.urn, user.urn]
    assert tls.urn in user.dependencies
    assert my.values["db"].driver_name == "mysql"


def test_server_tls_files_are_the_ca_cert_key_and_conf_d_snippet(pg: Run, my: Run) -> None:
    for run, conf_path, svc in (
        (pg, "/etc/postgresql/15/main/conf.d/90-mattermost-tls.conf", "postgres"),
        (my, "/etc/mysql/mariadb.conf.d/90-mattermost-tls.cnf", "mysql"),
    ):
        cmd = run.by_name("database-server-tls")
        stdin, secret = unwrap(cmd.inputs["stdin"])
        assert secret, "the bundle carries the private key"
        ca, cert, key, conf = stdin_contents(stdin)
        assert "CERTIFICATE" in ca and "database-server-cert" in cert and key == KEY_PEM
        tls_dir = conf_path.rsplit("/", 2 if svc == "postgres" else 1)[0] + "/mattermost-tls"
        expected = r.render_pg_conf(tls_dir) if svc == "postgres" else r.render_mysql_cnf(tls_dir)
        assert conf == expected
        create = runs(cmd, "create")
        assert f"file 0600 {svc}:{svc}" in create and f"{tls_dir}/server.key" in create
        assert conf_path in create
        assert "openssl s_client -starttls" in create, "activation proves the server serves the new certificate"


def test_postgres_restarts_the_cluster_unit_and_blocks_plain_logins(pg: Run) -> None:
    tls = pg.by_name("database-server-tls")
    assert "systemctl restart postgresql@15-main" in runs(tls, "create")
    assert "pg_isready" in runs(tls, "create") and "journalctl -u postgresql@15-main -n 30" in runs(tls, "create")
    hba = pg.by_name("database-pg-hba")
    (block,) = stdin_contents(unwrap(hba.inputs["stdin"])[0])
    assert block == r.render_pg_hba_block("mattermost", "mmuser", ["10.251.0.101", "10.251.0.102"])
    assert "/etc/postgresql/15/main/pg_hba.conf" in runs(hba, "create")
    assert "systemctl reload postgresql@15-main" in runs(hba, "create")
    assert "systemctl reload postgresql@15-main" in runs(hba, "delete")


def test_certificate_is_for_the_name_the_dsn_uses_and_the_address() -> None:
    run = run_program(make_cfg("postgres", database={"serverName": "db.internal"}))
    csr = run.by_name("database-server-csr")
    assert csr.inputs["dnsNames"] == ["db.internal"]
    assert csr.inputs["ipAddresses"] == ["10.251.0.21"]
    assert csr.inputs["subject"]["commonName"] == "db.internal"
    assert "-verify_hostname db.internal" in runs(run.by_name("database-server-tls"), "create")
    assert run.values["dsn"].startswith("postgres://mmuser:") and "@db.internal:5432/" in run.values["dsn"]


def test_outputs_are_exactly_the_certificate_expiry(pg: Run) -> None:
    assert pg.monitor.outputs[pg.component().urn] == {"server_cert_expiry": "2031-02-03T04:05:06Z"}
    assert pg.values["expiry"] == "2031-02-03T04:05:06Z"


def test_adding_a_node_changes_only_the_hba_block() -> None:
    two, three = run_program(make_cfg("postgres")), run_program(make_cfg("postgres", nodes=("mm1", "mm2", "mm3")))
    assert {x.urn for x in two.monitor.registrations} == {x.urn for x in three.monitor.registrations}
    changed = {
        x.name
        for x in two.commands()
        if unwrap(x.inputs.get("stdin"))[0] != unwrap(three.by_name(x.name).inputs.get("stdin"))[0]
    }
    assert changed == {"database-pg-hba"}
    assert "10.251.0.103/32" in stdin_contents(unwrap(three.by_name("database-pg-hba").inputs["stdin"])[0])[0]


# ---------------------------------------------------------------- phase 2: enforcing TLS


def _phase1_texts(run: Run) -> str:
    """Every command text and decoded stdin line of the phase-1 resources (`ready`)."""
    out: list[str] = []
    for x in run.commands():
        if x.name.startswith("database-enforce-tls"):
            continue
        out += [str(x.inputs.get(k, "")) for k in ("create", "update", "delete")]
        stdin = unwrap(x.inputs.get("stdin"))[0]
        if stdin:
            out.append(str(stdin))
            if not x.name.startswith("host-helper-"):
                out += stdin_contents(stdin)
    return "\n".join(out)


@pytest.fixture(scope="module")
def pg_enforced() -> Run:
    return run_program(make_cfg("postgres"), enforce_after=("mm1-ready", "mm2-ready"))


@pytest.fixture(scope="module")
def my_enforced() -> Run:
    return run_program(make_cfg("mysql"), enforce_after=("mm1-ready", "mm2-ready"))


def test_phase1_offers_tls_but_never_refuses_plain_logins(pg_enforced: Run, my_enforced: Run) -> None:
    pg_text, my_text = _phase1_texts(pg_enforced), _phase1_texts(my_enforced)
    assert "hostssl" in pg_text and "ssl = on" in pg_text, "the check sees the phase-1 texts"
    assert "hostnossl" not in pg_text and "reject" not in pg_text
    assert "ssl_cert" in my_text and "IDENTIFIED BY" in my_text
    assert "require_secure_transport = ON" not in my_text and "SET GLOBAL" not in my_text
    assert "REQUIRE SSL" not in my_text


def test_postgres_enforce_is_its_own_reject_block_after_every_node(pg_enforced: Run) -> None:
    run = pg_enforced
    enforce = run.by_name("database-enforce-tls")
    assert [x._name for x in run.values["enforced"]] == ["database-enforce-tls"]
    assert enforce.parent == run.component().urn
    deps = set(enforce.dependencies)
    assert {run.by_name(n).urn for n in ("mm1-ready", "mm2-ready")} <= deps, "after every node's switch"
    assert {run.by_name(n).urn for n in ("database-server-tls", "database-pg-hba", "database-db-user-mmuser")} <= deps
    (block,) = stdin_contents(unwrap(enforce.inputs["stdin"])[0])
    assert block == r.render_pg_hba_enforce_block("mmuser")
    assert 'hostnossl all "mmuser" all reject' in block
    create = runs(enforce, "create")
    assert "/etc/postgresql/15/main/pg_hba.conf" in create and "systemctl reload postgresql@15-main" in create
    assert "no encryption" in create, "the reload is followed by proof that plain logins are refused"
    assert "systemctl reload postgresql@15-main" in runs(enforce, "delete")
    # no node's ready waits for it (a node that rolls back to plain must still reach the DB)
    for n in ("mm1-ready", "mm2-ready"):
        assert enforce.urn not in run.by_name(n).dependencies
    with pytest.raises(RuntimeError, match="already called"):
        run.values["db"].enforce_tls([])


def test_mysql_enforce_sets_require_secure_transport_and_require_ssl_after_every_node(my_enforced: Run) -> None:
    run = my_enforced
    assert [x._name for x in run.values["enforced"]] == ["database-enforce-tls", "database-enforce-tls-user-mmuser"]
    server, user = run.by_name("database-enforce-tls"), run.by_name("database-enforce-tls-user-mmuser")
    nodes = {run.by_name(n).urn for n in ("mm1-ready", "mm2-ready")}
    assert nodes <= set(server.dependencies)
    assert server.urn in user.dependencies, "the user step runs after (and is deleted before) the server step"
    (cnf,) = stdin_contents(unwrap(server.inputs["stdin"])[0])
    assert cnf == r.render_mysql_enforce_cnf()
    assert "/etc/mysql/mariadb.conf.d/91-mattermost-tls-enforce.cnf" in runs(server, "create")
    assert "SET GLOBAL require_secure_transport" in runs(server, "create")
    assert "systemctl restart" not in runs(server, "create"), "no second restart: the variable is dynamic"
    assert "SET GLOBAL require_secure_transport" in runs(server, "delete"), "delete puts the previous value back"
    assert "REQUIRE SSL" in runs(user, "create")
    assert "db-user-mmuser.require" in runs(user, "delete"), "delete puts the previous REQUIRE flags back"
    assert set(user.additional_secret_outputs) >= {"stdout", "stderr"}


# ---------------------------------------------------------------- secrets


def test_by_default_the_password_is_the_one_the_site_uses(pg: Run, my: Run) -> None:
    """No dbPassword: nothing generated; the first node's current DSN is read at apply time (a
    secret output) and its password is the user's password, unchanged."""
    for run in (pg, my):
        assert "database-password" not in run.names()
        assert run.values["password"] == SITE_PW and run.values["password_secret"] is True
        read = run.by_name("database-current-password")
        assert set(read.additional_secret_outputs) >= {"stdout", "stderr"} and read.inputs["logging"] == "none"
        conn, _ = unwrap(read.inputs["connection"])
        assert conn["host"] == "10.251.0.101" and conn["hostKey"] == HOST_KEYS["mm1"], "the first node"
        assert "delete" not in read.inputs, "a read leaves nothing to undo"
        assert "/opt/mattermost/config/config.json" in runs(read, "create")


def test_rotation_is_explicit_and_generated_password_is_secret_and_safe() -> None:
    run = run_program(make_cfg("postgres", database={"rotatePassword": True}))
    assert "database-current-password" not in run.names()
    gen = run.by_name("database-password")
    assert gen.type == "random:index/randomPassword:RandomPassword"
    assert gen.inputs["length"] == 32
    assert gen.inputs["overrideSpecial"] == r.RANDOM_PASSWORD_SPECIALS and gen.inputs["special"] is True
    assert run.values["password"] == GENERATED_PW and run.values["password_secret"] is True


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_rotation_gives_the_new_password_its_own_login_and_retires_the_old_one_last(engine: str) -> None:
    """Both logins work during the switch (database_render "password rotation"): the user
    command leaves the user's password alone, the new login (TLS only) is ready before any node,
    the nodes' DSN names it, and the old login is retired after every node (the enforce step)."""
    run = run_program(make_cfg(engine, database={"rotatePassword": True}), enforce_after=("mm1-ready", "mm2-ready"))
    login = run.by_name("database-login-mmuser")
    user = run.by_name("database-db-user-mmuser")
    tail = [user.urn, *([run.by_name("database-login-hba").urn] if engine == "postgres" else []), login.urn]
    assert run.values["ready"][-len(tail) :] == tail, "the login is part of phase 1, what the nodes wait for"
    stdin, secret = unwrap(login.inputs["stdin"])
    assert secret and GENERATED_PW not in str(login.inputs["create"]) + str(login.inputs.get("delete"))

    def decoded(manifest: str) -> str:  # the input's base64 lines (run_script), decoded
        lines = [ln[2:] for ln in manifest.splitlines() if ln.startswith("| ")]
        out = []
        for ln in lines:
            try:
                out.append(base64.b64decode(ln, validate=True).decode())
            except ValueError:
                continue
        return "\n".join(out)

    assert GENERATED_PW in decoded(stdin), "the new password is the login's"
    assert GENERATED_PW not in decoded(unwrap(user.inputs["stdin"])[0]), "the user keeps its password"
    assert run.by_name("database-password").inputs["keepers"] == {"login": "ab12cd34"}
    retire = run.by_name("database-retire-mmuser")
    assert {run.by_name(n).urn for n in ("mm1-ready", "mm2-ready")} <= set(retire.dependencies)
    assert "database-retire-mmuser" in [x._name for x in run.values["enforced"]]
    if engine == "postgres":
        assert run.values["dsn"].startswith("postgres://mmuser_ab12cd34:")
    else:
        assert run.values["dsn"].startswith("mmuser_ab12cd34:")


def test_rotation_refuses_a_user_name_its_login_would_not_fit() -> None:
    with pytest.raises(config_mod.ConfigError, match=f"{PROJECT}:database.user: .*rotatePassword"):
        run_program(make_cfg("mysql", database={"rotatePassword": True, "user": "u" * 30}))


def test_configured_password_is_used_and_secret() -> None:
    run = run_program(make_cfg("mysql", dbPassword=CONFIGURED_PW))
    assert "database-password" not in run.names()
    assert run.values["password"] == CONFIGURED_PW and run.values["password_secret"] is True


def test_configured_password_with_a_newline_fails_naming_the_key() -> None:
    with pytest.raises(config_mod.ConfigError, match=f"{PROJECT}:dbPassword: .*control characters"):
        run_program(make_cfg("postgres", dbPassword="two\nlines"))


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_no_secret_in_any_command_text(engine: str) -> None:
    run = run_program(
        make_cfg(engine, dbPassword=CONFIGURED_PW, dbAdminPassword=ADMIN_PW, database={"adminUser": "dbadmin"})
    )
    secrets = [
        CONFIGURED_PW,
        ADMIN_PW,
        KEY_PEM,
        "MOCK-SERVER-KEY-MATERIAL",
        base64.b64encode(KEY_PEM.encode()).decode()[:24],
    ]
    secrets += [r.mysql_string(CONFIGURED_PW), r.pg_string(CONFIGURED_PW)]
    assert run.commands()
    for cmd in run.commands():
        for part in ("create", "update", "delete"):
            text = cmd.inputs.get(part)
            if text is None:
                continue
            text, secret = unwrap(text)
            assert not secret and isinstance(text, str), f"{cmd.name}.{part} must be plain text"
            for s in secrets:
                assert s not in text, f"{cmd.name}.{part} leaks a secret"
        stdin, secret = unwrap(cmd.inputs.get("stdin"))
        if cmd.name != "database-pg-hba" and not cmd.name.startswith("host-helper-"):
            assert secret, f"{cmd.name}: stdin carries secrets"
            assert set(cmd.additional_secret_outputs) >= {"stdout", "stderr"}
            assert cmd.inputs["logging"] == "none"
        unwrapped_conn, conn_secret = unwrap(cmd.inputs["connection"])
        assert conn_secret and unwrapped_conn["hostKey"] == HOST_KEYS["db"]


def test_user_command_reads_token_admin_file_and_sql_from_stdin(pg: Run) -> None:
    cmd = pg.by_name("database-db-user-mmuser")
    token, admin, sql = stdin_contents(unwrap(cmd.inputs["stdin"])[0])
    assert token == "tok10251021"
    assert admin == "", "local socket admin: no credentials"
    assert sql == r.render_user_sql("postgres", user="mmuser", database="mattermost", password=SITE_PW)
    assert cmd.inputs["triggers"] == [token], "a new owner token (new host) replaces the command"
    owner = pg.by_name("database-db-user-mmuser-owner")
    assert owner.inputs["keepers"] == {"host": "10.251.0.21"}
    assert runs(cmd, "create").endswith(
        r.render_user_apply(
            "postgres",
            user="mmuser",
            database="mattermost",
            client=r.server_control(
                "postgres", service="postgresql", port=5432, config_dir="/etc/postgresql/15/main"
            ).local_sql,
        )
    )
    assert "runuser -u postgres -- psql" in runs(cmd, "create")
    assert "/var/lib/mattermost-transport-encryption/db-user-mmuser.sql" in runs(cmd, "delete")


def test_admin_user_goes_through_a_credentials_file_not_argv() -> None:
    run = run_program(make_cfg("mysql", dbAdminPassword=ADMIN_PW, database={"adminUser": "dbadmin"}))
    cmd = run.by_name("database-db-user-mmuser")
    _, admin, _ = stdin_contents(unwrap(cmd.inputs["stdin"])[0])
    assert "user = dbadmin" in admin and "ssl-ca = /etc/mysql/mariadb.conf.d/mattermost-tls/ca.crt" in admin
    assert "host = 10.251.0.20" in admin and "ssl-verify-server-cert" in admin
    assert 'mysql --defaults-file="$tmp/admin"' in runs(cmd, "create")
    assert 'mysql --defaults-file="$tmp/admin"' in runs(cmd, "delete")


def test_a_different_user_is_a_different_resource() -> None:
    run = run_program(make_cfg("postgres", database={"user": "mattermost_app"}))
    assert {"database-db-user-mattermost_app", "database-db-user-mattermost_app-owner"} <= run.names()
    assert "/db-user-mattermost_app.sql" in runs(run.by_name("database-db-user-mattermost_app"), "create")


def test_moving_the_database_host_changes_the_owner_token() -> None:
    a = run_program(make_cfg("postgres"))
    b = run_program(make_cfg("postgres", database={"ssh": {"hostKey": HOST_KEYS["db"], "address": "192.0.2.7"}}))
    assert (
        a.by_name("database-db-user-mmuser").inputs["triggers"]
        != b.by_name("database-db-user-mmuser").inputs["triggers"]
    )


# ---------------------------------------------------------------- DSN


def test_dsn_is_secret_and_follows_the_contract(pg: Run, my: Run) -> None:
    assert pg.values["dsn_secret"] is True and my.values["dsn_secret"] is True
    assert pg.values["dsn"] == (
        f"postgres://mmuser:{quote(SITE_PW, safe='')}@10.251.0.21:5432/mattermost"
        f"?sslmode=verify-full&sslrootcert={CA_FILE}&connect_timeout=10"
    )
    assert my.values["dsn"] == (
        f"mmuser:{SITE_PW}@tcp(10.251.0.20:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s&tls=true"
    )


def test_configured_password_is_escaped_in_the_postgres_dsn() -> None:
    run = run_program(make_cfg("postgres", dbPassword=CONFIGURED_PW))
    assert "it%27s%20%22c0nfigured%22%20%5C%20p%40ss%3Aw%2Frd%3F%26%25@10.251.0.21" in run.values["dsn"]


# ---------------------------------------------------------------- GitLab's own role and database

GITLAB = {"enabled": True, "address": "10.251.0.31", "ssh": {"hostKey": HOST_KEYS["db"]}, "externalPostgres": True}
GITLAB_CA = "/etc/gitlab/trusted-certs/mattermost-transport-ca.crt"


def run_gitlab(cfg: config_mod.StackConfig) -> Run:
    """The component with GitLab's bundled Mattermost on the external PostgreSQL: one stand-in
    command for GitLab's `ready`, then enforce_gitlab_tls after it, as components/deployment.py wires it."""
    from pulumi_command import remote

    from components import adapter
    from components.database import Database
    from components.pki import Pki, PkiArgs

    run = start_mocks(cfg)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        pki = Pki("pki", PkiArgs(ca=cfg.ca))
        db = Database("database", adapter.database_args(cfg, pki))
        gitlab = remote.Command("gitlab-gitlab-rb", connection=remote.ConnectionArgs(host="10.251.0.31"), create="true")
        run.values["enforced"] = db.enforce_gitlab_tls([gitlab])
        run.values["db"] = db
        if not db.gitlab_ready:
            return pulumi.Output.from_input(None).apply(lambda _: run.values.update(ready=[]))
        dsn = db.gitlab_dsn(GITLAB_CA)
        return pulumi.Output.all(
            [x.urn for x in db.gitlab_ready], dsn, pulumi.Output.from_input(dsn.is_secret()), db.dsn(CA_FILE)
        ).apply(lambda v: run.values.update(ready=v[0], dsn=v[1], dsn_secret=v[2], node_dsn=v[3]))

    program()
    return run


def test_gitlab_gets_its_own_role_database_hba_line_and_reject_line() -> None:
    run = run_gitlab(make_cfg("postgres", gitlab=GITLAB))
    role = "database-gitlab-db-user-gitlab_mmuser"
    names = run.names()
    assert {"database-gitlab-password", f"{role}-owner", role, "database-gitlab-pg-hba", "database-gitlab-enforce-tls"} <= names
    tls, hba, user = (run.by_name(n) for n in ("database-server-tls", "database-gitlab-pg-hba", role))
    assert run.values["ready"] == [tls.urn, hba.urn, user.urn]
    assert tls.urn in hba.dependencies and {tls.urn, hba.urn} <= set(user.dependencies)
    # the GitLab host is admitted to its own database as its own role, over TLS, and nothing else
    (gl_block,) = stdin_contents(unwrap(hba.inputs["stdin"])[0])
    assert gl_block == r.render_pg_hba_block("gitlab_mattermost", "gitlab_mmuser", ["10.251.0.31"])
    assert 'hostssl "gitlab_mattermost" "gitlab_mmuser" 10.251.0.31/32 scram-sha-256' in gl_block
    (nodes_block,) = stdin_contents(unwrap(run.by_name("database-pg-hba").inputs["stdin"])[0])
    assert "hostssl" in nodes_block and "10.251.0.31" not in nodes_block, "the nodes' lines do not admit GitLab"
    enforce = run.by_name("database-gitlab-enforce-tls")
    gitlab = run.by_name("gitlab-gitlab-rb")
    assert gitlab.urn in enforce.dependencies and user.urn in enforce.dependencies
    (enforce_block,) = stdin_contents(unwrap(enforce.inputs["stdin"])[0])
    assert enforce_block == r.render_pg_hba_enforce_block("gitlab_mmuser")
    assert "no encryption" in runs(enforce, "create"), "the reload is followed by proof plain logins are refused"
    # its own secret DSN: own role, own database, generated password, the GitLab host's CA
    assert run.values["dsn_secret"] is True
    dsn = run.values["dsn"]
    assert dsn.startswith(f"postgres://gitlab_mmuser:{quote(GENERATED_PW, safe='')}@10.251.0.21:5432/gitlab_mattermost?")
    assert f"sslrootcert={GITLAB_CA}" in dsn and "sslmode=verify-full" in dsn
    assert "/mattermost?" in run.values["node_dsn"] and "mmuser:" in run.values["node_dsn"]
    # the role script creates the database before the backup, and its restore drops only what it made
    create, delete = runs(user, "create"), runs(user, "delete")
    assert create.index("CREATE DATABASE") < create.index("previous state saved")
    assert delete.index("DROP DATABASE IF EXISTS") < delete.index('sql -1 -f - < "$backup"')
    assert "db-user-gitlab_mmuser.created-database" in create and "db-user-gitlab_mmuser.created-database" in delete
    _, sql_secret = unwrap(run.by_name(role).inputs["stdin"])
    assert sql_secret, "the role's SQL (with its password) travels as a secret"
    for cmd in run.commands():
        assert GENERATED_PW not in json.dumps({k: v for k, v in cmd.inputs.items() if k != "stdin"})


def test_gitlab_without_external_postgres_has_no_role() -> None:
    run = run_gitlab(make_cfg("postgres", gitlab={**GITLAB, "externalPostgres": False}))
    assert not {n for n in run.names() if n.startswith("database-gitlab")}
    assert run.values["enforced"] == [] and run.values["ready"] == []


# ---------------------------------------------------------------- MySQL accounts


def accounts_output(*accounts: str, skip: bool = False) -> str:
    """What database_accounts.render_accounts_read prints on the database host."""
    rows = [f"{u.encode().hex().upper()}\t{h.encode().hex().upper()}" for u, h in (a.split("@") for a in accounts)]
    return "\n".join([f"skip_name_resolve {int(skip)}", *rows]) + "\n"


def run_accounts(cfg: config_mod.StackConfig, accounts_stdout: str) -> tuple[Run, BaseException | None]:
    """database_preflight, its barrier and the Database after it, as components/deployment.py wires them."""
    from pulumi_command import remote

    from components import adapter
    from components.database import Database, database_preflight
    from components.pki import Pki, PkiArgs

    run = start_mocks(cfg, accounts_stdout)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        pre = database_preflight(adapter.database_preflight_args(cfg))
        passed = remote.Command(
            "preflights-passed", connection=remote.ConnectionArgs(host="10.251.0.250"), opts=pulumi.ResourceOptions(depends_on=pre.resources)
        )
        pki = Pki("pki", PkiArgs(ca=cfg.ca), pulumi.ResourceOptions(depends_on=[passed]))
        db = Database(
            "database",
            adapter.database_args(cfg, pki, preflight=pre),
            pulumi.ResourceOptions(depends_on=[passed]),
        )
        run.values["enforced"] = db.enforce_tls([])
        return pre.mysql_hosts.apply(lambda h: run.values.update(hosts=h))

    try:
        program()
    except Exception as e:  # noqa: BLE001 - the refusal under test
        return run, e
    return run, None


def test_mysql_accounts_preflight_gates_everything_and_feeds_every_account_the_nodes_use() -> None:
    cfg = make_cfg("mysql")
    run, error = run_accounts(cfg, accounts_output("mmuser@%", "mmuser@10.251.0.102", "mmuser@localhost"))
    assert error is None, error
    read, checked, passed = (run.by_name(n) for n in ("database-accounts", "database-accounts-checked", "preflights-passed"))
    assert read.urn in checked.dependencies and checked.urn in passed.dependencies
    assert "create" not in checked.inputs, "the decision runs no command"
    assert run.values["hosts"] == ["%", "10.251.0.102"], "mm2 logs in through its own account"
    sql = "".join(stdin_contents(unwrap(run.by_name("database-db-user-mmuser").inputs["stdin"])[0]))
    for host in ("'%'", "'10.251.0.102'"):
        assert f"ALTER USER 'mmuser'@{host} IDENTIFIED BY" in sql and f"TO 'mmuser'@{host}" in sql
    assert "'localhost'" not in sql
    _, previous, require = stdin_contents(unwrap(run.by_name("database-enforce-tls-user-mmuser").inputs["stdin"])[0])
    assert "Host IN ('%', '10.251.0.102')" in previous
    assert require.splitlines() == ["ALTER USER 'mmuser'@'%' REQUIRE SSL;", "ALTER USER 'mmuser'@'10.251.0.102' REQUIRE SSL;"]


def test_mysql_anonymous_winner_stops_the_run_before_anything_changes() -> None:
    # in its own interpreter: a refused program leaves failed registrations in Pulumi's
    # process-wide runtime, which the next program in this process would report as its own
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, runpy, sys\n"
        "m = runpy.run_path(sys.argv[1])  # this module's own functions, in a fresh runtime\n"
        "run, error = m['run_accounts'](m['make_cfg']('mysql'), m['accounts_output']('mmuser@%', '@10.251.0.101'))\n"
        "import pulumi\n"
        "print(json.dumps({'error': str(error or ''), 'run_error': isinstance(error, pulumi.RunError), 'names': sorted(run.names())}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", script, __file__], cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "mattermost-transport-encryption:database.user: node mm1 (10.251.0.101) would log in as the anonymous account ''@'10.251.0.101'" in out["error"]
    # raised inside an apply, after __main__.py returned: a RunError itself, so the CLI prints it alone
    assert out["run_error"], "the refusal must reach the language host as a RunError"
    names = set(out["names"])
    assert "database-accounts" in names
    assert not names & {"database-accounts-checked", "preflights-passed", "database-server-tls", "database-db-user-mmuser"}
