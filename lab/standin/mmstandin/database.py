"""The stand-in's database connection.

Owns: opening a connection for a parsed ``dsn.Target`` with the driver's TLS
semantics (pymysql for mysql, psycopg2/libpq for postgres), Mattermost's
startup ping loop (refuse to start when it keeps failing), and the connection
pool every database use goes through (``Pool``: Go's database/sql as Mattermost
configures it, so new logins happen all the time). ``query()`` is for the
routes and subsystems that need the database; ``status()`` shows health (the
outcome of the last use), the TLS of the newest connection and pool counters.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
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


@functools.cache
def system_roots() -> str:
    """Go's system roots as go-sql-driver's `tls=true` uses them: read ONCE per process
    (crypto/x509/cert_pool.go SystemCertPool -> systemRootsPool, `once.Do(initSystemRoots)`;
    root_unix.go loadSystemRoots: SSL_CERT_FILE else the distribution's bundle, then the
    SSL_CERT_DIR files). A CA added to the store later is not trusted until the process
    restarts, as in Mattermost. Of SSL_CERT_DIR only *.pem / *.crt are read, where Go reads every
    file (readUniqueDirectoryEntries): stricter, never kinder. `system_roots.cache_clear()` is
    the restart."""
    pems = [Path(system_ca_file()).read_text()] if Path(system_ca_file()).is_file() else []
    for d in filter(None, os.environ.get("SSL_CERT_DIR", "").split(":")):
        pems += [f.read_text() for f in sorted(Path(d).iterdir()) if f.is_file() and f.suffix in (".pem", ".crt")]
    return "".join(pems)


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
            ctx.load_verify_locations(cadata=system_roots())
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


class Pool:
    """Go's ``database/sql`` connection pool as Mattermost configures it.

    server/public/utils/sql/sql_utils.go ``SetupConnection`` opens the pool, pings it (retrying)
    and sets ``SetMaxIdleConns(MaxIdleConns)``, ``SetMaxOpenConns(MaxOpenConns)``,
    ``SetConnMaxLifetime(ConnMaxLifetimeMilliseconds)`` and
    ``SetConnMaxIdleTime(ConnMaxIdleTimeMilliseconds)``. What follows is database/sql's own
    behaviour (Go's src/database/sql/sql.go):

    - ``conn``: reuse the most recently returned idle connection; one past its lifetime is
      closed and the next one tried; without an idle one, open a NEW connection (a login with
      the DSN's credentials, now) - a failed login is the query's error.
    - ``putConn``: a connection past its lifetime, or beyond ``MaxIdleConns`` idle ones (<= 0:
      none kept), is closed instead of kept.
    - ``connectionCleaner``: closes idle connections past their idle time or lifetime, at most
      once a second.
    - ``retry``: a query on a connection found broken is retried on another (twice from the
      pool, then once on a new connection); any other error is the caller's.

    So a node keeps logging in to its database all the time, with the credentials of its
    CURRENT DSN: changing the user's password on the server breaks the next login of every node
    not yet given the new one.
    """

    MAX_BAD_CONN_RETRIES = 2  # database/sql maxBadConnRetries

    def __init__(self, target: dsnmod.Target, timeout: float, settings: dict[str, Any]) -> None:
        self.target = target
        self.timeout = timeout
        max_idle = int(settings.get("MaxIdleConns") or 0)
        self.max_idle = max_idle if max_idle > 0 else 0
        self.max_open = max(0, int(settings.get("MaxOpenConns") or 0))
        self.lifetime = max(0, int(settings.get("ConnMaxLifetimeMilliseconds") or 0)) / 1000.0
        self.idle_time = max(0, int(settings.get("ConnMaxIdleTimeMilliseconds") or 0)) / 1000.0
        self.lock = threading.Lock()
        self.free: list[tuple[Connection, float, float]] = []  # (conn, created, returned)
        self.open_count = 0
        self.opened = 0
        self.closed_lifetime = 0
        self.closed_idle = 0
        self.closed_max_idle = 0
        self.last_tls: dict[str, Any] | None = None
        self.slot = threading.Semaphore(self.max_open) if self.max_open else None

    def _expired(self, created: float, now: float) -> bool:
        return self.lifetime > 0 and now - created >= self.lifetime

    def _open(self) -> tuple[Connection, float]:
        conn = Connection(self.target, self.timeout)
        with self.lock:
            self.open_count += 1
            self.opened += 1
            self.last_tls = conn.tls
        return conn, time.monotonic()

    def _close(self, conn: Connection) -> None:
        conn.close()
        with self.lock:
            self.open_count -= 1

    def _get(self, new: bool) -> tuple[Connection, float]:
        if not new:
            while True:
                with self.lock:
                    if not self.free:
                        break
                    conn, created, _ = self.free.pop()
                if self._expired(created, time.monotonic()):
                    with self.lock:
                        self.closed_lifetime += 1
                    self._close(conn)
                    continue
                return conn, created
        return self._open()

    def _put(self, conn: Connection, created: float, broken: bool) -> None:
        now = time.monotonic()
        with self.lock:
            keep = not broken and not self._expired(created, now) and len(self.free) < self.max_idle
            if keep:
                self.free.append((conn, created, now))
            elif not broken and self._expired(created, now):
                self.closed_lifetime += 1
            elif not broken:
                self.closed_max_idle += 1
        if not keep:
            self._close(conn)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on a pooled connection, with database/sql's retry rules."""
        if self.slot is not None:
            self.slot.acquire()
        try:
            attempts = [False] * self.MAX_BAD_CONN_RETRIES + [True]  # cachedOrNewConn x2, alwaysNewConn
            for i, new in enumerate(attempts):
                conn, created = self._get(new)  # a failed login raises: the caller's error
                try:
                    rows = conn.query(sql, params)
                except Exception as exc:  # noqa: BLE001 - classify like driver.ErrBadConn
                    broken = _is_bad_conn(exc)
                    self._put(conn, created, broken=True)
                    if broken and i < len(attempts) - 1:
                        continue
                    raise
                self._put(conn, created, broken=False)
                return rows
            raise AssertionError("unreachable")
        finally:
            if self.slot is not None:
                self.slot.release()

    def clean(self) -> None:
        """database/sql connectionCleaner: close idle connections past idle time or lifetime."""
        now = time.monotonic()
        doomed = []
        with self.lock:
            keep = []
            for conn, created, returned in self.free:
                if self._expired(created, now):
                    self.closed_lifetime += 1
                    doomed.append(conn)
                elif self.idle_time > 0 and now - returned >= self.idle_time:
                    self.closed_idle += 1
                    doomed.append(conn)
                else:
                    keep.append((conn, created, returned))
            self.free = keep
        for conn in doomed:
            self._close(conn)

    def cleaner_interval(self) -> float | None:
        """How often the cleaner runs (Go: the shortest limit, at least one second)."""
        limits = [d for d in (self.lifetime, self.idle_time) if d > 0]
        return max(1.0, min(limits)) if limits else None

    def close(self) -> None:
        with self.lock:
            free, self.free = self.free, []
        for conn, _, _ in free:
            self._close(conn)

    def stats(self) -> dict[str, Any]:
        """Like sql.DBStats: open and idle connections and why connections were closed."""
        with self.lock:
            return {
                "open": self.open_count,
                "idle": len(self.free),
                "opened": self.opened,
                "maxIdleClosed": self.closed_max_idle,
                "maxIdleTimeClosed": self.closed_idle,
                "maxLifetimeClosed": self.closed_lifetime,
                "maxIdle": self.max_idle,
                "lifetimeSeconds": self.lifetime,
                "idleTimeSeconds": self.idle_time,
            }


SYSTEMS_TABLE = "CREATE TABLE IF NOT EXISTS Systems (Name VARCHAR(64) PRIMARY KEY, Value VARCHAR(1024))"


def create_tables(query: Callable[[str], Any], *statements: str) -> None:
    """Run the CREATE TABLE IF NOT EXISTS `statements` in order, all again on an error, up to 5
    times: nodes starting together (a full-cluster restart) can collide on them in PostgreSQL's
    catalog, and the loser retries. The last attempt's error propagates."""
    for attempt in range(5):
        try:
            for statement in statements:
                query(statement)
            return
        except Exception:  # noqa: BLE001 - retried; the last attempt's error propagates
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def _is_bad_conn(exc: BaseException) -> bool:
    """Whether a driver error means "this connection is dead, try another" (driver.ErrBadConn):
    the server closed it or the socket broke, as opposed to an error the query itself caused."""
    try:
        import psycopg2

        if isinstance(exc, psycopg2.InterfaceError):
            return True
        if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "pgcode", None) is None:
            return True
    except ImportError:
        pass
    try:
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        if isinstance(exc, pymysql.err.OperationalError) and exc.args and exc.args[0] in (2006, 2013, 2055):
            return True
    except ImportError:
        pass
    return isinstance(exc, (ConnectionError, BrokenPipeError))


class Database:
    """The database subsystem: SetupConnection's startup ping loop, then a database/sql pool
    (``Pool``) that every request needing the database goes through."""

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
        settings = ctx.config.section("SqlSettings")
        self.pool = Pool(self.target, self.timeout, settings)
        # sqlstore/store.go initConnection: one pool per DataSourceReplicas and per
        # DataSourceSearchReplicas entry, each opened with SetupConnection like the master
        self.replicas: list[tuple[str, Pool]] = []
        for key, label in (("DataSourceReplicas", "replica"), ("DataSourceSearchReplicas", "search-replica")):
            for i, one in enumerate(settings.get(key) or []):
                try:
                    target = dsnmod.parse(driver, one)
                except dsnmod.DSNError as exc:
                    raise StartupError(f"Failed to parse SqlSettings.{key}[{i}]: {exc}") from exc
                self.replicas.append((f"{label}-{i}", Pool(target, target.connect_timeout or DEFAULT_TIMEOUT, settings)))
        self.rr = {"replica": 0, "search-replica": 0}
        self.lock = threading.Lock()
        self.healthy = False
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.checks = 0
        self.failures = 0
        self.thread: threading.Thread | None = None

    def _setup_connection(self, conn_type: str, pool: Pool) -> None:
        # SetupConnection: PingContext up to `attempts` times, DBConnRetrySleep apart; the last
        # failure is fatal (mlog.Fatal), for a replica exactly as for the master
        for attempt in range(1, PING_ATTEMPTS + 1):
            self.log.info("Pinging SQL", database=conn_type, dataSource=pool.target.describe())
            try:
                pool.query("SELECT 1")
                return
            except Exception as exc:  # noqa: BLE001 - every driver error means "not connected"
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                if attempt == PING_ATTEMPTS:
                    raise StartupError(
                        f"Failed to ping DB ({conn_type}) after {PING_ATTEMPTS} attempts: {self.last_error}"
                    ) from exc
                self.log.error(
                    "Failed to ping DB", error=self.last_error, retrying_in_seconds=PING_INTERVAL, attempt=attempt
                )
                if self.ctx.stopping.wait(PING_INTERVAL):
                    raise StartupError("stopped while waiting for the database") from exc

    def start(self) -> None:
        self._setup_connection("master", self.pool)
        for conn_type, pool in self.replicas:
            self._setup_connection(conn_type, pool)
        try:
            # the part of Mattermost's migrations the stand-in's routes use (the Systems table)
            self._migrate()
        except Exception as exc:  # noqa: BLE001 - a failed migration stops the server
            raise StartupError(f"Failed to apply database migrations: {type(exc).__name__}: {exc}") from exc
        self.healthy = True
        self.last_error = None
        self.last_check = time.time()
        self.log.info("Database connection established", database=self.target.describe(), tls=self.pool.last_tls)
        self.thread = threading.Thread(target=self._clean_loop, name="db-cleaner", daemon=True)
        self.thread.start()

    def _migrate(self) -> None:
        create_tables(self.pool.query, SYSTEMS_TABLE)

    def _clean_loop(self) -> None:
        interval = self.pool.cleaner_interval()
        while not self.ctx.stopping.wait(interval or CHECK_INTERVAL):
            for pool in [self.pool, *(p for _, p in self.replicas)]:
                pool.clean()

    def read_pool(self, kind: str = "replica") -> tuple[str, Pool]:
        """GetReplicaX / GetSearchReplicaX: the next pool of that kind, round robin; the master
        without replicas (search: the read replicas first, as GetSearchReplicaX falls back to
        GetReplicaX). STAND-IN: always as if licensed (replicas are an Enterprise feature), the
        stricter choice here. No fallback to the master when a replica is down: the read fails."""
        pools = [(n, p) for n, p in self.replicas if n.startswith(f"{kind}-")]
        if not pools and kind == "search-replica":
            return self.read_pool("replica")
        if not pools:
            return "master", self.pool
        with self.lock:
            self.rr[kind] += 1
            return pools[self.rr[kind] % len(pools)]

    def read_through_replicas(self) -> str | None:
        """One read through GetReplicaX and one through GetSearchReplicaX; the first error or None."""
        for kind in ("replica", "search-replica"):
            name, pool = self.read_pool(kind)
            try:
                pool.query("SELECT COUNT(*) FROM Systems")
            except Exception as exc:  # noqa: BLE001 - a store error
                err = f"{name}: {type(exc).__name__}: {exc}".strip()
                self._record(False, err)
                return err
        return None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement through the pool; records the outcome as the database's health."""
        try:
            rows = self.pool.query(sql, params)
        except Exception as exc:
            self._record(False, f"{type(exc).__name__}: {exc}".strip())
            raise
        self._record(True, None)
        return rows

    def _record(self, ok: bool, err: str | None) -> None:
        with self.lock:
            if ok != self.healthy:
                if ok:
                    self.log.info("Database connection restored", database=self.target.describe())
                else:
                    self.log.error("Database query failed", error=err)
            self.healthy, self.last_error = ok, err
            self.last_check = time.time()
            self.checks += 1
            self.failures += 0 if ok else 1

    def check(self) -> bool:
        """A query through the pool now; record and return whether it worked."""
        try:
            self.query("SELECT 1")
        except Exception:  # noqa: BLE001 - recorded by query()
            return False
        return True

    def health_check_write_delete(self, key: str) -> str | None:
        """Mattermost's DBHealthCheckWrite + DBHealthCheckDelete (server/channels/app/app.go):
        upsert the Systems row ``health_check_<id>`` with the current time, then delete it.
        Returns the first error (as Mattermost logs it) or None."""
        now = str(int(time.time()))
        if self.target.driver == "mysql":
            upsert = "INSERT INTO Systems (Name, Value) VALUES (%s, %s) ON DUPLICATE KEY UPDATE Value = VALUES(Value)"
        else:
            upsert = "INSERT INTO Systems (Name, Value) VALUES (%s, %s) ON CONFLICT (Name) DO UPDATE SET Value = EXCLUDED.Value"
        error = None
        for sql, params in ((upsert, (key, now)), ("DELETE FROM Systems WHERE Name = %s", (key,))):
            try:
                self.query(sql, params)
            except Exception as exc:  # noqa: BLE001 - Mattermost reports any store error as unhealthy
                error = error or f"{type(exc).__name__}: {exc}".strip()
        return error

    def stop(self) -> None:
        self.pool.close()
        for _, pool in self.replicas:
            pool.close()

    def status(self) -> dict[str, Any]:
        return {
            "driver": self.target.driver,
            "target": self.target.describe(),
            "tlsMode": self.target.tls,
            "healthy": self.healthy,
            "tls": self.pool.last_tls,
            "lastCheck": self.last_check,
            "lastError": self.last_error,
            "checks": self.checks,
            "failures": self.failures,
            "pool": self.pool.stats(),
            "replicas": {
                name: {"target": p.target.describe(), "tlsMode": p.target.tls, "tls": p.last_tls, "pool": p.stats()}
                for name, p in self.replicas
            },
        }


def create(ctx: Context) -> Database:
    """Subsystem factory used by server.SUBSYSTEMS."""
    return Database(ctx)
