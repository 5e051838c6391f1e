"""Packet-capture evidence: how many payload bytes crossed the wire in plaintext, per port.

Reads a pcap (tcpdump -w, Ethernet, IPv4/TCP), reassembles every TCP stream per direction, and
walks it as the protocol on that port would: for TLS-only ports every byte must belong to a TLS
record; for the databases only the protocol's own pre-TLS negotiation is allowed in the clear
(PostgreSQL's 8-byte SSLRequest and its 1-byte answer; MySQL's server greeting and the client's
32-byte SSLRequest), then TLS records only. Any other byte counts as plaintext. A stream that
never negotiates TLS therefore counts all of its payload; a stream already open when the
capture began must consist of TLS records from its first captured byte.

Pure (no capture here); `capture()` runs tcpdump for the lab.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TLS_CONTENT_TYPES = {20, 21, 22, 23}
FlowKey = tuple[str, int, str, int]


@dataclass
class PortReport:
    port: int
    streams: int = 0
    payload_bytes: int = 0
    plaintext_bytes: int = 0
    tls_streams: int = 0
    samples: list[bytes] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"port {self.port}: {self.streams} streams, {self.payload_bytes} payload bytes, "
            f"{self.plaintext_bytes} plaintext, {self.tls_streams} streams in TLS"
        )


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def read_pcap(path: Path) -> Iterator[tuple[FlowKey, int, int, bytes]]:
    """(flow, seq, tcp flags, payload) for every IPv4/TCP packet in a pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            if len(pkt) < 14:
                continue
            ethertype = struct.unpack(">H", pkt[12:14])[0]
            ip = pkt[14:]
            if ethertype == 0x8100 and len(pkt) >= 18:
                ethertype, ip = struct.unpack(">H", pkt[16:18])[0], pkt[18:]
            if ethertype != 0x0800:
                continue
        elif linktype == 113:  # Linux cooked (tcpdump -i any)
            if len(pkt) < 16 or struct.unpack(">H", pkt[14:16])[0] != 0x0800:
                continue
            ip = pkt[16:]
        else:
            continue
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield (_ip(ip[12:16]), sport, _ip(ip[16:20]), dport), seq, flags, bytes(tcp[doff:])


def reassemble(path: Path) -> dict[FlowKey, bytes]:
    """Each direction's byte stream, in sequence order, retransmissions dropped."""
    return _reassemble(path)[0]


def _reassemble(path: Path) -> tuple[dict[FlowKey, bytes], set[FlowKey]]:
    """Streams, and the directions whose start (SYN) is in the capture."""
    segs: dict[FlowKey, dict[int, bytes]] = defaultdict(dict)
    isn: dict[FlowKey, int] = {}
    for key, seq, flags, payload in read_pcap(path):
        if flags & 0x02:  # SYN
            isn[key] = (seq + 1) & 0xFFFFFFFF
        if payload:
            segs[key].setdefault(seq, payload)
    streams: dict[FlowKey, bytes] = {}
    for key, by_seq in segs.items():
        base = isn.get(key, min(by_seq))
        out = bytearray()
        expect = 0
        for seq in sorted(by_seq, key=lambda s: (s - base) & 0xFFFFFFFF):
            rel = (seq - base) & 0xFFFFFFFF
            chunk = by_seq[seq]
            if rel + len(chunk) <= expect:
                continue
            out += chunk[max(0, expect - rel) :]
            expect = rel + len(chunk)
        streams[key] = bytes(out)
    return streams, set(isn)


def tls_plaintext(stream: bytes, start: int = 0) -> int:
    """Bytes from `start` that are not TLS records (everything after the first non-record)."""
    i = start
    while i + 5 <= len(stream):
        ctype, major = stream[i], stream[i + 1]
        length = struct.unpack(">H", stream[i + 3 : i + 5])[0]
        if ctype not in TLS_CONTENT_TYPES or major != 3 or length > 18432:
            return len(stream) - i
        i += 5 + length
    return 0  # a record cut off by the end of the capture is still a record


def postgres_skip(client: bytes, server: bytes) -> tuple[int, int] | None:
    """Offsets where TLS starts, or None if the stream never negotiated TLS."""
    if len(client) >= 8 and client[:8] == struct.pack(">II", 8, 80877103) and server[:1] == b"S":
        return 8, 1
    return None


def mysql_skip(client: bytes, server: bytes) -> tuple[int, int] | None:
    if len(server) < 4 or len(client) < 4:
        return None
    greeting = 4 + int.from_bytes(server[:3], "little")
    ssl_req = 4 + int.from_bytes(client[:3], "little")
    if ssl_req != 4 + 32:
        return None  # a full HandshakeResponse (with the user name) instead of an SSLRequest
    caps = int.from_bytes(client[4:8], "little")
    if not caps & 0x800:  # CLIENT_SSL
        return None
    return ssl_req, greeting


SKIPS: dict[str, Callable[[bytes, bytes], tuple[int, int] | None]] = {
    "postgres": postgres_skip,
    "mysql": mysql_skip,
}


def analyze(path: Path, ports: dict[int, str]) -> dict[int, PortReport]:
    """ports: {port: 'tls'|'postgres'|'mysql'} -> a report per port."""
    streams, started = _reassemble(path)
    reports = {p: PortReport(p) for p in ports}
    seen: set[frozenset[FlowKey]] = set()
    for key in streams:
        src, sport, dst, dport = key
        port = dport if dport in ports else sport if sport in ports else None
        if port is None:
            continue
        client_key = key if dport == port else (dst, dport, src, sport)
        server_key = (client_key[2], client_key[3], client_key[0], client_key[1])
        pair = frozenset((client_key, server_key))
        if pair in seen:
            continue
        seen.add(pair)
        client, server = streams.get(client_key, b""), streams.get(server_key, b"")
        r = reports[port]
        r.streams += 1
        r.payload_bytes += len(client) + len(server)
        kind = ports[port]
        if kind == "tls" or client_key not in started:
            # a connection already open when the capture began is past its negotiation: every
            # byte must still be a TLS record (a plaintext one fails the walk and counts)
            starts: tuple[int, int] | None = (0, 0)
        else:
            starts = SKIPS[kind](client, server)
        if starts is None:
            plain = len(client) + len(server)
        else:
            plain = tls_plaintext(client, starts[0]) + tls_plaintext(server, starts[1])
            r.tls_streams += 1 if plain == 0 else 0
        r.plaintext_bytes += plain
        if plain and len(r.samples) < 3:
            r.samples.append((client or server)[:64])
    return reports


@contextmanager
def capture(interface: str, bpf: str, path: Path, settle: float = 1.0) -> Iterator[Path]:
    """Run tcpdump on `interface` (full packets) for the duration of the block."""
    # -Z root: tcpdump otherwise drops to its own user and cannot write into root-only dirs
    user = ["-Z", "root"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        # --immediate-mode: without it packets wait in the kernel ring for a block timeout and
        # are lost when tcpdump is stopped
        ["tcpdump", "--immediate-mode", *user, "-i", interface, "-s", "0", "-U", "-w", str(path), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # tcpdump says "listening on ..." once its filter is attached; packets before that are lost
    deadline = time.monotonic() + 15
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline().decode()
            if "listening on" in line:
                break
            if not line and proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited with {proc.returncode}")
    time.sleep(settle / 4)
    try:
        yield path
    finally:
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        if proc.poll() is not None and proc.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"tcpdump failed: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
