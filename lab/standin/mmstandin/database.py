"""The stand-in's database connection.

Owns: opening a connection for a parsed ``dsn.Target`` with the driver's TLS
semantics (pymysql for mysql, psycopg2/libpq for postgres), Mattermost's
startup ping loop (refuse to start when it keeps failing), and a periodic
health check whose result, including the TLS protocol and cipher actually in
use, is exposed through ``status()``. ``query()`` is there for subsystems that
need the database (cluster discovery, later).
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from typing import Any

from . import dsn as dsnmod
from .runtime import Context, StartupError

# Mattermost's sqlstore retries its first ping a few times before giving up.
PING_ATTEMPTS = int(os.environ.get("MMSTANDIN_DB_PING_ATTEMPTS", "5"))
PING_INTERVAL = float(os.environ.get("MMSTANDIN_DB_PING_INTERVAL", "2"))
CHECK_INTERVAL = float(os.environ.get("MMSTANDIN_DB_CHECK_INTERVAL", "10"))
DEFAULT_TIMEOUT = 10.0


def system_ca_file() -> str:
    """The trust store a Go program uses: SSL_CERT_FILE, else Debian's bundle."""
    return os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"


def _client_context(target: dsnmod.Target) -> ssl.SSLContext:
    """A client TLS context for the target's verification level."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Go's client default
    if target.tls in ("verify-ca", "verify-full"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = target.tls == "verify-full"
        if target.root_cert:
            ctx.load_verify_locations(cafile=target.root_cert)
        else:
            # Go's system roots honour SSL_CERT_FILE / SSL_CERT_DIR.
            ctx.load_verify_locations(cafile=system_ca_file(), capath=os.environ.get("SSL_CERT_DIR"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if target.client_cert:
        ctx.load_cert_chain(target.client_cert, target.client_key)
    return ctx


class Connection:
    """One open database connection plus what TLS it negotiated."""

    def __init__(self, target: dsnmod.Target, timeout: float) -> None:
        self.target = target
        self.raw: Any = None
        self.tls: dict[str, Any] | None = None
        if target.driver == "mysql":
            self._open_mysql(timeout)
        else:
            self._open_postgres(timeout)

    def _open_mysql(self, timeout: float) -> None:
        import pymysql
        from pymysql.constants import CLIENT

        require = self.target.tls in ("encrypt", "verify-ca", "verify-full")

        class _Conn(pymysql.connections.Connection):
            # pymysql silently stays plain when the server does not offer TLS;
            # go-sql-driver fails instead for tls=true/skip-verify, before any
            # credentials are sent.
            def _request_authentication(self) -> None:  # type: ignore[override]
                if require and not (self.server_capabilities & CLIENT.SSL):
                    raise pymysql.err.OperationalError(2026, "TLS requested but server does not support TLS")
                super()._request_authentication()

        kwargs: dict[str, Any] = {
            "host": self.target.host,
            "port": self.target.port,
            "user": self.target.user,
            "password": self.target.password,
            "database": self.target.database or None,
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "write_timeout": timeout,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        if self.target.tls != "disable":
            kwargs["ssl"] = _client_context(self.target)
        self.raw = _Conn(**kwargs)
        sock = self.raw._sock
        if isinstance(sock, ssl.SSLSocket):
            self.tls = {"version": sock.version(), "cipher": sock.cipher()[0]}

    def _open_postgres(self, timeout: float) -> None:
        import psycopg2

        mode = {
            "disable": "disable",
            "encrypt": "require",
            "verify-ca": "verify-ca",
            "verify-full": "verify-full",
        }[self.target.tls]
        kwargs: dict[str, Any] = {
            "host": self.target.host,
            "port": self.target.port,
            "user": self.target.user,
            "password": self.target.password,
            "dbname": self.target.database,
            "connect_timeout": max(1, int(timeout)),
            "sslmode": mode,
            # lib/pq has no GSSAPI encryption; do not let libpq try it first.
            "gssencmode": "disable",
            "application_name": "mattermost-standin",
        }
        if mode in ("verify-ca", "verify-full"):
            # lib/pq falls back to the system roots, libpq to ~/.postgresql/root.crt.
            kwargs["sslrootcert"] = self.target.root_cert or system_ca_file()
        elif mode == "require":
            # libpq would verify against ~/.postgresql/root.crt if it existed;
            # lib/pq does not (it only honours an explicit sslrootcert).
            kwargs["sslrootcert"] = "/nonexistent/mattermost-standin-root.crt"
        if self.target.client_cert:
            kwargs["sslcert"] = self.target.client_cert
            kwargs["sslkey"] = self.target.client_key or ""
        self.raw = psycopg2.connect(**kwargs)
        self.raw.autocommit = True
        info = self.raw.info
        if info.ssl_in_use:
            self.tls = {"version": info.ssl_attribute("protocol"), "cipher": info.ssl_attribute("cipher")}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; rows for a SELECT, [] otherwise."""
        with self.raw.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may raise anything
            pass


class Database:
    """The database subsystem: startup ping loop, then a periodic health check."""

    name = "database"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log
        driver = ctx.config.get("SqlSettings", "DriverName")
        try:
            self.target = dsnmod.parse(driver, ctx.config.get("SqlSettings", "DataSource"))
        except dsnmod.DSNError as exc:
            raise StartupError(f"Failed to parse SqlSettings.DataSource: {exc}") from exc
        self.timeout = self.target.connect_timeout or DEFAULT_TIMEOUT
        self.conn: Connection | None = None
        self.lock = threading.Lock()
        self.healthy = False
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.checks = 0
        self.thread: threading.Thread | None = None

    def _connect(self) -> Connection:
        conn = Connection(self.target, self.timeout)
        conn.query("SELECT 1")
        return conn

    def start(self) -> None:
        self.log.info("Pinging SQL", database=self.target.describe())
        for attempt in range(1, PING_ATTEMPTS + 1):
            try:
                self.conn = self._connect()
                break
            except Exception as exc:  # noqa: BLE001 - every driver error means "not connected"
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                if attempt == PING_ATTEMPTS:
                    raise StartupError(f"Failed to ping DB after {PING_ATTEMPTS} attempts: {self.last_error}") from exc
                self.log.error(
                    "Failed to ping DB", error=self.last_error, retrying_in_seconds=PING_INTERVAL, attempt=attempt
                )
                if self.ctx.stopping.wait(PING_INTERVAL):
                    raise StartupError("stopped while waiting for the database") from exc
        self.healthy = True
        self.last_error = None
        self.last_check = time.time()
        tls = self.conn.tls if self.conn else None
        self.log.info("Database connection established", database=self.target.describe(), tls=tls)
        self.thread = threading.Thread(target=self._check_loop, name="db-check", daemon=True)
        self.thread.start()

    def _check_loop(self) -> None:
        while not self.ctx.stopping.wait(CHECK_INTERVAL):
            self.check()

    def check(self) -> bool:
        """Ping the database now (reconnecting if needed); record and return health."""
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = self._connect()
                else:
                    self.conn.query("SELECT 1")
                ok, err = True, None
            except Exception as exc:  # noqa: BLE001 - every driver error means "unhealthy"
                ok, err = False, f"{type(exc).__name__}: {exc}".strip()
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            if ok != self.healthy:
                if ok:
                    self.log.info("Database connection restored", database=self.target.describe())
                else:
                    self.log.error("Database health check failed", error=err)
            self.healthy, self.last_error = ok, err
            self.last_check = time.time()
            self.checks += 1
            return ok

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the shared connection (for other subsystems)."""
        with self.lock:
            if self.conn is None:
                self.conn = self._connect()
            return self.conn.query(sql, params)

    def stop(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def status(self) -> dict[str, Any]:
        return {
            "driver": self.target.driver,
            "target": self.target.describe(),
            "tlsMode": self.target.tls,
            "healthy": self.healthy,
            "tls": self.conn.tls if self.conn else None,
            "lastCheck": self.last_check,
            "lastError": self.last_error,
            "checks": self.checks,
        }


def create(ctx: Context) -> Database:
    """Subsystem factory used by server.SUBSYSTEMS."""
    return Database(ctx)
