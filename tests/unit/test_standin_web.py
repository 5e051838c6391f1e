"""The stand-in's listener behaves like Mattermost (Go net/http) where a rollout test can tell:

- A plain-HTTP client on the TLS port gets the exact bare `HTTP/1.0 400` and a close, instead of a
  failed handshake. NGINX retries a failed handshake on another node but hands a 400 to the
  client, so the difference decides whether a rollout test can see requests sent over http:// to
  a node that already switched to TLS.
- Stopping drains like Mattermost's StopHTTPServer (Shutdown with a 1 s grace): a response in
  progress is finished, not cut; idle keep-alive connections are closed at once.

The listener runs for real on loopback with a throwaway certificate."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.standin.mmstandin import web
from lab.standin.mmstandin.config import Config
from lab.standin.mmstandin.runtime import Context, Logger
from tests.helpers.certs import self_signed

GO_400 = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


def _self_signed(d: Path) -> tuple[Path, Path]:
    cert, key = self_signed(["localhost"])
    cert_file, key_file = d / "node.crt", d / "node.key"
    cert_file.write_text(cert)
    key_file.write_text(key)
    return cert_file, key_file


def _listener(d: Path, tls: bool = True) -> tuple[web.Web, int, Path]:
    cert, key = _self_signed(d)
    svc = {"ListenAddress": "127.0.0.1:0", "ConnectionSecurity": "TLS" if tls else ""}
    if tls:
        svc.update(TLSCertFile=str(cert), TLSKeyFile=str(key))
    server = web.Web(Context(config=Config(path=str(d / "config.json"), data={"ServiceSettings": svc}), log=Logger("fatal")))
    server.start()
    assert server.httpd is not None
    return server, server.httpd.server_address[1], cert


@pytest.fixture(scope="module")
def tls_listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    server, port, cert = _listener(tmp_path_factory.mktemp("standin"))
    try:
        yield port, cert
    finally:
        server.stop()


def _exchange(port: int, *chunks: bytes) -> bytes:
    """Send chunks (as separate writes), then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for c in chunks:
            s.sendall(c)
        got = b""
        while data := s.recv(4096):
            got += data
        return got


def test_plain_http_to_the_tls_port_gets_gos_400_and_a_close(tls_listener: tuple[int, Path]) -> None:
    port, _ = tls_listener
    assert _exchange(port, b"GET /api/v4/system/ping HTTP/1.1\r\nHost: x\r\n\r\n") == GO_400
    # NGINX's upstream request line for a POST, in two writes (the peek waits for 5 bytes)
    assert _exchange(port, b"PO", b"ST /api/v4/users/login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") == GO_400


def test_bytes_that_are_neither_tls_nor_http_get_a_silent_close(tls_listener: tuple[int, Path]) -> None:
    port, _ = tls_listener
    assert _exchange(port, b"SSH-2.0-OpenSSH_9.2\r\n") == b""


def test_tls_clients_are_still_served(tls_listener: tuple[int, Path]) -> None:
    port, cert = tls_listener
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /api/v4/system/ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        got = b""
        while data := s.recv(4096):
            got += data
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["status"] == "OK"


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (b"\x16\x03\x01\x02\x00", "tls"),
        (b"\x15\x03\x03\x00\x02", "tls"),
        (b"GET /", "http"),
        (b"HEAD ", "http"),
        (b"POST ", "http"),
        (b"PUT /", "http"),
        (b"OPTIO", "http"),
        # Go only recognises these five prefixes; other methods get the silent close
        (b"DELET", "first record does not look like a TLS handshake"),
        (b"\x16\x10\x00\x00\x05", "first record does not look like a TLS handshake"),
        (b"GET", "unexpected EOF"),
    ],
)
def test_first_record_verdict_follows_go(header: bytes, verdict: str) -> None:
    assert web.first_record_verdict(header) == verdict


# ---------------------------------------------------------------- stopping


def _connect(port: int, cert: Path, tls: bool) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if not tls:
        return raw
    return ssl.create_default_context(cafile=str(cert)).wrap_socket(raw, server_hostname="localhost")


def _read_all(s: socket.socket) -> bytes:
    got = b""
    while data := s.recv(4096):
        got += data
    return got


REQUEST = b"GET /api/v4/system/ping HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize("tls", [True, False])
def test_stop_finishes_the_response_in_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool) -> None:
    answering, release = threading.Event(), threading.Event()
    real = web.ping_response

    def slow(ctx: Context, query: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        answering.set()
        release.wait(10)
        return real(ctx, query)

    monkeypatch.setattr(web, "ping_response", slow)
    server, port, cert = _listener(tmp_path, tls)
    with _connect(port, cert, tls) as s:
        s.sendall(REQUEST)
        assert answering.wait(10)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        assert server.httpd is not None
        for _ in range(1000):  # serve_forever notices the stop within its poll interval
            if server.httpd.draining:
                break
            threading.Event().wait(0.01)
        assert server.httpd.draining
        # the process exits when stop() returns: it must wait for the response in progress
        assert stopper.is_alive(), "stop() returned with a response still being written"
        release.set()  # the request finishes while the server drains
        got = _read_all(s)
        stopper.join(10)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head, got
    assert json.loads(body)["status"] == "OK", "the whole body arrived"
    assert not stopper.is_alive()


def test_a_response_that_outlasts_the_grace_period_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: the hang-up really cuts a request that is still running."""
    answering, release = threading.Event(), threading.Event()

    def stuck(ctx: Context, query: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        answering.set()
        release.wait(10)
        return 200, {}

    monkeypatch.setattr(web, "ping_response", stuck)
    monkeypatch.setattr(web, "SHUTDOWN_GRACE_SECONDS", 0.1)
    server, port, cert = _listener(tmp_path)
    try:
        with _connect(port, cert, True) as s:
            s.sendall(REQUEST)
            assert answering.wait(10)
            server.stop()
            assert _read_all(s) == b""
    finally:
        release.set()


@pytest.mark.parametrize("tls", [True, False])
def test_stop_closes_idle_keep_alive_connections(tmp_path: Path, tls: bool) -> None:
    server, port, cert = _listener(tmp_path, tls)
    with _connect(port, cert, tls) as s:
        s.sendall(REQUEST)
        first = b""
        while b'"status": "OK"' not in first:
            first += s.recv(4096)
        assert b"Connection: close" not in first, "keep-alive while serving"
        server.stop()
        assert _read_all(s) == b"", "the idle connection is closed by the stop"
