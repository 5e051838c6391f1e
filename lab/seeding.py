"""What a fresh lab host starts with: the "before" state, staged pre-boot.

Owns: rendering the per-host seed inputs (config.json, the nginx reference
site, host.env, /etc/hosts) as pure functions, and staging them plus
``lab/seed/*`` and the stand-in into a host's EMPTY overlay upper dir before
its first boot. Inside the host, ``mmtls-lab-seed*.service`` run
``lab/seed/seed.sh`` once, so every fresh ``up`` yields the same state.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shlex
import shutil
import string
from pathlib import Path

from .naming import GATEWAY, SUBNET, HostSpec, address_of
from .standin.mmstandin import config as standin_config

SEED_DIR = Path(__file__).with_name("seed")
STANDIN_DIR = Path(__file__).with_name("standin")
STAGE = "usr/local/lib/mmtls-lab"  # inside the host
WANTS = "etc/systemd/system/multi-user.target.wants"

# The units each role enables (the base has them all disabled).
ROLE_UNITS: dict[str, tuple[str, ...]] = {
    "node": ("/etc/systemd/system/mattermost.service",),
    "proxy": ("/lib/systemd/system/nginx.service",),
    "mariadb": ("/lib/systemd/system/mariadb.service",),
    "postgres": ("/lib/systemd/system/postgresql.service",),
    "pgreplica": ("/lib/systemd/system/postgresql.service",),
    "plain": (),
}


# The Mattermost version each node's stand-in emulates unless stage_host is told otherwise: the
# version stacks/Pulumi.lab.yaml declares.
DEFAULT_NODE_VERSION = "11.1.0"

# database/sql pool settings of the lab's nodes (Mattermost's defaults are 20 idle connections,
# 1 h lifetime, 5 min idle time): short, so every node opens new database connections all the
# time, as a busy real node does over an hour, and a rollout that breaks logins shows within it.
LAB_POOL = {"MaxIdleConns": 2, "ConnMaxLifetimeMilliseconds": 2000, "ConnMaxIdleTimeMilliseconds": 1000}


def new_password(length: int = 24) -> str:
    """A DSN-, SQL- and shell-safe random password."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def postgres_datasource(password: str) -> str:
    """The node's plain "before" DataSource (design doc)."""
    return f"postgres://mmuser:{password}@{address_of('postgres')}:5432/mattermost?sslmode=disable&connect_timeout=10"


def _after(section: dict[str, object], key: str, **extra: object) -> dict[str, object]:
    """`section` with `extra` inserted right after `key` (where a real config.json has them)."""
    out: dict[str, object] = {}
    for k, v in section.items():
        out[k] = v
        if k == key:
            out.update(extra)
    return out


def render_config_json(pg_password: str, site_url: str = "") -> str:
    """A node's /opt/mattermost/config/config.json before encryption: Mattermost's defaults for
    what the stand-in reads (its DEFAULTS, model/config.go), the lab's database, pool and logging,
    and three settings every real file carries that the stand-in never reads. The file is one a
    pre-10.11 Mattermost could have written too: without the settings that version lacks (SINCE)."""
    cfg = copy.deepcopy(standin_config.DEFAULTS)
    for section, key in standin_config.SINCE:
        del cfg[section][key]
    cfg["ServiceSettings"]["SiteURL"] = site_url
    cfg["ServiceSettings"] = _after(cfg["ServiceSettings"], "UseLetsEncrypt", Forward80To443=False)
    cfg["SqlSettings"].update(DataSource=postgres_datasource(pg_password), **LAB_POOL)
    cfg["SqlSettings"] = _after(cfg["SqlSettings"], "MaxOpenConns", Trace=False, AtRestEncryptKey="")
    cfg["LogSettings"]["EnableFile"] = False
    return json.dumps(cfg, indent=4) + "\n"


def render_nginx_site(node_addresses: list[str]) -> str:
    """The proxy's plain reference site with one upstream server per node."""
    template = (SEED_DIR / "nginx-mattermost.conf").read_text()
    servers = "\n".join(f"    server {addr}:8065;" for addr in node_addresses)
    return template.replace("@UPSTREAM_SERVERS@", servers)


# "Before" layouts of the proxy besides the default plain site staged at first boot: each is a
# real admin's site the program must change only where the proxy hop needs it (issue 10).
PROXY_LAYOUTS = ("guide", "confd")
GUIDE_SITE = "/etc/nginx/sites-available/mattermost"
CONFD_SITE = "/etc/nginx/conf.d/mattermost.conf"


def guide_cert_paths(server_name: str) -> tuple[str, str]:
    """Where certbot keeps the public certificate and key the guide's site names."""
    return f"/etc/letsencrypt/live/{server_name}/fullchain.pem", f"/etc/letsencrypt/live/{server_name}/privkey.pem"


def render_guide_site(node_addresses: list[str], server_name: str) -> str:
    """Mattermost's Ubuntu guide site (lab/seed/nginx-guide.conf) for these nodes."""
    cert, key = guide_cert_paths(server_name)
    text = (SEED_DIR / "nginx-guide.conf").read_text()
    servers = "\n".join(f"   server {addr}:8065;" for addr in node_addresses)
    for placeholder, value in (
        ("@UPSTREAM_SERVERS@", servers), ("@SERVER_NAME@", server_name), ("@PUBLIC_CERT@", cert), ("@PUBLIC_KEY@", key)
    ):
        text = text.replace(placeholder, value)
    return text


def proxy_layout_steps(
    layout: str, node_addresses: list[str], server_name: str, public_cert: str, public_key: str
) -> list[tuple[str, str]]:
    """(command, stdin) pairs that turn a freshly booted proxy into `layout`, run as root in order
    (the lab applies them over SSH; the last one checks and reloads NGINX)."""
    if layout not in PROXY_LAYOUTS:
        raise ValueError(f"unknown proxy layout {layout!r}: one of {', '.join(PROXY_LAYOUTS)}")
    cert, key = guide_cert_paths(server_name)
    q = shlex.quote
    site = render_guide_site(node_addresses, server_name)
    steps = [
        (f"set -eu; install -d -m 0755 {q(os.path.dirname(cert))}; cat > {q(cert)}", public_cert),
        (f"set -eu; umask 077; cat > {q(key)}", public_key),
    ]
    if layout == "guide":  # sites-available + sites-enabled link (the first-boot site, replaced)
        steps += [
            (f"set -eu; cat > {q(GUIDE_SITE)}; chmod 0644 {q(GUIDE_SITE)}", site),
            (f"set -eu; ln -sfn {q(GUIDE_SITE)} /etc/nginx/sites-enabled/mattermost", ""),
        ]
    else:  # conf.d: the same site, and no sites-available/sites-enabled Mattermost site at all
        steps += [
            (f"set -eu; cat > {q(CONFD_SITE)}; chmod 0644 {q(CONFD_SITE)}", site),
            (f"set -eu; rm -f /etc/nginx/sites-enabled/mattermost {q(GUIDE_SITE)}", ""),
        ]
    return [*steps, ("set -eu; nginx -t 2>&1; systemctl reload nginx", "")]


MANUAL_TLS_DIR = "/etc/mattermost-manual-tls"
MANUAL_TLS_EDIT = r"""
import json, sys
path, cert, key = sys.argv[1:4]
with open(path) as f:
    cfg = json.load(f)
cfg["ServiceSettings"].update(ConnectionSecurity="TLS", TLSCertFile=cert, TLSKeyFile=key)
with open(path, "w") as f:
    f.write(json.dumps(cfg, indent=4) + "\n")
"""


def manual_tls_node_steps(cert_pem: str, key_pem: str) -> list[tuple[str, str]]:
    """(command, stdin) pairs that give a node the manual guide's TLS: config.json names a
    certificate of the admin's own (NGINX trusts it without verifying), then a restart."""
    q = shlex.quote
    cert, key = f"{MANUAL_TLS_DIR}/node.crt", f"{MANUAL_TLS_DIR}/node.key"
    conf = "/opt/mattermost/config/config.json"
    return [
        (f"set -eu; install -d -m 0750 -g mattermost {MANUAL_TLS_DIR}; cat > {q(cert)}; chmod 0644 {q(cert)}", cert_pem),
        (f"set -eu; cat > {q(key)}; chown root:mattermost {q(key)}; chmod 0640 {q(key)}", key_pem),
        (f"set -eu; python3 - {q(conf)} {q(cert)} {q(key)}", MANUAL_TLS_EDIT),
        (
            "set -eu; systemctl restart mattermost; i=0; until curl -fsSk -o /dev/null --max-time 3 "
            "https://127.0.0.1:8065/api/v4/system/ping; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done",
            "",
        ),
    ]


def https_unverified_proxy_steps() -> list[tuple[str, str]]:
    """The manual guide's proxy: the first-boot site with only proxy_pass switched to https://."""
    site = shlex.quote(GUIDE_SITE)
    return [
        (
            f"set -eu; sed -i 's#proxy_pass http://backend;#proxy_pass https://backend;#' {site}; "
            "nginx -t 2>&1; systemctl reload nginx",
            "",
        )
    ]


def render_host_env(host: HostSpec, passwords: dict[str, str], hosts: list[HostSpec] | None = None) -> str:
    """/etc/mmtls-lab/host.env: sourced by seed.sh and ready.sh. With a `pgreplica` host in the
    plan, the primary lets it replicate (REPLICA_ADDRESS) and the replica knows its primary."""
    values = {"NAME": host.name, "ROLE": host.role, "ADDRESS": host.address, "SUBNET": SUBNET, "GATEWAY": GATEWAY}
    if host.role == "mariadb":
        values["MYSQL_PASSWORD"] = passwords["mysql"]
    if host.role == "postgres":
        values["PG_PASSWORD"] = passwords["postgres"]
        replica = next((h for h in hosts or [] if h.role == "pgreplica"), None)
        if replica is not None:
            values["REPLICA_ADDRESS"] = replica.address
            values["PG_REPL_PASSWORD"] = passwords["replication"]
    if host.role == "pgreplica":
        values["PRIMARY_ADDRESS"] = address_of("postgres")
        values["PG_REPL_PASSWORD"] = passwords["replication"]
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def render_hosts_file(hosts: list[HostSpec], own: str) -> str:
    """/etc/hosts: the lab hosts by name (the lab has no DNS)."""
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{own}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{h.address}\t{h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def _mkdirs_like(upper: Path, base: Path, rel: str) -> Path:
    """Create upper/rel, giving each new directory the mode and owner it has in the base.

    In an overlay a directory present in the upper dir takes ITS attributes,
    so a careless mkdir would change e.g. /root to 0755.
    """
    target = upper
    for part in Path(rel).parts:
        target = target / part
        if target.is_dir():
            continue
        lower = base / target.relative_to(upper)
        target.mkdir()
        if lower.is_dir():
            st = lower.stat()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, st.st_mode & 0o7777)
    return target


def _write(upper: Path, base: Path, path: str, content: str | bytes, mode: int = 0o644) -> None:
    rel = path.lstrip("/")
    _mkdirs_like(upper, base, str(Path(rel).parent))
    target = upper / rel
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(target, mode)


def _symlink(upper: Path, base: Path, path: str, points_to: str) -> None:
    rel = path.lstrip("/")
    _mkdirs_like(upper, base, str(Path(rel).parent))
    link = upper / rel
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(points_to)


def _copy_tree(upper: Path, base: Path, src: Path, dest: str) -> None:
    for path in sorted(src.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = f"{dest}/{path.relative_to(src)}"
        if path.is_dir():
            _mkdirs_like(upper, base, rel.lstrip("/"))
        else:
            _write(upper, base, rel, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)


def stage_host(
    upper: Path,
    base: Path,
    host: HostSpec,
    hosts: list[HostSpec],
    passwords: dict[str, str],
    authorized_key: str,
    version: str = DEFAULT_NODE_VERSION,
) -> None:
    """Fill a fresh upper dir so the host seeds its "before" state at first boot. A node's
    stand-in emulates Mattermost `version` (what `mattermost version` prints there)."""
    _write(upper, base, "/etc/hostname", host.name + "\n")
    _write(upper, base, "/etc/hosts", render_hosts_file(hosts, host.name))
    # A stable per-host identity (journal, dbus) across reboots of this host.
    _write(upper, base, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    _mkdirs_like(upper, base, "root")
    os.chmod(upper / "root", 0o700)
    _write(upper, base, "/root/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600)
    os.chmod(upper / "root/.ssh", 0o700)
    _write(upper, base, "/etc/mmtls-lab/host.env", render_host_env(host, passwords, hosts), 0o600)

    for name in ("seed.sh", "ready.sh"):
        _write(upper, base, f"/{STAGE}/{name}", (SEED_DIR / name).read_text(), 0o755)
    for unit in ("mmtls-lab-seed.service", "mmtls-lab-seed-sql.service"):
        _write(upper, base, f"/etc/systemd/system/{unit}", (SEED_DIR / unit).read_text())
        _symlink(upper, base, f"/{WANTS}/{unit}", f"/etc/systemd/system/{unit}")

    if host.role == "node":
        _copy_tree(upper, base, STANDIN_DIR, f"/{STAGE}/standin")
        _write(upper, base, f"/{STAGE}/standin/mmstandin/VERSION", version + "\n")
        _write(upper, base, f"/{STAGE}/config.json", render_config_json(passwords["postgres"]), 0o600)
        _write(upper, base, "/etc/systemd/system/mattermost.service", (SEED_DIR / "mattermost.service").read_text())
    if host.role == "proxy":
        nodes = [h.address for h in hosts if h.role == "node"]
        _write(upper, base, f"/{STAGE}/nginx-mattermost.conf", render_nginx_site(nodes))
    for unit_path in ROLE_UNITS[host.role]:
        _symlink(upper, base, f"/{WANTS}/{Path(unit_path).name}", unit_path)


def reset_upper(upper: Path) -> None:
    """Remove a host's upper dir (and nspawn's overlay work dir beside it)."""
    parent = upper.parent
    if parent.is_dir():
        shutil.rmtree(parent)


# A node whose admin moved its configuration into the database and pointed MM_CONFIG at it
# (issue 9): the stand-in's own store code persists config.json as the active Configurations
# row, as `mmctl config migrate <file> <dsn> --local` leaves it, and an EnvironmentFile of the
# admin's (0600, like a careful admin's) sets MM_CONFIG. The DSN travels on stdin.
CONFIG_STORE_ENV = "/etc/mattermost/config-store.env"
CONFIG_STORE_DROPIN = "/etc/systemd/system/mattermost.service.d/10-config-store.conf"
_MIGRATE = r"""
import json, sys
sys.dont_write_bytecode = True  # nothing written under /opt/mattermost/bin
sys.path.insert(0, "/opt/mattermost/bin")
from mmstandin import VERSION, config, dbstore
dsn = sys.stdin.read().strip()
with open("/opt/mattermost/config/config.json", encoding="utf-8") as fh:
    data = json.load(fh)
known = config.schema(VERSION)
data = {s: {k: v for k, v in vals.items() if k in known[s]} for s, vals in data.items() if s in known}
dbstore.DatabaseStore(dsn).persist(config.with_defaults(data, VERSION))
"""
_RESTART = (
    "set -eu; systemctl daemon-reload; systemctl restart mattermost; i=0; "
    "until curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:8065/api/v4/system/ping; do "
    "i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done"
)


def config_in_database_steps(dsn: str) -> list[tuple[str, str]]:
    """(command, stdin) pairs that move a node's configuration into the database at `dsn`."""
    q = shlex.quote
    env = f'MM_CONFIG="{dsn}"\n'
    dropin = f"[Service]\nEnvironmentFile={CONFIG_STORE_ENV}\n"
    return [
        (f"set -eu; python3 -c {q(_MIGRATE)}", dsn),
        (f"set -eu; install -d -m 0755 /etc/mattermost; umask 077; cat > {q(CONFIG_STORE_ENV)}", env),
        (f"set -eu; install -d -m 0755 {q(os.path.dirname(CONFIG_STORE_DROPIN))}; cat > {q(CONFIG_STORE_DROPIN)}; chmod 0644 {q(CONFIG_STORE_DROPIN)}", dropin),
        (_RESTART, ""),
    ]


_ADD_REPLICAS = r"""
import json, sys
path = "/opt/mattermost/config/config.json"
dsn = sys.stdin.read().strip()
with open(path, encoding="utf-8") as fh:
    cfg = json.load(fh)
cfg["SqlSettings"]["DataSourceReplicas"] = [dsn]
cfg["SqlSettings"]["DataSourceSearchReplicas"] = [dsn]
with open(path, "w", encoding="utf-8") as fh:
    fh.write(json.dumps(cfg, indent=4) + "\n")
"""


def plain_replica_steps(replica_dsn: str) -> list[tuple[str, str]]:
    """(command, stdin) pairs that give a node's config.json the replica for reads and search,
    in clear, as an admin adds one by hand, then restart it."""
    return [(f"set -eu; python3 -c {shlex.quote(_ADD_REPLICAS)}", replica_dsn), (_RESTART, "")]


REPLICATION_BEFORE = "/var/lib/mmtls-lab/primary_conninfo.before"
"""The replica's primary_conninfo as seeded (sslmode=require), kept for replication_restore_step."""

_SET_CONNINFO = (
    "printf '%s\\n' \"ALTER SYSTEM SET primary_conninfo = :'ci';\" 'SELECT pg_reload_conf();' | "
    'runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -v ci="$new" >/dev/null\n'
    # the reload restarts the WAL receiver with the new conninfo (PostgreSQL 13+): wait for it to stream
    "i=0\n"
    "until [ \"$(runuser -u postgres -- psql -XAtq -c \"SELECT status FROM pg_stat_wal_receiver WHERE conninfo LIKE '%sslmode=$mode%'\")\" = streaming ]; do\n"
    "    i=$((i + 1)); [ \"$i\" -lt 120 ] || { echo \"the WAL receiver does not stream with sslmode=$mode\" >&2; exit 1; }\n"
    "    sleep 0.5\n"
    "done\n"
)


def replication_verify_step(ca_file: str) -> str:
    """On the replica, once the stack serves the primary's certificate: the admin tightens the
    replication link from `sslmode=require` to `verify-full` against the stack CA the program
    installed on the replica (`ca_file`). verify-full, not verify-ca: the replica dials the
    primary by address and the primary's certificate carries it as an IP SAN (database address;
    libpq matches IP SANs since PostgreSQL 14). The seeded value is kept for the restore."""
    q = shlex.quote
    return (
        "set -eu\n"
        f"ca={q(ca_file)}\nbefore={q(REPLICATION_BEFORE)}\nmode=verify-full\n"
        '[ -r "$ca" ] || { echo "no stack CA at $ca" >&2; exit 1; }\n'
        "old=$(runuser -u postgres -- psql -XAtq -c 'SHOW primary_conninfo')\n"
        'case "$old" in *sslmode=require*) ;; *) echo "primary_conninfo is not the seeded sslmode=require one" >&2; exit 1 ;; esac\n'
        '[ -e "$before" ] || { umask 077; printf \'%s\' "$old" > "$before"; }\n'
        'new=$(printf \'%s\' "$old" | sed "s#sslmode=require#sslmode=verify-full sslrootcert=$ca#")\n'
        + _SET_CONNINFO
    )


def replication_restore_step() -> str:
    """On the replica: primary_conninfo back to the seeded value (before a destroy takes the
    stack CA and the primary's stack certificate away), the WAL receiver streaming again."""
    return (
        "set -eu\n"
        f"before={shlex.quote(REPLICATION_BEFORE)}\nmode=require\n"
        'new=$(cat "$before")\n'
        + _SET_CONNINFO
        + 'rm -f "$before"\n'
    )
