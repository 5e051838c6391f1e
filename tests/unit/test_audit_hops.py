"""tools/audit.py's judging of the browser hop and of the UDP gossip hop (pure), and its gossip
capture script run for real with tcpdump on loopback."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from lab.standin.mmstandin import gossip
from tests.helpers.certs import make_ca, make_leaf
from tests.helpers.scripts import run_script
from tools import audit


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key, cert = make_ca(cn, days=30)
    return cert, key


def _leaf(issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> x509.Certificate:
    cert_pem, _ = make_leaf((issuer[1], issuer[0]), ["mattermost.example.com"], days=30)
    return x509.load_pem_x509_certificate(cert_pem.encode())


STACK_CA, STACK_KEY = _ca("stack CA")
PUBLIC_CA, PUBLIC_KEY = _ca("public CA (Let's Encrypt stand-in)")
OURS = _leaf((STACK_CA, STACK_KEY))
ADMINS = _leaf((PUBLIC_CA, PUBLIC_KEY))
# same subject and issuer name as the stack CA, another key: not issued by it
IMPOSTOR = _leaf(_ca("stack CA"))


@pytest.mark.parametrize(
    ("source", "served", "provided", "ok", "trust"),
    [
        ("keep", [ADMINS, PUBLIC_CA], None, True, audit.PUBLIC_TRUST),  # the bug: was verified with the stack CA
        (None, [ADMINS], None, True, audit.PUBLIC_TRUST),  # unset on an HTTPS site: keep
        (None, [OURS], None, True, "stack CA"),  # unset on a plain site: ca
        ("ca", [OURS], None, True, "stack CA"),
        ("ca", [ADMINS], None, False, audit.PUBLIC_TRUST),
        ("ca", [IMPOSTOR], None, False, audit.PUBLIC_TRUST),  # the name matches, the signature does not
        ("provided", [ADMINS], ADMINS, True, audit.PUBLIC_TRUST),
        ("provided", [OURS], ADMINS, False, "stack CA"),
        ("keep", [], None, False, audit.PUBLIC_TRUST),
    ],
)
def test_the_browser_hop_is_verified_with_the_trust_its_certificate_needs(
    source: str | None, served: list[x509.Certificate], provided: x509.Certificate | None, ok: bool, trust: str
) -> None:
    row, got = audit.judge_browser_cert(source, served, [STACK_CA], provided)
    assert (row.ok, got) == (ok, trust), row.detail
    if not ok and served:
        assert "mattermost.example.com" in row.detail


def test_during_a_ca_rotation_a_leaf_of_either_ca_of_the_bundle_is_the_stacks() -> None:
    """caCertPem holds the old and the new CA while servers switch (components/pki.py): NGINX may
    serve a leaf of the new one; was judged 'not the stack CA' when only the first was read."""
    new_ca, new_key = _ca("stack CA generation 2")
    leaf = _leaf((new_ca, new_key))
    row, trust = audit.judge_browser_cert("ca", [leaf], [STACK_CA, new_ca], None)
    assert (row.ok, trust) == (True, "stack CA"), row.detail
    row, trust = audit.judge_browser_cert("ca", [leaf], [STACK_CA], None)
    assert not row.ok


def test_every_ca_of_the_bundle_gets_its_expiry_row() -> None:
    now = dt.datetime.now(dt.UTC)
    rows = audit.ca_expiry_checks([STACK_CA, PUBLIC_CA], now)
    assert len(rows) == 2 and all(r.ok == (int(r.detail.split()[0]) > audit.WARN_DAYS) for r in rows)
    assert "stack CA" in rows[0].check and "public CA" in rows[1].check
    rows = audit.ca_expiry_checks([STACK_CA], now + dt.timedelta(days=29))
    assert [(r.check, r.ok) for r in rows] == [("CA days to expiry", False)]


# ---------------------------------------------------------------- UDP gossip


def _pcap(payloads: list[bytes], port: int = 8074, linktype: int = 113) -> bytes:
    """A little-endian pcap of IPv4/UDP datagrams 10.0.0.1:40000 -> 10.0.0.2:port."""
    import struct

    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for p in payloads:
        udp = struct.pack(">HHHH", 40000, port, 8 + len(p), 0) + p
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        link = b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00" if linktype == 113 else b"\x00" * 12 + b"\x08\x00"
        frame = link + ip
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    return out


SEALED = gossip.Codec(os.urandom(32))
PLAIN = gossip.Codec(None)
MSG = {"type": "ping", "marker": gossip.PLAIN_MARKER, "cluster": "labcluster", "node": "mm1"}
# memberlist's plaintext ping as msgpack (fixmap of 3: SeqNo, Node, SourceNode)
MEMBERLIST_PING = b"\x00\x83\xa5SeqNo\x07\xa4Node\xa3mm2\xaaSourceNode\xa3mm1"


def _probe(payloads: list[bytes], linktype: int = 113) -> str:
    import base64

    return "pcap=" + base64.b64encode(_pcap(payloads, linktype=linktype)).decode() + "\n"


@pytest.mark.parametrize("linktype", [1, 113])
def test_sealed_gossip_passes_and_any_plaintext_datagram_fails(linktype: int) -> None:
    sealed = [SEALED.encode(MSG) for _ in range(200)]
    row = audit.judge_gossip_wire("mm1", _probe(sealed, linktype), 8074, 3)
    assert row.ok and "200 datagrams" in row.detail and "0 in plaintext" in row.detail, row.detail
    for plain in (PLAIN.encode(MSG), MEMBERLIST_PING):
        row = audit.judge_gossip_wire("mm1", _probe([*sealed[:20], plain]), 8074, 3)
        assert not row.ok and "1 in plaintext" in row.detail, row.detail


def test_no_datagram_or_no_capture_proves_nothing() -> None:
    assert not audit.judge_gossip_wire("mm1", _probe([]), 8074, 3).ok
    row = audit.judge_gossip_wire("mm1", "tcpdump is not installed on this node\n", 8074, 3)
    assert not row.ok and "tcpdump is not installed" in row.detail
    # another port's datagrams are not gossip
    import base64

    other = "pcap=" + base64.b64encode(_pcap([PLAIN.encode(MSG)], port=53)).decode()
    assert "no UDP gossip" in audit.judge_gossip_wire("mm1", other, 8074, 3).detail


def test_the_capture_script_records_real_datagrams_with_tcpdump() -> None:
    """GOSSIP_CAPTURE as the audit runs it (tcpdump on every interface), on loopback."""
    assert os.geteuid() == 0, "tcpdump on 'any' needs root (the unit suite runs as root, like CI)"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        stop = threading.Event()

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                while not stop.is_set():
                    tx.sendto(SEALED.encode(MSG), ("127.0.0.1", port))
                    time.sleep(0.05)
                tx.sendto(PLAIN.encode(MSG), ("127.0.0.1", port))

        sender = threading.Thread(target=send)
        sender.start()
        try:
            script = f"seconds=3\ncount=20\nport={port}\n" + audit.GOSSIP_CAPTURE
            r = run_script("set -eu\n" + script, timeout=30)
        finally:
            stop.set()
            sender.join()
    row = audit.judge_gossip_wire("local", r.stdout, port, 3)
    assert row.ok and "20 datagrams" in row.detail, (row.detail, r.stderr)
