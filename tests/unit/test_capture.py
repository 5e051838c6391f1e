"""The plaintext counter, on real captures of real TLS and plain traffic on loopback."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from tools.capture import analyze, capture, mysql_skip, postgres_skip, tls_plaintext


def test_tls_record_walk() -> None:
    record = bytes([22, 3, 3]) + struct.pack(">H", 4) + b"abcd"
    assert tls_plaintext(record * 3) == 0
    assert tls_plaintext(record + b"GET / HTTP/1.1\r\n") == 16
    assert tls_plaintext(b"GET / HTTP/1.1\r\n") == 16
    assert tls_plaintext(record[:7]) == 0, "a record cut off by the capture end is not plaintext"


def test_postgres_negotiation() -> None:
    ssl_request = struct.pack(">II", 8, 80877103)
    assert postgres_skip(ssl_request + b"\x16\x03", b"S\x16") == (8, 1)
    startup = struct.pack(">II", 30, 196608) + b"user\0mmuser\0\0"
    assert postgres_skip(startup, b"R") is None
    assert postgres_skip(ssl_request, b"N") is None, "server refused TLS: the rest is plaintext"


def test_mysql_negotiation() -> None:
    greeting = (10).to_bytes(3, "little") + b"\0" + b"x" * 10
    ssl_req = (32).to_bytes(3, "little") + b"\1" + (0x800 | 0x200).to_bytes(4, "little") + b"\0" * 28
    assert mysql_skip(ssl_req, greeting) == (36, 14)
    login = (60).to_bytes(3, "little") + b"\1" + (0x200).to_bytes(4, "little") + b"\0" * 28 + b"mmuser\0" + b"\0" * 25
    assert mysql_skip(login, greeting) is None


@pytest.fixture
def tcpdump() -> str:
    path = shutil.which("tcpdump")
    if path is None or subprocess.run([path, "--version"], capture_output=True).returncode != 0:
        pytest.skip("tcpdump not installed")
    return path


def _serve_once(sock: socket.socket, wrap: ssl.SSLContext | None) -> None:
    conn, _ = sock.accept()
    if wrap:
        conn = wrap.wrap_socket(conn, server_side=True)
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    conn.close()


def test_real_capture_counts_plaintext_only_without_tls(tmp_path: Path, tcpdump: str) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1"],
        check=True, capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    results = {}
    for name, use_tls in (("tls", True), ("plain", False)):
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        pcap = tmp_path / f"{name}.pcap"
        with capture("lo", f"tcp port {port}", pcap, settle=0.5):
            t = threading.Thread(target=_serve_once, args=(lsock, server_ctx if use_tls else None))
            t.start()
            c = socket.create_connection(("127.0.0.1", port))
            if use_tls:
                c = client_ctx.wrap_socket(c, server_hostname="localhost")
            c.sendall(b"GET /api/v4/system/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(1024)
            c.close()
            t.join(5)
        lsock.close()
        results[name] = analyze(pcap, {port: "tls"})[port]
    assert results["tls"].streams == 1 and results["tls"].payload_bytes > 500
    assert results["tls"].plaintext_bytes == 0
    assert results["plain"].streams == 1
    assert results["plain"].plaintext_bytes == results["plain"].payload_bytes > 50


def test_stream_open_before_the_capture_is_walked_as_tls(tmp_path: Path) -> None:
    """A DB connection opened before tcpdump started has no SSLRequest in the capture."""
    from tools.capture import analyze

    record = bytes([23, 3, 3]) + struct.pack(">H", 3) + b"xyz"
    plain = b"Q\x00\x00\x00\x0dselect 1;\x00"
    pcap = tmp_path / "mid.pcap"
    pcap.write_bytes(_pcap([(("10.0.0.1", 40000, "10.0.0.2", 5432), 1000, record), (("10.0.0.1", 40001, "10.0.0.2", 5432), 5000, plain)]))
    r = analyze(pcap, {5432: "postgres"})[5432]
    assert r.streams == 2 and r.plaintext_bytes == len(plain) and r.tls_streams == 1


def _pcap(packets: list[tuple[tuple[str, int, str, int], int, bytes]]) -> bytes:
    """A minimal Ethernet/IPv4/TCP pcap with PSH|ACK data packets (no SYN captured)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for (src, sport, dst, dport), seq, payload in packets:
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                         bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + tcp
        frame = b"\0" * 12 + b"\x08\x00" + ip
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    return out
