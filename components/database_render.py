"""Pure renderers for app -> database TLS (MySQL/MariaDB and PostgreSQL).

Owns every text the Database component sends to the database host or hands to Mattermost: the
server's TLS configuration, the pg_hba.conf block, the shell that restarts the server and
proves it serves the stack CA's certificate, the Mattermost user's SQL with its backup and
restore scripts, the admin credentials file and the Mattermost DSN. Plain values in, text out;
no Pulumi here, so everything is tested by running it (sh, real throwaway servers).

Quoting rules, in one place:
- SQL string literals: PostgreSQL with `standard_conforming_strings = on` (set by the script)
  and MySQL with `sql_mode = 'NO_BACKSLASH_ESCAPES'` (set by the script), so in both only the
  quote character is doubled and a backslash is an ordinary character.
- Identifiers: always quoted ("x" / `x`); config already restricts them to [A-Za-z0-9_].
- Shell: every value through shlex.quote; secrets never reach a command line (stdin only).
- DSN: PostgreSQL is a URL (user and password percent-encoded); go-sql-driver takes the MySQL
  password raw (it splits at the LAST '@' before the LAST '/' and the first ':'), so any
  printable character works there and nothing is escaped. Control characters are refused for
  configured passwords; generated passwords use only [A-Za-z0-9] and RANDOM_PASSWORD_SPECIALS.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from components.passwords import check_password  # re-exported: database.py checks dbPassword with it
from components.platform import DEBIAN, STATE_DIR, Platform
from components.remote_files_render import encode_bundle
from components.shell import piece, q, script
from components.tls_files import TlsFiles

Engine = Literal["mysql", "postgres"]
ENGINES: tuple[Engine, ...] = ("mysql", "postgres")

MYSQL_CNF = "90-mattermost-tls.cnf"
MYSQL_ENFORCE_CNF = "91-mattermost-tls-enforce.cnf"
PG_CONF = "conf.d/90-mattermost-tls.conf"
TLS_VERSIONS = "TLSv1.2,TLSv1.3"
PG_MIN_TLS = "TLSv1.2"
WAIT_SECONDS = 60
LOG_LINES = 30

RANDOM_PASSWORD_LENGTH = 32
RANDOM_PASSWORD_SPECIALS = "-_.~"
"""URL-unreserved, so a generated password needs no escaping in a URL, a go-sql-driver DSN, SQL,
a systemd EnvironmentFile or shell; one of them is always present for password policies
(MariaDB simple_password_check, MySQL validate_password) that demand a special character."""


_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_UNIT = re.compile(r"^[A-Za-z0-9_.@-]{1,200}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")



def _engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise ValueError(f"engine must be mysql or postgres: {engine!r}")
    return engine  # type: ignore[return-value]


def _path(value: str) -> str:
    if not _PLAIN_PATH.match(value) or "/../" in value + "/":
        raise ValueError(f"not a plain absolute path: {value!r}")
    return value


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"not a plain SQL identifier: {value!r}")
    return value


def _hostport(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------- values and quoting


def mysql_string(value: str) -> str:
    """A MySQL string literal for a session with sql_mode NO_BACKSLASH_ESCAPES."""
    return "'" + value.replace("'", "''") + "'"


def mysql_ident(name: str) -> str:
    return "`" + _ident(name) + "`"


def mysql_grant_db(name: str) -> str:
    """A database name in GRANT ... ON `db`.*: '_' and '%' are wildcards there, so escape them."""
    return "`" + _ident(name).replace("_", "\\_") + "`"


def pg_string(value: str) -> str:
    """A PostgreSQL string literal for standard_conforming_strings = on."""
    return "'" + value.replace("'", "''") + "'"


def pg_ident(name: str) -> str:
    return '"' + _ident(name).replace('"', '""') + '"'


def hba_word(name: str) -> str:
    """A pg_hba.conf database/user field, quoted so 'all', 'sameuser' or 'replication' stay names."""
    return '"' + _ident(name) + '"'


def _pg_conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _option_file_value(value: str) -> str:
    """A value in a MySQL/MariaDB option file: double-quoted, with \\ " ' escaped (my_default.c)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'") + '"'


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- server configuration


@dataclass(frozen=True)
class TlsPaths(TlsFiles):
    """Where the server's CA, certificate and key live on the database host."""


def tls_paths(tls_dir: str) -> TlsPaths:
    d = _path(tls_dir).rstrip("/")
    return TlsPaths(ca=f"{d}/ca.crt", cert=f"{d}/server.crt", key=f"{d}/server.key")


def server_config_path(engine: str, config_dir: str) -> str:
    """The file that turns TLS on: a conf.d snippet both servers read after their main config."""
    return f"{_path(config_dir).rstrip('/')}/{MYSQL_CNF if _engine(engine) == 'mysql' else PG_CONF}"


def render_mysql_cnf(tls_dir: str) -> str:
    """[mysqld] TLS settings: TLS offered with the stack CA, plain TCP still allowed. Refusing
    plain logins is phase 2 (`render_mysql_enforce_cnf`), after every node uses its TLS DSN."""
    p = tls_paths(tls_dir)
    return (
        "# Managed by mattermost-transport-encryption: TLS for every TCP client, with the stack CA.\n"
        "[mysqld]\n"
        f"ssl_ca = {p.ca}\n"
        f"ssl_cert = {p.cert}\n"
        f"ssl_key = {p.key}\n"
        f"tls_version = {TLS_VERSIONS}\n"
    )


def mysql_enforce_config_path(config_dir: str) -> str:
    """The option file that persists require_secure_transport (read after MYSQL_CNF)."""
    return f"{_path(config_dir).rstrip('/')}/{MYSQL_ENFORCE_CNF}"


def render_mysql_enforce_cnf() -> str:
    """Phase 2, persisted: `require_secure_transport` refuses every plain TCP login (the unix
    socket stays usable for local administration). Set live by `render_mysql_enforce_activate`,
    so no restart is needed; this file keeps it across restarts."""
    return (
        "# Managed by mattermost-transport-encryption: every TCP client must use TLS.\n"
        "[mysqld]\n"
        "require_secure_transport = ON\n"
    )


def render_mysql_enforce_activate(control: ServerControl, *, config_file: str) -> str:
    """Make the running server match the option files for require_secure_transport (a dynamic
    variable in MariaDB >= 10.5.2 and MySQL >= 5.7.8): ON while our file is in place, else
    whatever the remaining option files say (so a destroy puts the previous value back)."""
    if control.config_check is None:
        raise ValueError("MySQL/MariaDB control without config_check")
    return script(
        "db-mysql-enforce-activate.sh",
        code={"config_check": control.config_check, "local_sql": control.local_sql},
        config_file=config_file,
    )


PG_SETTINGS = ("ssl", "ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_min_protocol_version")


def render_pg_conf(tls_dir: str) -> str:
    """postgresql.conf snippet for conf.d (Debian's postgresql.conf ends with include_dir = 'conf.d',
    so it wins over the ssl lines above it)."""
    p = tls_paths(tls_dir)
    return (
        "# Managed by mattermost-transport-encryption: TLS with the stack CA.\n"
        "ssl = on\n"
        f"ssl_cert_file = {_pg_conf_string(p.cert)}\n"
        f"ssl_key_file = {_pg_conf_string(p.key)}\n"
        f"ssl_ca_file = {_pg_conf_string(p.ca)}\n"
        f"ssl_min_protocol_version = {_pg_conf_string(PG_MIN_TLS)}\n"
    )


def render_pg_hba_block(database: str, user: str, client_addresses: list[str]) -> str:
    """Phase 1, the block at the top of pg_hba.conf: each client may log in as the Mattermost user
    over TLS with SCRAM. Plain logins still reach the file's older lines (e.g. a plain
    `host ... mmuser ...`) until phase 2 (`render_pg_hba_enforce_block`)."""
    if not client_addresses:
        raise ValueError("pg_hba block: no client addresses (the Mattermost nodes)")
    lines = [
        "# Mattermost logs in over TLS only (managed by mattermost-transport-encryption).",
    ]
    seen: list[str] = []
    for a in client_addresses:
        ip = ipaddress.ip_address(a)
        cidr = f"{ip}/{32 if ip.version == 4 else 128}"
        if cidr not in seen:
            seen.append(cidr)
            lines.append(f"hostssl {hba_word(database)} {hba_word(user)} {cidr} scram-sha-256")
    return "\n".join(lines) + "\n"


def render_pg_hba_enforce_block(user: str) -> str:
    """Phase 2, its own block at the top of pg_hba.conf, once every client uses its TLS DSN: any
    non-TLS TCP login of the Mattermost user, to any database, is refused before the file's
    older lines are reached (hostssl lines are not affected: they match only TLS)."""
    return (
        "# Mattermost may not log in without TLS (managed by mattermost-transport-encryption).\n"
        f"hostnossl all {hba_word(user)} all reject\n"
    )


# ---------------------------------------------------------------- server control


@dataclass(frozen=True)
class ServerControl:
    """Shell fragments that operate the database server on its host (trusted text: built from
    validated config by `server_control`, or by tests for a throwaway server)."""

    name: str
    """What to call the server in messages, e.g. the unit name."""
    restart: str
    """Restart and return when the restart is done (or failed)."""
    reload: str
    """Re-read configuration (pg_hba.conf) without a restart."""
    probe: str
    """Exit 0 once the server answers locally."""
    logs: str
    """Print the server's last log lines."""
    local_sql: str
    """The local admin client (unix socket): `mysql ...` / `psql ...`, SQL from stdin or -e/-c."""
    config_check: str | None = None
    """MySQL/MariaDB: print the options the server would start with (`mariadbd --help --verbose`)."""


def server_control(
    engine: str, *, service: str, port: int, config_dir: str, platform: Platform = DEBIAN
) -> ServerControl:
    """How the host's packages run the server. For PostgreSQL, Debian's `postgresql` unit is an
    umbrella whose restart returns before (and regardless of whether) the cluster is back, so
    the cluster's own unit (postgresql@15-main) is used when the config dir names it
    (`Platform.postgres_unit`)."""
    if not _UNIT.match(service):
        raise ValueError(f"not a unit name: {service!r}")
    if _engine(engine) == "mysql":
        unit = service
        return ServerControl(
            name=unit,
            restart=f"systemctl restart {q(unit)}",
            reload=f"systemctl restart {q(unit)}",
            probe="mysqladmin --connect-timeout=2 ping",
            logs=f"journalctl -u {q(unit)} -n {LOG_LINES} --no-pager",
            local_sql="mysql --protocol=socket",
            config_check="srv=$("
            + " || ".join(f"command -v {q(b)}" for b in platform.mysql_server_binaries)
            + ') && "$srv" --help --verbose',
        )
    cluster = platform.postgres_unit(config_dir)
    unit = cluster[0] if cluster and service == platform.postgres_service else service
    logfile = cluster[1] if cluster else None
    logs = f"journalctl -u {q(unit)} -n {LOG_LINES} --no-pager"
    if logfile:
        logs += f"; if [ -r {q(logfile)} ]; then echo '--- '{q(logfile)}; tail -n {LOG_LINES} {q(logfile)}; fi"
    sock = q(platform.postgres_socket_dir)
    return ServerControl(
        name=unit,
        restart=f"systemctl restart {q(unit)}",
        reload=f"systemctl reload {q(unit)}",
        probe=f"pg_isready -q -h {sock} -p {int(port)} -t 2",
        logs=logs,
        local_sql=f"runuser -u {q(platform.postgres_user)} -- psql -X -q -v ON_ERROR_STOP=1 -h {sock} -p {int(port)} -d postgres",
    )


def render_tls_probe(engine: str, *, address: str, port: int, ca_file: str, server_name: str) -> str:
    """Exit 0 only if the server, asked the way Mattermost asks (STARTTLS of its protocol), serves
    a certificate from the stack CA that is valid for `server_name` (verify-full)."""
    try:
        ipaddress.ip_address(server_name)
        flag = "-verify_ip"  # an address is checked against the certificate's IP SANs
    except ValueError:
        flag = "-verify_hostname"
    verify = f"{flag} {q(server_name)}"
    return (
        f"timeout 20 openssl s_client -starttls {_engine(engine)} -connect {q(_hostport(address, port))} "
        f"-CAfile {q(_path(ca_file))} -verify_return_error {verify} -brief </dev/null"
    )


def render_activate(
    control: ServerControl, *, config_file: str, tls_probe: str, wait_seconds: int = WAIT_SECONDS
) -> str:
    """Restart, wait (bounded) until the server answers, then, if our TLS config is in place,
    prove it serves our certificate. Any failure prints the server's own log lines and exits
    non-zero, so remote_files puts the previous files back and runs this again. After a
    rollback of the first apply our config file is gone and the probe is skipped."""
    probe = piece("db-tls-probe-once.sh", code={"tls_probe": tls_probe}, name=control.name)
    code = {
        "logs": control.logs,
        "restart": control.restart,
        "wait_answer": _wait_answer(control, wait_seconds, after="the restart"),
        "tls_check": _tls_check(control, config_file, how="restarted", probe=probe),
    }
    return script("db-activate.sh", code=code, name=control.name)


def _tls_check(control: ServerControl, config_file: str, *, how: str, probe: str) -> str:
    """While our config file is in place (not after a rollback of the first apply), `probe`
    proves the server serves our certificate; `how` says what happened (shell text inside double
    quotes)."""
    return piece("db-tls-check.sh", code={"probe": probe, "how": how}, name=control.name, config_file=config_file)


def _wait_answer(control: ServerControl, wait_seconds: int, *, after: str) -> str:
    """Wait (bounded) until the server answers locally; `after` ends the message (shell text
    inside double quotes)."""
    return piece(
        "db-wait-answer.sh", code={"probe": control.probe, "what": after}, name=control.name, wait_seconds=int(wait_seconds)
    )


PROBE_RETRY_SECONDS = 10
"""How long the TLS probe after a PostgreSQL reload may wait for the reload to be applied."""


def render_pg_reload_activate(
    control: ServerControl, *, config_file: str, tls_probe: str, wait_seconds: int = WAIT_SECONDS
) -> str:
    """PostgreSQL's activation: its SSL settings (ssl, ssl_cert_file, ssl_key_file, ssl_ca_file,
    ssl_min_protocol_version) take effect on a configuration RELOAD since PostgreSQL 10, so a
    running server is reloaded, not restarted: every open connection of every node stays up.
    A restart drops them all, and each node's next query then needs a new login while the
    server is starting (the lab's database-touching load lost 6-7 requests to it). A server
    that is down is started as `render_activate` does. The TLS probe is retried (a reload is
    applied asynchronously) for up to PROBE_RETRY_SECONDS; failing it, the previous files come back and
    this runs again."""
    probe = piece(
        "db-tls-probe-retry.sh",
        code={"tls_probe": tls_probe},
        name=control.name,
        probe_seconds=min(int(wait_seconds), PROBE_RETRY_SECONDS),
    )
    code = {
        "logs": control.logs,
        "reload": control.reload,
        "restart": control.restart,
        "probe": control.probe,
        "wait_answer": _wait_answer(control, wait_seconds, after="being $mtm_how"),
        "tls_check": _tls_check(control, config_file, how="$mtm_how", probe=probe),
    }
    return script("db-reload-activate.sh", code=code, name=control.name)


def render_validate(
    engine: str, control: ServerControl, *, config_file: str, tls_dir: str, platform: Platform = DEBIAN
) -> str:
    """Before the restart: the key is readable by the server's user, and the server would really
    use our settings (not shadowed by a later file or ALTER SYSTEM). MariaDB answers from its
    option parser; PostgreSQL from pg_file_settings (needs the running server; skipped if it is
    down, the post-restart TLS probe still decides)."""
    p = tls_paths(tls_dir)
    # the server user is a Platform value (no shell characters): one bare word, also in the message
    key = script("db-validate-key.sh", server_user=platform.server_user(_engine(engine)), key=p.key)
    if engine == "mysql":
        if control.config_check is None:
            return key
        want = "\n".join(sorted([f"ssl-ca={p.ca}", f"ssl-cert={p.cert}", f"ssl-key={p.key}"]))
        return key + script(
            "db-validate-mysql.sh", code={"config_check": control.config_check}, want=want, config_file=config_file
        )
    names = ", ".join(pg_string(s) for s in PG_SETTINGS)
    want = "\n".join(f"{s}=t" for s in PG_SETTINGS)
    check = (
        f"SELECT name || '=' || CASE WHEN applied AND error IS NULL THEN 't' ELSE 'f' END "
        f"FROM pg_catalog.pg_file_settings WHERE sourcefile = {pg_string(config_file)} ORDER BY name"
    )
    explain = (
        "SELECT sourcefile || ':' || sourceline || ' ' || name || ' = ' || coalesce(setting, '') || "
        "CASE WHEN applied THEN ' (applied)' ELSE ' (not applied)' END || coalesce(' ' || error, '') "
        f"FROM pg_catalog.pg_file_settings WHERE name IN ({names}) OR error IS NOT NULL ORDER BY seqno"
    )
    return key + script(
        "db-validate-postgres.sh",
        code={"local_sql": control.local_sql},
        check=check,
        want=want,
        config_file=config_file,
        explain=explain,
    )


def render_hba_validate(control: ServerControl, *, hba_file: str) -> str:
    """Before the reload: the server reads this pg_hba.conf and finds no error in it (PostgreSQL
    would otherwise keep its old rules and only log the error)."""
    setting = "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'hba_file'"
    errors = (
        "SELECT line_number || ': ' || error FROM pg_catalog.pg_hba_file_rules "
        "WHERE error IS NOT NULL ORDER BY line_number"
    )
    return script(
        "db-hba-validate.sh", code={"local_sql": control.local_sql}, setting=setting, errors=errors, hba_file=hba_file
    )


# ---------------------------------------------------------------- the Mattermost user


def render_user_sql(engine: str, *, user: str, database: str, password: str, host: str = "%") -> str:
    """SQL that makes the Mattermost user exist and log in with `password` (secret: travels in
    stdin). Safe to run any number of times. Needing TLS is phase 2 (the enforce step), so nodes
    still on their plain DSN keep working during the rollout.

    MySQL/MariaDB: the user at `host` gets all privileges on the database; its REQUIRE flags are
    left as they are (REQUIRE SSL comes from `render_mysql_require_ssl`).
    PostgreSQL: TLS is enforced by pg_hba (hostssl, then the hostnossl reject block); the role gets LOGIN and a
    SCRAM password; a role this creates also becomes the database's owner, which is what
    Mattermost needs (PostgreSQL 15 gives CREATE on schema public only to the owner). An
    existing role keeps the privileges it had: it was working before."""
    check_password(password, "password")
    if _engine(engine) == "mysql":
        u = f"{mysql_string(_ident(user))}@{mysql_string(host)}"
        pw = mysql_string(password)
        return (
            "SET NAMES utf8mb4;\n"
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';\n"
            f"CREATE USER IF NOT EXISTS {u} IDENTIFIED BY {pw};\n"
            f"ALTER USER {u} IDENTIFIED BY {pw};\n"
            f"GRANT ALL PRIVILEGES ON {mysql_grant_db(database)}.* TO {u};\n"
        )
    missing = pg_string(f'database "{_ident(database)}" does not exist on the server: create it first')
    return (
        "SET client_encoding = 'UTF8';\n"
        "SET standard_conforming_strings = on;\n"
        "BEGIN;\n"
        "SET LOCAL password_encryption = 'scram-sha-256';\n"
        "DO $mtm$\n"
        "BEGIN\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = {pg_string(database)}) THEN\n"
        f"    RAISE EXCEPTION {missing};\n"
        "  END IF;\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {pg_string(_ident(user))}) THEN\n"
        f"    CREATE ROLE {pg_ident(user)} LOGIN;\n"
        f"    ALTER DATABASE {pg_ident(database)} OWNER TO {pg_ident(user)};\n"
        "  END IF;\n"
        "END\n"
        "$mtm$;\n"
        f"ALTER ROLE {pg_ident(user)} WITH LOGIN PASSWORD {pg_string(password)};\n"
        "COMMIT;\n"
    )


def render_pg_enforce_activate(
    control: ServerControl, *, hba_file: str, address: str, port: int, user: str, database: str
) -> str:
    """Reload, then, while the reject line is in `hba_file`, prove it is live: a plain TCP login
    of the user is refused by pg_hba before any password is asked (psql -w never prompts)."""
    conninfo = " ".join(
        f"{k}={_conninfo_value(v)}"
        for k, v in (
            ("host", address),
            ("port", str(int(port))),
            ("user", _ident(user)),
            ("dbname", _ident(database)),
            ("sslmode", "disable"),
            ("connect_timeout", "10"),
        )
    )
    line = f"hostnossl all {hba_word(user)} all reject"
    return script(
        "db-pg-enforce-activate.sh",
        code={"reload": control.reload},
        # after a rollback (or the delete) the block is gone: nothing to prove
        line=line,
        hba_file=_path(hba_file),
        conninfo=conninfo,
        wait_seconds=WAIT_SECONDS,
        user=user,
    )


def render_mysql_require_ssl(*, user: str, client: str, state_dir: str = STATE_DIR, restore: bool = False) -> str:
    """Phase 2 for the MySQL/MariaDB user's accounts. stdin: base64 lines, the admin credentials
    file ("" for the local socket), then (apply only) the SELECT that prints each planned
    account's REQUIRE flags as the ALTER USER that puts them back, and the ALTER USER ... REQUIRE
    SSL statements (database_accounts.render_require_ssl_sql; the accounts are the plan's, known
    at apply time). Apply: save the flags of each account not saved yet (an account added to
    the plan later is saved before it changes), then require TLS. Restore (delete): run the
    saved statements and forget them. The user command's own backup (taken before any change)
    still restores every account afterwards, so nothing is lost."""
    saved = f"{state_dir}/db-user-{_ident(user)}.require"
    step = "restore" if restore else "apply"
    return script(
        "db-require-ssl.sh",
        code={
            "who_and_sql": _who_and_sql("database user " + user, client),
            "read_rest": piece(f"db-require-ssl-read-{step}.sh"),
            "run": piece(f"db-require-ssl-{step}.sh"),
        },
        state=state_dir,
        saved=saved,
    )


def admin_client(
    engine: str, control: ServerControl, *, admin_user: str | None, address: str, port: int, ca_file: str
) -> str:
    """The admin client command the user scripts run. Without `admin_user`: the local socket
    (root via unix_socket / the postgres superuser by peer). With it: TCP over TLS to the
    server's own address (verified: the certificate carries the address), password from the
    0600 file the script writes from stdin at "$tmp/admin"."""
    if admin_user is None:
        return control.local_sql
    _ident(admin_user)
    if _engine(engine) == "mysql":
        return 'mysql --defaults-file="$tmp/admin"'
    conninfo = " ".join(
        f"{k}={_conninfo_value(v)}"
        for k, v in (
            ("host", address),
            ("port", str(int(port))),
            ("user", admin_user),
            ("dbname", "postgres"),
            ("sslmode", "verify-full"),
            ("sslrootcert", _path(ca_file)),
        )
    )
    return f'PGPASSFILE="$tmp/admin" psql -X -q -v ON_ERROR_STOP=1 {q(conninfo)}'


def render_admin_secret(
    engine: str, *, admin_user: str, admin_password: str, address: str, port: int, ca_file: str
) -> str:
    """The admin's credentials file (secret: travels in stdin, written 0600 under a private
    temp dir, removed on exit). MySQL/MariaDB: an option file; PostgreSQL: a passfile."""
    check_password(admin_password, "dbAdminPassword")
    if _engine(engine) == "mysql":
        return (
            "[client]\n"
            f"user = {_ident(admin_user)}\n"
            f"password = {_option_file_value(admin_password)}\n"
            f"host = {address}\n"
            f"port = {int(port)}\n"
            f"ssl-ca = {_path(ca_file)}\n"
            # MariaDB's client spelling; MySQL 8 clients do not read this group
            "[client-mariadb]\n"
            "ssl-verify-server-cert\n"
        )
    return f"*:*:*:{_pgpass_field(_ident(admin_user))}:{_pgpass_field(admin_password)}\n"


def user_state_files(user: str, state_dir: str = STATE_DIR) -> tuple[str, str]:
    """(backup, owner) files of the user's previous state on the database host."""
    return f"{state_dir}/db-user-{_ident(user)}.sql", f"{state_dir}/db-user-{_ident(user)}.owner"


def user_stdin(token: str, admin_secret: str, sql: str) -> str:
    """stdin of the user command: owner token, admin credentials file ("" = local socket), SQL;
    one base64 line each. The token travels here, not in the script, because delete runs with
    the OLD stdin: a replaced resource's delete then compares its own token with the ledger."""
    if not _TOKEN.match(token):
        raise ValueError(f"owner token must be 1-64 of [A-Za-z0-9_-]: {token!r}")
    return encode_bundle([token, admin_secret, sql])


def _user_head(user: str, state_dir: str, client: str) -> str:
    backup, owner = user_state_files(user, state_dir)
    return script(
        "db-user-head.sh",
        code={"who_and_sql": _who_and_sql("database user " + user, client)},
        state=state_dir,
        backup=backup,
        owner=owner,
    )


def _who_and_sql(who: str, client: str) -> str:
    """The lines every database script starts with: `who` (for messages), `mtm_fail`, and `sql`,
    the admin client."""
    return piece("db-who.sh", code={"sql_client": client}, who=who)


def _unpack(on_exit: str = 'rm -rf "$tmp"') -> str:
    """The private temp dir (removed by `on_exit`) with the admin file and the SQL from stdin."""
    return script("db-unpack.sh", on_exit=on_exit)


def _mysql_backup(user: str, database: str, host: str) -> str:
    """Save, once, what puts back EVERY account of the user (each host: dropped, then created
    with its hash, plugin and REQUIRE flags, and granted as before), and drops the `host`
    account this may create; then apply the SQL (which changes the planned accounts only:
    database_accounts.plan_hosts). QUOTE() writes each account name as an SQL literal, which
    the shell only passes on, unparsed; MySQL 8 prints caching_sha2 hashes as binary unless
    asked for hex (MariaDB has no such switch)."""
    u_lit, h_lit = mysql_string(_ident(user)), mysql_string(host)
    return script(
        "db-user-backup-mysql.sh",
        exists_db=f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {mysql_string(_ident(database))}",
        missing_db=f"database {database} does not exist on the server: create it first",
        drop_new=f"DROP USER IF EXISTS {u_lit}@{h_lit};",
        accounts=f"SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE User = {u_lit} ORDER BY Host",
    )


def _pg_drop_created_role(user: str) -> str:
    warning = pg_string(
        f'role "{user}" was created by mattermost-transport-encryption but now owns objects '
        "(Mattermost's tables): it is kept without login and password, so no data is lost"
    )
    return (
        f"DO $mtm$ BEGIN DROP ROLE IF EXISTS {pg_ident(user)}; "
        f"EXCEPTION WHEN dependent_objects_still_exist THEN ALTER ROLE {pg_ident(user)} WITH NOLOGIN PASSWORD NULL; "
        f"RAISE WARNING {warning}; END $mtm$;"
    )


def _pg_backup(user: str, database: str) -> str:
    """The role's password hash and LOGIN flag (pg_authid: only a superuser may read it); or, for
    a role this creates, what gives the database back and drops the role if nothing else holds it."""
    role = (
        "SELECT format('ALTER ROLE %I WITH %s PASSWORD %s;', rolname, "
        "CASE WHEN rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END, coalesce(quote_literal(rolpassword), 'NULL')) "
        f"FROM pg_catalog.pg_authid WHERE rolname = {pg_string(user)}"
    )
    owner = (
        "SELECT format('DO $mtm$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = %L) "
        "THEN ALTER DATABASE %I OWNER TO %I; END IF; END $mtm$;', datname, datname, pg_catalog.pg_get_userbyid(datdba)) "
        f"FROM pg_catalog.pg_database WHERE datname = {pg_string(database)}"
    )
    return script(
        "db-user-backup-postgres.sh",
        exists_db=f"SELECT count(*) FROM pg_catalog.pg_database WHERE datname = {pg_string(_ident(database))}",
        missing_db=f"database {database} does not exist on the server: create it first",
        exists_role=f"SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = {pg_string(_ident(user))}",
        role=role,
        owner_back=owner,
        drop_created=_pg_drop_created_role(user),
    )


def render_user_apply(
    engine: str,
    *,
    user: str,
    database: str,
    client: str,
    host: str = "%",
    state_dir: str = STATE_DIR,
    before: str = "",
) -> str:
    """Create/update script of the user command (stdin: admin file line, SQL line).

    Before the first change it saves what restores the user's previous state (MySQL: DROP +
    SHOW CREATE USER + SHOW GRANTS, auth plugin, hash and REQUIRE flags included; PostgreSQL:
    the role's hash and LOGIN flag from pg_authid, or, for a role that did not exist, giving
    the database back and dropping the role) to `backup` (0600), once: a later run never
    overwrites the true original. Then it applies the SQL and records the stdin's owner token,
    so the delete of a replaced resource (another token) leaves the new state alone."""
    body = _mysql_backup(user, database, host) if _engine(engine) == "mysql" else _pg_backup(user, database)
    return (
        _user_head(user, state_dir, client)
        + _unpack()
        + before  # e.g. render_gitlab_database_create: before the backup records the state
        + body
        + script("db-user-apply-done.sh")
    )


def render_user_restore(engine: str, *, user: str, client: str, state_dir: str = STATE_DIR, before: str = "") -> str:
    """Delete script: if this resource (token) still owns the user, run the saved backup, which
    puts the user back as it was (or removes it, if it did not exist), and forget it. The root
    shell opens the 0600 backup and hands it over stdin (psql may run as postgres)."""
    run = 'sql < "$backup"' if _engine(engine) == "mysql" else 'sql -1 -f - < "$backup"'
    return (
        _user_head(user, state_dir, client)
        + script("db-user-restore-check.sh")
        + _unpack()
        + before  # e.g. render_gitlab_database_drop: the role can go only once it owns nothing
        + script("db-user-restore-done.sh", code={"run_backup": run})
    )


# ---------------------------------------------------------------- GitLab's own database


def gitlab_database_marker(user: str, state_dir: str = STATE_DIR) -> str:
    """The file on the database host that says this program created GitLab's database (so
    destroy drops it); beside the user's backup, named after GitLab's own role."""
    return f"{state_dir}/db-user-{_ident(user)}.created-database"


def render_gitlab_database_create(*, user: str, database: str, state_dir: str = STATE_DIR) -> str:
    """`before` of GitLab's user script (render_user_apply): create GitLab's own database when it
    is missing, marked first so that destroy drops it even if this run stops right after. Runs
    before the user's backup, which then records the new database's owner (the admin) and that
    the role did not exist: a role created next becomes the owner (render_user_sql)."""
    return script(
        "db-gitlab-database-create.sh",
        exists=f"SELECT count(*) FROM pg_catalog.pg_database WHERE datname = {pg_string(_ident(database))}",
        marker=gitlab_database_marker(user, state_dir),
        # CREATE DATABASE cannot run inside a transaction block: its own statement
        create=f"CREATE DATABASE {pg_ident(database)}",
        database=database,
    )


def render_gitlab_database_drop(*, user: str, database: str, state_dir: str = STATE_DIR) -> str:
    """`before` of GitLab's restore script (render_user_restore): drop the database this program
    created, before the backup drops the role (a role that owns a database cannot be dropped).
    Runs after gitlab.rb's block is gone, so GitLab's Mattermost is back on its own database; a
    session still open makes DROP DATABASE fail, and the delete fails with it (nothing dropped
    under a running site)."""
    return script(
        "db-gitlab-database-drop.sh",
        marker=gitlab_database_marker(user, state_dir),
        drop=f"DROP DATABASE IF EXISTS {pg_ident(database)}",
        database=database,
    )


# ---------------------------------------------------------------- DSN


def render_dsn(
    engine: str, user: str, password: str, host: str, port: int, db: str, tls_mode: str, ca_file: str
) -> str:
    """Mattermost's SqlSettings.DataSource (secret).

    mysql (go-sql-driver): `user:pass@tcp(host:port)/db?charset=utf8mb4,utf8&writeTimeout=30s&tls=<mode>`;
    the password is taken raw (see module docstring); `tls=true` verifies against the system
    roots, where the nodes install the stack CA, so `ca_file` is not part of it.
    postgres (lib/pq URL): `postgres://user:pass@host:port/db?sslmode=<mode>&sslrootcert=<ca_file>&connect_timeout=10`
    with user and password percent-encoded."""
    _ident(user)
    _ident(db)
    check_password(password, "password")
    if _engine(engine) == "mysql":
        return f"{user}:{password}@tcp({_hostport(host, port)})/{db}?charset=utf8mb4,utf8&writeTimeout=30s&tls={quote(tls_mode, safe='-')}"
    return (
        f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{_hostport(host, port)}/{db}"
        f"?sslmode={quote(tls_mode, safe='-')}&sslrootcert={quote(_path(ca_file), safe='/')}&connect_timeout=10"
    )


# ---------------------------------------------------------------- the site's current password


def render_read_current_dsn(*, unit: str, install_dir: str, env_file: str) -> str:
    """Read-only script for a node: what decides the DataSource the node uses NOW, as three
    base64 lines on stdout (a secret output; the caller sets logging off):

    1. the running server's own `MM_SQLSETTINGS_*` variables, from /proc/<MainPID>/environ
       (empty when the unit is not running): what the process really uses;
    2. the `MM_SQLSETTINGS_*` lines of this program's EnvironmentFile, if a previous `up`
       installed it (the node's DSN when it is not running);
    3. the config.json the server reads (`MM_CONFIG` if it names a file, else
       `<installDir>/config/config.json`).

    `current_password` picks from them. Nothing is changed on the node (templates/read-current-dsn.sh)."""
    return script(
        "read-current-dsn.sh",
        unit=unit + ".service",
        config=install_dir.rstrip("/") + "/config/config.json",
        env_file=env_file,
    )


_ENV_DQ_UNESCAPE = re.compile(r"\\([\"\\`$])")


def _datasource_from_env(lines: list[str], *, quoted: bool) -> str | None:
    """SqlSettings.DataSource as Mattermost's applyEnvKey would set it from these NAME=value
    lines (a name is upper-cased; MM_SQLSETTINGS_DATASOURCE and MM_SQLSETTINGS_DATASOURCE_<x>
    both set it). Two different values would be applied in random order: refused."""
    values = set()
    for line in lines:
        name, sep, value = line.partition("=")
        if not sep:
            continue
        parts = name.strip().upper().split("_")
        if parts[:3] != ["MM", "SQLSETTINGS", "DATASOURCE"]:
            continue
        if quoted and len(value) >= 2 and value[0] == value[-1] == '"':
            value = _ENV_DQ_UNESCAPE.sub(r"\1", value[1:-1])
        values.add(value)
    if len(values) > 1:
        raise ValueError("more than one MM_SQLSETTINGS_DATASOURCE value is set; Mattermost would pick one at random")
    return values.pop() if values else None


def dsn_credentials(engine: str, dsn: str) -> tuple[str, str]:
    """(user, password) of a DataSource, parsed the way the node's driver parses it."""
    if _engine(engine) == "mysql":
        # go-sql-driver ParseDSN: the LAST '@' before the LAST '/', then the first ':'
        slash = dsn.rfind("/")
        at = dsn.rfind("@", 0, slash if slash >= 0 else len(dsn))
        if slash < 0 or at < 0:
            raise ValueError("the MySQL DataSource has no user:password@ part")
        user, _, password = dsn[:at].partition(":")
        return user, password
    if dsn.startswith(("postgres://", "postgresql://")):
        u = urlsplit(dsn)
        params = dict(parse_qsl(u.query))
        user = unquote(u.username or "") or params.get("user", "")
        password = unquote(u.password) if u.password is not None else params.get("password", "")
        return user, password
    opts = {}
    for m in re.finditer(r"\s*([a-zA-Z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", dsn):
        value = m.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        opts[m.group(1)] = value
    return opts.get("user", ""), opts.get("password", "")


def current_password(engine: str, user: str, stdout: str, *, node: str) -> str:
    """The password the site uses now, from `render_read_current_dsn`'s output on `node`: the
    running server's environment, else this program's EnvironmentFile, else config.json. Raises
    ValueError naming what to configure when it cannot be found (never the value itself)."""
    fix = (
        "set the secret dbPassword to the password the site uses now, or database.rotatePassword: true "
        "to give the site a new login and password (both work until every node switched)"
    )
    lines = (stdout.split("\n") + ["", "", ""])[:3]
    try:
        proc, envfile, config_json = (base64.b64decode(x.strip()).decode() for x in lines)
    except ValueError:
        raise ValueError(f"{node}: could not read the current database settings; {fix}") from None
    try:
        dsn = _datasource_from_env(proc.splitlines(), quoted=False)
        if dsn is None:
            dsn = _datasource_from_env(envfile.splitlines(), quoted=True)
    except ValueError as e:
        raise ValueError(f"{node}: {e}; {fix}") from None
    if dsn is None and config_json.strip():
        try:
            dsn = (json.loads(config_json).get("SqlSettings") or {}).get("DataSource")
        except (ValueError, AttributeError):
            raise ValueError(f"{node}: config.json is not valid JSON; {fix}") from None
    if not dsn:
        raise ValueError(f"{node}: no SqlSettings.DataSource found (environment, EnvironmentFile, config.json); {fix}")
    is_pg = dsn.startswith(("postgres://", "postgresql://")) or "@tcp(" not in dsn
    if is_pg != (_engine(engine) == "postgres"):
        other = "postgres" if is_pg else "mysql"
        raise ValueError(f"{node}: its DataSource is a {other} one, not for database.engine {engine!r}; {fix}")
    dsn_user, password = dsn_credentials(engine, dsn)
    if dsn_user != user:
        raise ValueError(f"{node}: its DataSource logs in as {dsn_user!r}, not database.user {user!r}; {fix}")
    if not password:
        raise ValueError(f"{node}: its DataSource has no password; {fix}")
    return check_password(password, "password")


# ---------------------------------------------------------------- password rotation
#
# `database.rotatePassword` without a failed request: a role has ONE password (PostgreSQL) and
# MariaDB cannot give one account two, so the new password belongs to a new login,
# `<user>_<suffix>`, created before any node switches (both logins work during the switch); the
# old login is retired (NOLOGIN / ACCOUNT LOCK) only after every node switched, and a later
# rotation's login replaces this one (the old one dropped once the nodes use the new one).
# PostgreSQL: the login is a member of the user and starts each session as it (`SET role`), so
# every object Mattermost creates is still owned by the user, and the login can be dropped.

ROTATION_SUFFIX_LENGTH = 8
_SUFFIX = re.compile(r"^[a-z0-9]{8}$")
MYSQL_USER_NAME_MAX = 32
"""MySQL 5.7's limit for a user name (MySQL 8 and MariaDB allow 32 and 80; the lowest holds)."""


def rotation_login(engine: str, user: str, suffix: str) -> str:
    """The login a rotation creates for `user`; ValueError naming database.user if too long."""
    if not _SUFFIX.match(suffix):
        raise ValueError(f"rotation suffix must be {ROTATION_SUFFIX_LENGTH} of [a-z0-9]: {suffix!r}")
    login = f"{_ident(user)}_{suffix}"
    limit = MYSQL_USER_NAME_MAX if _engine(engine) == "mysql" else 63
    if len(login) > limit:
        raise ValueError(
            f"database.user: {user!r} is too long for database.rotatePassword (the rotation's login "
            f"{user}_<{ROTATION_SUFFIX_LENGTH} characters> must fit in {limit}); use a user of at most "
            f"{limit - ROTATION_SUFFIX_LENGTH - 1} characters"
        )
    return login


def render_rotation_owner_sql(engine: str, *, user: str, database: str) -> str:
    """The user command's SQL during a rotation: the user must exist (its tables are the site's);
    its password and LOGIN flag are left alone (the old login works until the retire step)."""
    if _engine(engine) == "mysql":
        u = f"{mysql_string(_ident(user))}@'%'"
        # sql_mode keeps NO_AUTO_CREATE_USER semantics: GRANT to a missing user fails
        return (
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';\n"
            f"GRANT ALL PRIVILEGES ON {mysql_grant_db(database)}.* TO {u};\n"
        )
    missing = pg_string(f'role "{_ident(user)}" does not exist: database.rotatePassword rotates the site\'s user')
    return (
        "DO $mtm$\nBEGIN\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {pg_string(user)}) THEN\n"
        f"    RAISE EXCEPTION {missing};\n"
        "  END IF;\n"
        "END\n$mtm$;\n"
    )


def render_rotation_login_sql(engine: str, *, user: str, login: str, database: str, password: str) -> str:
    """Make `login` log in with `password` (TLS only) with the user's rights. Safe to run twice."""
    check_password(password, "password")
    if _engine(engine) == "mysql":
        # the user's own SQL for the login, then TLS only (no node has used it yet)
        base = render_user_sql(engine, user=login, database=database, password=password)
        return base + f"ALTER USER {mysql_string(_ident(login))}@'%' REQUIRE SSL;\n"
    return (
        "SET client_encoding = 'UTF8';\n"
        "SET standard_conforming_strings = on;\n"
        "BEGIN;\n"
        "SET LOCAL password_encryption = 'scram-sha-256';\n"
        "DO $mtm$\nBEGIN\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {pg_string(_ident(login))}) THEN\n"
        f"    CREATE ROLE {pg_ident(login)} LOGIN;\n"
        "  END IF;\n"
        "END\n$mtm$;\n"
        f"ALTER ROLE {pg_ident(login)} WITH LOGIN INHERIT PASSWORD {pg_string(password)};\n"
        f"GRANT {pg_ident(user)} TO {pg_ident(login)};\n"
        f"ALTER ROLE {pg_ident(login)} SET role = {pg_string(_ident(user))};\n"
        "COMMIT;\n"
    )


def render_rotation_drop_sql(engine: str, *, user: str, login: str) -> str:
    """Remove `login` (nothing else). PostgreSQL refuses if it owns objects, naming them."""
    if _engine(engine) == "mysql":
        return f"DROP USER IF EXISTS {mysql_string(_ident(login))}@'%';\n"
    _ident(user)
    return f"DROP ROLE IF EXISTS {pg_ident(login)};\n"


def render_rotation_retire_sql(
    engine: str, *, user: str, restore: bool = False, mysql_hosts: Sequence[str] = ("%",)
) -> str:
    """The old login stops (or, `restore`, starts again) working; open sessions are not cut.
    MySQL: every account of the user the nodes log in through (components/database_accounts.py;
    a host-specific one left unlocked would keep the old password working)."""
    if _engine(engine) == "mysql":
        word = "UNLOCK" if restore else "LOCK"
        return "".join(f"ALTER USER {mysql_string(_ident(user))}@{mysql_string(h)} ACCOUNT {word};\n" for h in mysql_hosts)
    return f"ALTER ROLE {pg_ident(user)} WITH {'LOGIN' if restore else 'NOLOGIN'};\n"


def render_rotation_hba_block(database: str, user: str, login: str, client_addresses: list[str]) -> str:
    """PostgreSQL, phase 1: each client may log in over TLS as any member of the user (the
    rotation's logins; the lines do not change from one rotation to the next, so the old login
    keeps its way in during the switch), and the current login never without TLS."""
    if not client_addresses:
        raise ValueError("pg_hba block: no client addresses (the Mattermost nodes)")
    lines = ["# Mattermost's rotated login, over TLS only (managed by mattermost-transport-encryption)."]
    for a in dict.fromkeys(client_addresses):
        ip = ipaddress.ip_address(a)
        lines.append(f"hostssl {hba_word(database)} +{_ident(user)} {ip}/{32 if ip.version == 4 else 128} scram-sha-256")
    lines.append(f"hostnossl all {hba_word(login)} all reject")
    return "\n".join(lines) + "\n"


def render_rotation_script(*, who: str, client: str, state_dir: str = STATE_DIR, sql_line: int = 1) -> str:
    """Run one SQL of stdin (base64 lines: admin credentials file or "", then SQL lines; line
    `sql_line` is run) as the admin. The admin file lives 0600 in a private temp dir, removed on exit
    (templates/db-rotation.sh)."""
    if sql_line < 1:
        raise ValueError("sql_line counts from 1")
    # the lines before `sql_line` are read and dropped (the same variable, overwritten)
    reads = [piece("db-read-sql.sh", n=i + 1) for i in range(sql_line)]
    code = {
        "who_and_sql": _who_and_sql(who, client),
        "read_sql": "\n".join(reads),
        # a state dir this run made goes with it
        "unpack": _unpack('rm -rf "$tmp"; if [ -n "$made" ]; then rmdir "$state" 2>/dev/null || true; fi').removesuffix("\n"),
    }
    return script("db-rotation.sh", code=code, state=state_dir)
