"""Pure renderers for one Mattermost node: where its TLS files go, the systemd EnvironmentFile and
drop-in that switch it to TLS, and the shell that restarts it and waits until it answers over
verified TLS (or puts it back without waiting, on delete).

Plain values in, text out: no Pulumi, no I/O. The scripts are POSIX sh, every interpolated value
goes through `shlex.quote`, and they run inside `remote_files`' activate/restore hooks, which
capture their output and roll the files back when they fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from components.platform import DEBIAN, Platform
from components.shell import piece, script, template
from components.tls_files import TlsFiles

DROPIN_NAME = "50-transport-encryption.conf"
SYSTEM_CA_STEM = "mattermost-transport-ca"
SYSTEMD_DIR = "/etc/systemd/system"
PING_PATH = "/api/v4/system/ping"
POLL_SECONDS = 2

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNIT_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]+$")
# The characters systemd's EnvironmentFile parser treats specially inside double quotes.
_DQ_ESCAPE = re.compile(r'(["\\`$])')


@dataclass(frozen=True)
class NodePaths(TlsFiles):
    """Every path a node's TLS setup installs (absolute): `cert` (0644), `key` (0640 root:<service
    group>), `ca` (the PostgreSQL DSN's sslrootcert points here), and:"""

    system_ca: str
    """The stack CA in the system trust store source dir (MySQL `tls=true` verifies with system roots)."""
    env: str
    """The 0600 EnvironmentFile with the MM_* settings (the DSN is a secret)."""
    dropin: str
    """The systemd drop-in that loads `env`."""

    def as_dict(self) -> dict[str, str]:
        """Every path by its output name (camelCase, as the stack's outputs spell keys)."""
        return {"systemCa" if k == "system_ca" else k: v for k, v in dataclasses.asdict(self).items()}


def node_paths(tls_dir: str, unit: str, *, systemd_dir: str = SYSTEMD_DIR, platform: Platform = DEBIAN) -> NodePaths:
    """Where a node's files go. The env file is named after the unit so two Mattermost units on
    one host (unusual, but config allows it) never share one; the system CA goes where the
    host's trust-store command reads it."""
    in_tls_dir = {"cert": "node.crt", "key": "node.key", "ca": "ca.crt", "env": f"{unit}.env"}
    return NodePaths(
        **{field: f"{tls_dir.rstrip('/')}/{name}" for field, name in in_tls_dir.items()},
        system_ca=f"{platform.system_ca_dir.rstrip('/')}/{SYSTEM_CA_STEM}{platform.system_ca_suffix}",
        dropin=f"{systemd_dir.rstrip('/')}/{unit}.service.d/{DROPIN_NAME}",
    )


TRUST_STAMP = "MMTLS_SYSTEM_TRUST_SHA256"


def system_trust_stamp(bundle_pem: str) -> dict[str, str]:
    """For a node whose database driver reads the system trust store once per process (MySQL):
    the trust bundle's SHA-256 as an environment entry, so a changed bundle changes the node's
    env file and restarts it (components/node.py). Not an MM_ name: Mattermost's applyEnvKey
    only looks at MM_*. Empty bundle (PostgreSQL): nothing."""
    if not bundle_pem:
        return {}
    return {TRUST_STAMP: hashlib.sha256(bundle_pem.encode()).hexdigest()}


def tls_env(
    *, cert_file: str, key_file: str, driver_name: str, data_source: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The MM_* settings that switch a node to TLS and to the TLS database DSN.

    `extra` (e.g. cluster settings) may add keys but not override these: two components
    disagreeing about the node's TLS would be a wiring bug, not a choice.
    """
    env = {
        "MM_SERVICESETTINGS_CONNECTIONSECURITY": "TLS",
        # absolute paths: relative ones resolve against Mattermost's working directory
        "MM_SERVICESETTINGS_TLSCERTFILE": cert_file,
        "MM_SERVICESETTINGS_TLSKEYFILE": key_file,
        "MM_SERVICESETTINGS_TLSMINVER": "1.2",
        "MM_SQLSETTINGS_DRIVERNAME": driver_name,
        "MM_SQLSETTINGS_DATASOURCE": data_source,
    }
    for path in (cert_file, key_file):
        if not path.startswith("/"):
            raise ValueError(f"TLS file paths must be absolute: {path!r}")
    clash = sorted(set(extra or {}) & set(env))
    if clash:
        raise ValueError(f"extra environment must not override the TLS settings: {', '.join(clash)}")
    env.update(extra or {})
    return env


def _check_env_value(name: str, value: str) -> None:
    # Never echo the value: it may be the DSN with the database password.
    if "\n" in value or "\r" in value:
        raise ValueError(f"environment value of {name} contains a line break, which an EnvironmentFile cannot carry safely")
    for ch in value:
        cp = ord(ch)
        # systemd.exec(5): values are UTF-8 scalar values except NUL, U+FEFF and noncharacters
        if cp == 0 or cp == 0xFEFF or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE or 0xD800 <= cp <= 0xDFFF:
            raise ValueError(f"environment value of {name} contains a character systemd refuses (U+{cp:04X})")


def render_env_file(env: Mapping[str, str]) -> str:
    """A systemd EnvironmentFile assigning exactly `env` (keys sorted, so output is stable).

    Every value is double-quoted with `"`, `\\`, `` ` `` and `$` backslash-escaped: inside double
    quotes systemd keeps everything else verbatim (spaces, `#`, `;`, `&`, `?`, `=`, `%`, single
    quotes) and recognises exactly those four escapes (systemd.exec(5), EnvironmentFile=).
    Line breaks are refused rather than encoded: a quoted value may span lines, but a DSN or path
    never legitimately contains one.
    """
    lines = ["# Managed by mattermost-transport-encryption; `pulumi destroy` removes this file."]
    for name in sorted(env):
        if not _ENV_NAME.match(name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
        value = env[name]
        if not isinstance(value, str):
            raise TypeError(f"environment value of {name} must be a string, not {type(value).__name__}")
        _check_env_value(name, value)
        escaped = _DQ_ESCAPE.sub(r"\\\1", value)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def render_dropin(env_file: str) -> str:
    """A drop-in that loads `env_file` into the unit's environment.

    EnvironmentFile= rather than Environment=: values in unit files are readable by every user
    through `systemctl show`, and the DSN carries the database password. No leading '-': a missing
    file must stop the unit, not start it silently without TLS.
    """
    if not _UNIT_PATH.match(env_file):
        raise ValueError(f"the environment file path must be absolute and plain: {env_file!r}")
    # '%' starts a specifier in unit files; the pattern above already refuses it
    return (
        "# Managed by mattermost-transport-encryption: Mattermost's TLS and database settings.\n"
        "# The values live in the 0600 file below, not here (unit files are world-readable).\n"
        "[Service]\n"
        f"EnvironmentFile={env_file}\n"
    )



def _require_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer: {value!r}")


def _wait_prelude(*, unit: str, port: int, upstream_name: str, ca_file: str, timeout_seconds: int, journal_lines: int) -> str:
    _require_positive("port", port)
    _require_positive("timeout_seconds", timeout_seconds)
    _require_positive("journal_lines", journal_lines)
    return script(
        "node-wait-head.sh",
        unit=unit + ".service",
        url=f"https://{upstream_name}:{port}{PING_PATH}",
        resolve=f"{upstream_name}:{port}:127.0.0.1",
        ca=ca_file,
        limit=timeout_seconds,
        lines=journal_lines,
    )


def _wait_body(settle: str = "") -> str:
    """Restart and wait (templates/node-wait.sh); `settle` runs once the node answers."""
    return script("node-wait.sh", code={"settle": settle}, poll_seconds=POLL_SECONDS)


def render_wait_script(
    *,
    unit: str,
    port: int,
    upstream_name: str,
    ca_file: str,
    timeout_seconds: int,
    journal_lines: int = 30,
) -> str:
    """Restart `unit`, then wait until it answers GET /api/v4/system/ping over TLS, verified with
    `ca_file` for `upstream_name` (curl connects to 127.0.0.1 but checks the name NGINX will check).

    Exits 0 once it answers; otherwise exits 1 with the unit's own story on stderr (systemctl
    status and the last journal lines). The restart itself is bounded by the same deadline: a
    Type=notify unit that never reports ready would otherwise block `systemctl restart` for its
    whole TimeoutStartSec (Mattermost's sample unit sets an hour).
    """
    prelude = _wait_prelude(
        unit=unit,
        port=port,
        upstream_name=upstream_name,
        ca_file=ca_file,
        timeout_seconds=timeout_seconds,
        journal_lines=journal_lines,
    )
    return prelude + _wait_body()


def _system_trust(require: bool, platform: Platform) -> str:
    # Platform values are plain text (no shell characters): they stand in the messages as they are
    update = {"update": platform.trust_update}
    if require:
        missing = piece("node-trust-required.sh", code={**update, "package": platform.trust_package})
    else:
        missing = piece("node-trust-optional.sh", code=update)
    return script("node-system-trust.sh", code={**update, "missing": missing})


NGINX_FAIL_TIMEOUT = 10
"""NGINX's default `fail_timeout` of an upstream `server` (ngx_http_upstream_module): after a
failed attempt (`max_fails` 1 by default) NGINX sends that server nothing for this long."""



def _settle(seconds: int) -> tuple[str, str]:
    """(before the restart, after it answers): a node that already served verified TLS before
    this restart (a renewal, a CA rotation phase; not the first switch from plain HTTP, which
    NGINX's transitional site covers, nor a node being added) waits `seconds` once it answers
    again. Why: NGINX marks a node it could not reach during its restart as failed for
    `fail_timeout` (passive health check, per worker); restarted one after another without a
    pause, every node is marked at once while the last one restarts and NGINX answers
    "no live upstreams" (502; measured in the lab: 11-16 requests in 0.4 s per renewal). Waiting
    out the mark before the next node goes down keeps at least one node live."""
    _require_positive("settle_seconds", seconds)
    return piece("node-settle-probe.sh"), piece("node-settle-wait.sh", seconds=seconds)


def render_activate_script(
    *,
    unit: str,
    port: int,
    upstream_name: str,
    paths: NodePaths,
    timeout_seconds: int,
    require_system_trust: bool,
    journal_lines: int = 30,
    settle_seconds: int = 0,
    platform: Platform = DEBIAN,
) -> str:
    """What runs after the node's files changed: refresh the system trust store, reload systemd,
    restart and wait (render_wait_script).

    The same script re-activates the previous files when a change is rolled back. If that
    rollback removed the drop-in (a first install that failed), the node is back on its original
    plain configuration, which cannot be checked over TLS and which the database may already
    refuse; it is restarted without waiting so the rollback does not wait out a second timeout.

    `settle_seconds` > 0 (a stack with more than one node): see `_settle`.
    """
    before, after = _settle(settle_seconds) if settle_seconds else ("", "")
    prelude = _wait_prelude(
        unit=unit,
        port=port,
        upstream_name=upstream_name,
        ca_file=paths.ca,
        timeout_seconds=timeout_seconds,
        journal_lines=journal_lines,
    )
    activate = script(
        "node-activate.sh",
        code={"system_trust": _system_trust(require_system_trust, platform).removesuffix("\n"), "settle_probe": before},
        dropin=paths.dropin,
    )
    return prelude + activate + _wait_body(after)


def render_restore_activate_script(
    *,
    unit: str,
    system_ca: str | None = None,
    port: int | None = None,
    wait_seconds: int = 60,
    platform: Platform = DEBIAN,
) -> str:
    """What runs on delete after the original files are back: refresh trust, reload systemd and
    queue a restart that never fails the delete. During a destroy the database may still refuse
    the node's original login (a removed node: the database keeps requiring TLS), so a failure
    here would fail the destroy for a state that fixes itself once the database is restored.

    With `port`: then wait, up to `wait_seconds` and without ever failing, until a NEW process
    (another MainPID) answers the bare ping on it, over plain HTTP or HTTPS (the original setup
    may be either): a destroy restarts the nodes one after another, so the next node goes down
    only once this one serves again, as in the rollout. Not answering in time, or systemd giving
    up on the start (failed / auto-restart), is a warning. The trust store is refreshed as in
    `render_trust_restore_script`. `system_ca` defaults to where `node_paths` puts it."""
    if system_ca is None:
        system_ca = node_paths("/", unit, platform=platform).system_ca
    return script(
        "node-restore-activate.sh",
        code={
            "trust_restore": render_trust_restore_script(system_ca, platform).removesuffix("\n"),
            "wait": "" if port is None else _restore_wait(port, wait_seconds).removesuffix("\n"),
        },
        unit=unit + ".service",
    )


def render_trust_activate_script(*, require_system_trust: bool, platform: Platform = DEBIAN) -> str:
    """After the CA files changed (`<node>-db-ca`): refresh the system trust store (MySQL's
    `tls=true` verifies with it; required then)."""
    return script(
        "node-trust-activate.sh", code={"system_trust": _system_trust(require_system_trust, platform).removesuffix("\n")}
    )


def render_trust_restore_script(system_ca: str, platform: Platform = DEBIAN) -> str:
    """After the CA files are gone: refresh the system trust store, never failing.

    Debian's `update-ca-certificates` leaves the links of a removed local CA behind (only
    `--fresh` drops them, and `--fresh` would also drop anything an admin put into /etc/ssl/certs
    by hand), so exactly the dangling links that point at our CA are removed."""
    pem = posixpath.basename(system_ca).removesuffix(platform.system_ca_suffix) + platform.trust_link_suffix
    return script(
        "node-trust-restore.sh",
        code={"update": platform.trust_update},  # plain text (Platform), also inside the message
        cert_dir=platform.system_cert_dir,
        pem=pem,
        system_ca=system_ca,
    )


def _restore_wait(port: int, wait_seconds: int) -> str:
    _require_positive("port", port)
    _require_positive("wait_seconds", wait_seconds)
    ping = f"127.0.0.1:{int(port)}{PING_PATH}"
    return script(
        "node-restore-wait.sh",
        http_ping="http://" + ping,
        https_ping="https://" + ping,
        port=int(port),
        wait_seconds=int(wait_seconds),
    )


def cert_fingerprint_sha256(cert_pem: str) -> str:
    """SHA-256 fingerprint of the first certificate in `cert_pem`, as `openssl x509 -fingerprint
    -sha256` prints it (AB:CD:...), so operators can compare it with what a node serves."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


# ---------------------------------------------------------------- preflight (read-only)



def render_preflight_script(
    *,
    node: str,
    address: str,
    unit: str,
    install_dir: str,
    version: str,
    version_key: str,
    cluster_enabled: bool,
    own_env: str,
    driver: str,
    tls_mode: str,
    proc: str = "/proc",
    config_store: str = "file",
    store_key: str = "mattermost.configStore",
    store_targets: Sequence[str] = (),
    replica_key: str = "database.replicas",
    replica_targets: Sequence[str] = (),
    search_key: str = "database.searchReplicas",
    search_targets: Sequence[str] = (),
    platform: Platform = DEBIAN,
    more: Sequence[str] = (),
) -> str:
    """The read-only check that runs on a node before any host is changed (templates/node-preflight.sh).

    It reads the installed version (`<install_dir>/bin/mattermost version`) and the node's
    effective config (ExecStart `--config`, else MM_CONFIG from the unit or the running process,
    else `<install_dir>/config/config.json`; `MM_*` in the unit's environment wins over the file)
    and refuses, naming host, setting and fix: a version other than `version` (the stack key
    `version_key`), clustering on while `cluster_enabled` is false, a configuration stored in the
    database, and read-replica DSNs without verified TLS. Accepted TLS for replica DSNs: what the
    main DSN uses (`tls_mode` of the stack's `driver`), and the verifying mode of each engine.
    `own_env` (this program's env file) is not part of "what the node has": the stack rewrites it.

    Database-stored configuration (`config_store` "database", the stack key `store_key`): MM_CONFIG
    must point at one of `store_targets` ("user@host:port/db", db_replicas_render.dsn_targets),
    because the program replaces it with the stack's database DSN. Replica lists: where the stack
    lists servers (`replica_targets` / `search_targets`), every entry of the node must be one of
    them (the program replaces the list); where it lists none, each entry must verify TLS.

    `more`: other read-only checks of this host (the cluster tunnels' preflight), each run after
    this one passed, in a subshell of its own (its variables, temporary files and EXIT trap stay
    its own; a failing one fails the whole check, `set -e`). One command per host instead of one
    per check: a resource and an SSH connection fewer per node, and every check runs before
    anything, the host helper included, is installed on any host.
    """
    if config_store not in ("file", "database"):
        raise ValueError(f"config_store must be 'file' or 'database', not {config_store!r}")
    if config_store == "database" and not store_targets:
        raise ValueError("config_store 'database' needs the stack database's store_targets")
    for name, words in (("store_targets", store_targets), ("replica_targets", replica_targets), ("search_targets", search_targets)):
        for w in words:
            if not w or any(c.isspace() for c in w):
                raise ValueError(f"{name}: not a user@host:port/db word: {w!r}")
    if driver not in ("postgres", "mysql"):
        raise ValueError(f"unknown database driver {driver!r}")
    accept_pg = ["verify-full"] + ([tls_mode] if driver == "postgres" and tls_mode != "verify-full" else [])
    accept_my = ["true"] + ([tls_mode] if driver == "mysql" and tls_mode != "true" else [])
    for name, path in (("install_dir", install_dir), ("own_env", own_env), ("proc", proc)):
        if not path.startswith("/"):
            raise ValueError(f"{name} must be an absolute path: {path!r}")
    params = {
        "node": node,
        "address": address,
        "unit": unit,
        "install_dir": install_dir.rstrip("/") or "/",
        "version": version,
        "version_key": version_key,
        "cluster_enabled": "true" if cluster_enabled else "false",
        "own_env": own_env,
        "accept_pg": " ".join(accept_pg),
        "accept_my": " ".join(accept_my),
        "driver": driver,
        "proc": proc,
        "config_store": config_store,
        "store_key": store_key,
        "store_targets": " ".join(store_targets),
        "replica_key": replica_key,
        "replica_targets": " ".join(replica_targets),
        "search_key": search_key,
        "search_targets": " ".join(search_targets),
    }
    code = {
        "dsn_checks": template("dsn-checks.sh").removesuffix("\n"),
        # inside a double-quoted message: Platform values are plain text (no $, quotes, `)
        "INSTALL_JQ": platform.install(platform.jq_package),
    }
    return script("node-preflight.sh", code=code, **params) + "".join(f"(\n{check.rstrip(chr(10))}\n)\n" for check in more)
