"""Parsing Mattermost's SqlSettings.DataSource the way its Go drivers do.

Owns: the TLS semantics of the two DSN dialects Mattermost passes to its
database drivers, as pure functions (no sockets here):

* MySQL, go-sql-driver/mysql: ``user:pass@tcp(host:port)/db?param=value&tls=...``
  where ``tls`` is ``true`` (verify against system roots, server name = DSN host),
  ``skip-verify`` (TLS, no verification), ``preferred`` (TLS only if the server
  offers it, no verification), ``false``/absent (plain). Any other value names a
  custom TLS config registered in Go code; Mattermost registers none, so the
  driver rejects it.
* PostgreSQL, lib/pq: ``postgres://user:pass@host:port/db?sslmode=...`` (or the
  ``key=value`` form) with ``sslmode`` in disable|require|verify-ca|verify-full
  (absent = require, as in lib/pq), ``sslrootcert``, ``sslcert``, ``sslkey``,
  ``connect_timeout``. lib/pq rejects every other sslmode with
  ``unsupported sslmode``; with ``require`` and an existing ``sslrootcert`` it
  verifies the chain like verify-ca.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

# Exactly lib/pq's (v1.10) wording, so logs read like the real server's.
PQ_SSLMODES = ("disable", "require", "verify-ca", "verify-full")


class DSNError(ValueError):
    """A DataSource the real driver would reject before connecting."""


@dataclass(frozen=True)
class Target:
    """Where and how to connect: the driver-neutral result of parsing a DSN."""

    driver: str  # "mysql" | "postgres"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    # "disable": plain; "opportunistic": TLS if offered, no verification
    # (mysql preferred); "encrypt": TLS required, no verification;
    # "verify-ca": chain only; "verify-full": chain and name.
    tls: str
    server_name: str | None = None
    root_cert: str | None = None  # None => the system's trust store
    client_cert: str | None = None
    client_key: str | None = None
    connect_timeout: float | None = None
    params: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The target without the password, for logs."""
        return f"{self.driver}://{self.user}@{self.host}:{self.port}/{self.database} tls={self.tls}"


def _go_duration_seconds(value: str) -> float:
    """Seconds in a Go duration such as ``30s``, ``1m30s`` or ``500ms``."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise DSNError(f"time: invalid duration {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def parse_mysql(dsn: str) -> Target:
    """Parse a go-sql-driver/mysql DSN the way ``mysql.ParseDSN`` does."""
    # The driver splits at the LAST '@' before the last '/', so passwords may
    # contain '@' and ':'.
    slash = dsn.rfind("/")
    if slash < 0:
        raise DSNError("invalid DSN: missing the slash separating the database name")
    head, tail = dsn[:slash], dsn[slash:]
    at = head.rfind("@")
    cred, addr_part = (head[:at], head[at + 1 :]) if at >= 0 else ("", head)
    user, _, password = cred.partition(":")
    m = re.fullmatch(r"(?:(?P<net>[a-z0-9]+)(?:\((?P<addr>[^)]*)\))?)?", addr_part)
    if m is None:
        raise DSNError(f"invalid DSN: network address not terminated (missing closing brace) in {addr_part!r}")
    net = m.group("net") or "tcp"
    if net != "tcp":
        raise DSNError(f"stand-in supports only tcp(...) addresses, not {net!r}")
    addr = m.group("addr") or "127.0.0.1:3306"
    host, sep, port_s = addr.rpartition(":")
    if not sep:
        host, port_s = addr, "3306"
    host = host.strip("[]")
    db, _, query = tail[1:].partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    tls_value = params.get("tls", "false")
    tls_lower = tls_value.lower()
    if tls_lower in ("true", "1"):
        tls = "verify-full"
    elif tls_lower in ("false", "0", ""):
        tls = "disable"
    elif tls_lower == "skip-verify":
        tls = "encrypt"
    elif tls_lower == "preferred":
        tls = "opportunistic"
    else:
        # A name looked up in the driver's registry of custom TLS configs.
        raise DSNError(f"invalid value / unknown config name: {tls_value}")
    timeout = _go_duration_seconds(params["timeout"]) if params.get("timeout") else None
    return Target(
        driver="mysql",
        host=host,
        port=int(port_s),
        user=user,
        password=password,
        database=db,
        tls=tls,
        server_name=host if tls == "verify-full" else None,
        connect_timeout=timeout,
        params=params,
    )


def _pq_keyvalue(dsn: str) -> dict[str, str]:
    """lib/pq's ``key=value key2='quoted value'`` form."""
    out: dict[str, str] = {}
    for m in re.finditer(r"\s*([a-zA-Z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", dsn):
        value = m.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[m.group(1)] = value
    return out


def parse_postgres(dsn: str, *, exists=os.path.exists) -> Target:
    """Parse a lib/pq DataSource (URL or key=value) with lib/pq's sslmode rules."""
    if dsn.startswith(("postgres://", "postgresql://")):
        u = urlsplit(dsn)
        opts = {
            "host": u.hostname or "localhost",
            "port": str(u.port or 5432),
            "user": unquote(u.username or ""),
            "password": unquote(u.password or ""),
            "dbname": unquote(u.path.lstrip("/")),
        }
        opts.update(dict(parse_qsl(u.query, keep_blank_values=True)))
    else:
        opts = {"host": "localhost", "port": "5432"}
        opts.update(_pq_keyvalue(dsn))
    mode = opts.get("sslmode", "")
    root = opts.get("sslrootcert") or None
    if mode in ("", "require"):
        tls = "encrypt"
        # lib/pq (like libpq): require + an existing root cert file = verify-ca.
        if root and exists(root):
            tls = "verify-ca"
        else:
            root = None
    elif mode == "verify-ca":
        tls = "verify-ca"
    elif mode == "verify-full":
        tls = "verify-full"
    elif mode == "disable":
        tls = "disable"
    else:
        raise DSNError(
            f'pq: unsupported sslmode "{mode}"; only "require" (default), "verify-full", '
            f'"verify-ca", and "disable" supported'
        )
    timeout = None
    if opts.get("connect_timeout"):
        try:
            timeout = float(int(opts["connect_timeout"]))
        except ValueError as exc:
            raise DSNError(f"pq: invalid connect_timeout {opts['connect_timeout']!r}") from exc
    return Target(
        driver="postgres",
        host=opts["host"],
        port=int(opts.get("port") or 5432),
        user=opts.get("user", ""),
        password=opts.get("password", ""),
        database=opts.get("dbname", ""),
        tls=tls,
        server_name=opts["host"] if tls == "verify-full" else None,
        root_cert=root if tls in ("verify-ca", "verify-full") else None,
        client_cert=opts.get("sslcert") or None,
        client_key=opts.get("sslkey") or None,
        connect_timeout=timeout,
        params={k: v for k, v in opts.items() if k != "password"},
    )


def parse(driver: str, dsn: str) -> Target:
    """Parse ``dsn`` for Mattermost's ``SqlSettings.DriverName``."""
    if driver == "mysql":
        return parse_mysql(dsn)
    if driver == "postgres":
        return parse_postgres(dsn)
    raise DSNError(f"invalid sql driver name {driver!r}: must be 'postgres' or 'mysql'")
