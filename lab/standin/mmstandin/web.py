"""The stand-in's HTTP(S) listener.

Owns: serving on ``ServiceSettings.ListenAddress``, over TLS with
``TLSCertFile``/``TLSKeyFile``/``TLSMinVer`` when ``ConnectionSecurity`` is
``"TLS"`` (certificate loaded once at start, as Mattermost does), and the
handful of routes the program and tests touch: ``/api/v4/system/ping``
(Mattermost's JSON from memory; ``?get_server_status=true`` writes and deletes a row through
the database pool, as Mattermost does, and is the route a load that needs the database uses), ``/``,
the websocket paths (400 without an upgrade, like Mattermost) and the stand-in's
own ``/standin/status``.

On a TLS listener, a client speaking plain HTTP gets what Go's net/http sends (a bare
``HTTP/1.0 400`` and a close), not a failed handshake: NGINX treats the first as an answer
and the second as an upstream error it retries elsewhere, so a rollout tested against a
stand-in that only fails the handshake would pass for the wrong reason.

Stopping drains like Mattermost's StopHTTPServer (Go's ``http.Server.Shutdown`` with
``TimeToWaitForConnectionsToCloseOnServerShutdown`` = 1 s): no new connections, idle keep-alive
connections closed at once, a request in progress finishes (with ``Connection: close``) if it
can within the second. Killing it mid-response instead cuts a response NGINX already started to
forward, a failure no real restart produces.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import VERSION
from .runtime import Context, StartupError

# net/http (server.go, conn.serve) writes exactly this on the raw connection, then closes it,
# when the TLS handshake fails on a first record that looks like a plaintext HTTP request.
GO_HTTP_TO_HTTPS_RESPONSE = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
# net/http tlsRecordHeaderLooksLikeHTTP: the 5 bytes of a would-be TLS record header
_HTTP_RECORD_HEADERS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_RECORD_ALERT, _RECORD_HANDSHAKE = 0x15, 0x16
# Mattermost's TimeToWaitForConnectionsToCloseOnServerShutdown
SHUTDOWN_GRACE_SECONDS = 1.0

# App.dbHealthCheckKey: "health_check_" + the cluster id (empty without a cluster license)
HEALTH_CHECK_KEY = "health_check_"

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def parse_listen_address(value: str) -> tuple[str, int]:
    """``":8065"`` -> ("0.0.0.0", 8065); ``"10.0.0.1:8065"`` -> ("10.0.0.1", 8065)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise StartupError(f"invalid ServiceSettings.ListenAddress {value!r}")
    host = host.strip("[]")
    return (host or "0.0.0.0", int(port))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls_context: ssl.SSLContext | None = None
    ctx: Context

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.conns: dict[socket.socket, bool] = {}
        """Open connections, and whether each is in the middle of a request."""
        self.conns_lock = threading.Lock()
        self.draining = False

    def set_conn(self, conn: socket.socket, busy: bool | None) -> None:
        """Track a connection: busy, idle, or gone (None)."""
        with self.conns_lock:
            if busy is None:
                self.conns.pop(conn, None)
            else:
                self.conns[conn] = busy

    def drain(self, grace: float) -> None:
        """Go's Shutdown after the listener is closed: hang up idle connections now, give the
        busy ones `grace` seconds to finish their response, then hang up what is left."""
        with self.conns_lock:
            self.draining = True
            idle = [c for c, busy in self.conns.items() if not busy]
        for c in idle:
            _hang_up(c)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self.conns_lock:
                if not any(self.conns.values()):
                    break
            time.sleep(0.01)
        with self.conns_lock:
            rest = list(self.conns)
        for c in rest:
            _hang_up(c)

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        # The TLS handshake runs in the connection's own thread, so a slow or
        # plain-text client cannot stall the accept loop.
        if self.tls_context is not None:
            request.settimeout(30)
            try:
                verdict = first_record_verdict(peek_record_header(request, 30))
                if verdict == "http":
                    request.sendall(GO_HTTP_TO_HTTPS_RESPONSE)
                    return  # socketserver closes the connection, as Go does
                if verdict != "tls":
                    raise ssl.SSLError(verdict)
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.ctx.log.debug("http: TLS handshake error", remote=str(client_address), error=str(exc))
                return
        super().finish_request(request, client_address)


def _hang_up(conn: socket.socket) -> None:
    # the plain socket call, also for a TLS connection: SSLSocket.shutdown would drop the TLS
    # state under the handler thread still reading it; this just wakes that read with EOF
    try:
        socket.socket.shutdown(conn, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its handler


def peek_record_header(sock: socket.socket, timeout: float) -> bytes:
    """The first 5 bytes the client sent (fewer if it closed first), left in the socket for the
    TLS handshake. Linux ignores MSG_WAITALL together with MSG_PEEK, hence the poll."""
    deadline = time.monotonic() + timeout
    while True:
        data = sock.recv(5, socket.MSG_PEEK)
        if len(data) >= 5 or not data or time.monotonic() > deadline:
            return data
        time.sleep(0.005)


def first_record_verdict(header: bytes) -> str:
    """What Go's crypto/tls + net/http make of a connection's first 5 bytes: "tls" (go on with
    the handshake), "http" (answer GO_HTTP_TO_HTTPS_RESPONSE and close), or the handshake error
    after which Go closes without a word."""
    if len(header) < 5:
        return "unexpected EOF"
    version = header[1] << 8 | header[2]
    if header[0] not in (_RECORD_ALERT, _RECORD_HANDSHAKE) or version >= 0x1000:
        if header in _HTTP_RECORD_HEADERS:
            return "http"
        return "first record does not look like a TLS handshake"
    return "tls"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mattermost-standin"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        self.server.ctx.log.debug("http: " + format % args)

    def setup(self) -> None:
        super().setup()
        self.server.set_conn(self.connection, False)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.set_conn(self.connection, None)

    def parse_request(self) -> bool:
        # the request line has arrived: from here until the response is out, a stop waits
        self.server.set_conn(self.connection, True)
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.set_conn(self.connection, False)
            if self.server.draining:
                self.close_connection = True

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version-Id", VERSION)
        if self.server.draining:
            self.send_header("Connection", "close")  # Go's server stops keep-alives in Shutdown
        svc = self.server.ctx.config.section("ServiceSettings")
        if svc["ConnectionSecurity"] == "TLS" and svc["TLSStrictTransport"]:
            self.send_header("Strict-Transport-Security", f"max-age={svc['TLSStrictTransportMaxAge']}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        path = url.path
        ctx = self.server.ctx
        if path == "/api/v4/system/ping":
            self._json(*ping_response(ctx, parse_qs(url.query)))
        elif path in ("/api/v4/websocket", "/api/v4/users/websocket"):
            self._json(
                400,
                {
                    "id": "api.web_socket.connect.upgrade.app_error",
                    "message": "Failed to upgrade websocket connection.",
                    "status_code": 400,
                },
            )
        elif path == "/standin/status":
            self._json(200, standin_status(ctx))
        elif path == "/" or path.startswith("/login"):
            body = (
                "<!doctype html><html><head><title>Mattermost</title></head>"
                f"<body><h1>Mattermost</h1><p>lab stand-in {VERSION} on {socket.gethostname()}</p></body></html>"
            ).encode()
            self._send(200, body, "text/html; charset=utf-8")
        else:
            self._json(
                404,
                {
                    "id": "api.context.404.app_error",
                    "message": "Sorry, we could not find the page.",
                    "status_code": 404,
                },
            )


def ping_response(ctx: Context, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    """Mattermost's GET /api/v4/system/ping (server/channels/api4/system.go getSystemPing).

    The bare ping touches nothing: it answers from memory. With ``get_server_status=true``
    (exactly that: Go compares ``r.FormValue`` to "true") it writes and deletes a Systems row
    through the database pool (DBHealthCheckWrite/DBHealthCheckDelete), so it needs a working
    login when the pool has no idle connection; a failure makes ``database_status`` and
    ``status`` UNHEALTHY and the answer a 500 (unless ``use_rest_semantics=true``)."""
    body: dict[str, Any] = {
        "AndroidLatestVersion": "",
        "AndroidMinVersion": "",
        "IosLatestVersion": "",
        "IosMinVersion": "",
        "status": "OK",
    }
    if query.get("get_server_status", [""])[0] == "true":
        db = ctx.subsystems.get("database")
        error = db.health_check_write_delete(HEALTH_CHECK_KEY) if db is not None else "no database"  # type: ignore[attr-defined]
        if error is None and db is not None:
            # STAND-IN (stricter than the bare route): the status ping also reads through the
            # read pools, as a busy server does all the time (SqlSystemStore.Get uses
            # GetReplicaX; searches use GetSearchReplicaX), so a load through it logs in to
            # every replica too and fails when one cannot be reached
            error = db.read_through_replicas()  # type: ignore[attr-defined]
        body["database_status"] = "OK"
        if error is not None:
            ctx.log.warn("Unable to write to database.", error=error)
            body["database_status"] = "UNHEALTHY"
            body["status"] = "UNHEALTHY"
        body["filestore_status"] = "OK"
    body["ActiveSearchBackend"] = "database"
    if body["status"] != "OK" and query.get("use_rest_semantics", [""])[0] != "true":
        return 500, body
    return 200, body


def standin_status(ctx: Context) -> dict[str, Any]:
    """The stand-in's own view, for tests: version, hostname, env overrides, subsystems."""
    return {
        "standin": True,
        "version": VERSION,
        "hostname": socket.gethostname(),
        "config": ctx.config.path,
        "fromEnv": ctx.config.from_env,
        "configStore": ctx.config.store,
        "subsystems": ctx.status(),
    }


class Web:
    """The web subsystem."""

    name = "web"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.svc = ctx.config.section("ServiceSettings")
        self.address = parse_listen_address(self.svc["ListenAddress"])
        self.tls = self.svc["ConnectionSecurity"] == "TLS"
        # Loaded once, before anything starts: an unusable certificate stops
        # the server before it touches the database.
        self.tls_context = self._tls_context() if self.tls else None
        self.httpd: _Server | None = None
        self.thread: threading.Thread | None = None

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS.get(self.svc["TLSMinVer"], ssl.TLSVersion.TLSv1_2)
        try:
            ctx.load_cert_chain(self.svc["TLSCertFile"], self.svc["TLSKeyFile"])
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(
                f"Error starting server: cannot load TLS certificate {self.svc['TLSCertFile']!r} / "
                f"key {self.svc['TLSKeyFile']!r}: {exc}"
            ) from exc
        return ctx

    def start(self) -> None:
        try:
            httpd = _Server(self.address, _Handler, bind_and_activate=False)
            httpd.ctx = self.ctx
            httpd.tls_context = self.tls_context
            httpd.server_bind()
            httpd.server_activate()
        except OSError as exc:
            raise StartupError(f"Error starting server: listen {self.address[0]}:{self.address[1]}: {exc}") from exc
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        self.thread.start()
        self.ctx.log.info(
            "Server is listening on " + f"{self.address[0]}:{self.address[1]}",
            address=f"{self.address[0]}:{self.address[1]}",
            tls=self.tls,
            tls_min_version=self.svc["TLSMinVer"] if self.tls else None,
        )

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd.drain(SHUTDOWN_GRACE_SECONDS)

    def status(self) -> dict[str, Any]:
        return {
            "listen": f"{self.address[0]}:{self.address[1]}",
            "tls": self.tls,
            "tlsMinVer": self.svc["TLSMinVer"] if self.tls else None,
            "certFile": self.svc["TLSCertFile"] if self.tls else None,
        }


def create(ctx: Context) -> Web:
    """Subsystem factory used by server.SUBSYSTEMS."""
    return Web(ctx)
