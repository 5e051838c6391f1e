"""The stand-in's TLS listener answers a plain-HTTP client the way Mattermost (Go net/http) does:
the exact bare `HTTP/1.0 400` and a close, instead of a failed handshake. NGINX retries a failed
handshake on another node but hands a 400 to the client, so the difference decides whether a
rollout test can see requests sent over http:// to a node that already switched to TLS.

The listener runs for real on loopback with a throwaway certificate."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.standin.mmstandin import web
from lab.standin.mmstandin.config import Config
from lab.standin.mmstandin.runtime import Context, Logger

GO_400 = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


def _self_signed(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = d / "node.crt", d / "node.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("standin")
    cert, key = _self_signed(d)
    cfg = Config(
        path=str(d / "config.json"),
        data={
            "ServiceSettings": {
                "ListenAddress": "127.0.0.1:0",
                "ConnectionSecurity": "TLS",
                "TLSCertFile": str(cert),
                "TLSKeyFile": str(key),
            }
        },
    )
    server = web.Web(Context(config=cfg, log=Logger("fatal")))
    server.start()
    assert server.httpd is not None
    try:
        yield server.httpd.server_address[1], cert
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
