"""The stand-in's cluster gossip (``ClusterSettings``), shaped like Mattermost's memberlist use.

Owns, when ``ClusterSettings.Enable`` is true: registering the node in the database's
``ClusterDiscovery`` table (and refreshing ``LastPingAt``), finding the other nodes of the same
``ClusterName`` there, gossiping with them on ``GossipPort`` over BOTH TCP (push/pull of the
member list, one length-prefixed frame each way) and UDP (ping/ack, the reply going to the
packet's source), and reporting the members it sees in ``status()`` (``/standin/status`` ->
``subsystems.gossip``).

Gossip encryption (``EnableGossipEncryption``, or ``EnableExperimentalGossipEncryption`` before
v10.11): every frame is AES-GCM sealed with the key in the ``Systems`` row
``ClusterEncryptionKey`` (created by the first node that needs it, as Mattermost does). Like
memberlist, a node with encryption drops plain frames and a node without it cannot read sealed
ones, so nodes in different modes never see each other. Plain frames carry the marker
``PLAIN_MARKER`` so a packet capture can prove there are none.

Not memberlist: no suspicion protocol, no indirect probes; a member counts as alive while its
last successful TCP or UDP exchange is younger than ``ALIVE_SECONDS``.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import secrets
import socket
import struct
import threading
import time
from typing import Any

from .database import SYSTEMS_TABLE, create_tables
from .runtime import Context, StartupError

PLAIN_MARKER = "mmstandin-gossip-plain"
AAD = b"mmstandin-gossip-v1"
INTERVAL = float(os.environ.get("MMSTANDIN_GOSSIP_INTERVAL", "1"))
ALIVE_SECONDS = float(os.environ.get("MMSTANDIN_GOSSIP_ALIVE_SECONDS", "10"))
DISCOVERY_TTL_MS = 60_000
MAX_FRAME = 64 * 1024
KEY_ROW = "ClusterEncryptionKey"

# memberlist's own log lines for the two mixed-mode failures
ERR_NOT_ENCRYPTED = "memberlist: Encryption is configured but remote state is not encrypted"
ERR_ENCRYPTED = "memberlist: Remote state is encrypted and encryption is not configured"


class InvalidFrame(Exception):
    """A frame this node cannot accept (wrong mode, wrong key, garbage)."""


# ---------------------------------------------------------------- AES-GCM


class OpenSslAesGcm:
    """AES-GCM through libcrypto (the lab hosts have no python3-cryptography)."""

    _SET_IVLEN, _GET_TAG, _SET_TAG = 0x9, 0x10, 0x11

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("AES key must be 16, 24 or 32 bytes")
        lib = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
        self.lib, self.key = lib, key
        for fn in ("EVP_CIPHER_CTX_new", "EVP_aes_128_gcm", "EVP_aes_192_gcm", "EVP_aes_256_gcm"):
            getattr(lib, fn).restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        for fn in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
            getattr(lib, fn).argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.c_char_p,
            ]
        for fn in ("EVP_EncryptUpdate", "EVP_DecryptUpdate"):
            getattr(lib, fn).argtypes = [
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.c_int),
                ctypes.c_char_p,
                ctypes.c_int,
            ]
        for fn in ("EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        lib.EVP_CIPHER_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        self.cipher = {16: lib.EVP_aes_128_gcm, 24: lib.EVP_aes_192_gcm, 32: lib.EVP_aes_256_gcm}[len(key)]()

    def _run(self, encrypt: bool, nonce: bytes, data: bytes, aad: bytes, tag: bytes = b"") -> bytes:
        lib = self.lib
        init, update, final = (
            (lib.EVP_EncryptInit_ex, lib.EVP_EncryptUpdate, lib.EVP_EncryptFinal_ex)
            if encrypt
            else (lib.EVP_DecryptInit_ex, lib.EVP_DecryptUpdate, lib.EVP_DecryptFinal_ex)
        )
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new")
        try:
            n = ctypes.c_int(0)
            out = ctypes.create_string_buffer(len(data) + 16)
            ok = init(ctx, self.cipher, None, None, None) == 1
            ok = ok and lib.EVP_CIPHER_CTX_ctrl(ctx, self._SET_IVLEN, len(nonce), None) == 1
            ok = ok and init(ctx, None, None, self.key, nonce) == 1
            ok = ok and update(ctx, None, ctypes.byref(n), aad, len(aad)) == 1
            ok = ok and update(ctx, out, ctypes.byref(n), data, len(data)) == 1
            if not ok:
                raise InvalidFrame("AES-GCM setup failed")
            size = n.value
            if not encrypt:
                tag_buf = ctypes.create_string_buffer(tag, 16)
                lib.EVP_CIPHER_CTX_ctrl(ctx, self._SET_TAG, 16, tag_buf)
            rest = ctypes.create_string_buffer(16)
            if final(ctx, rest, ctypes.byref(n)) != 1:
                raise InvalidFrame("AES-GCM authentication failed (wrong key or tampered frame)")
            result = out.raw[:size] + rest.raw[: n.value]
            if encrypt:
                tag_buf = ctypes.create_string_buffer(16)
                lib.EVP_CIPHER_CTX_ctrl(ctx, self._GET_TAG, 16, tag_buf)
                result += tag_buf.raw
            return result
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._run(True, nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < 16:
            raise InvalidFrame("sealed frame too short")
        return self._run(False, nonce, data[:-16], aad, data[-16:])


def aes_gcm(key: bytes) -> Any:
    """An object with encrypt/decrypt(nonce, data, aad): `cryptography` when present, else libcrypto."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        return OpenSslAesGcm(key)
    return AESGCM(key)


# ---------------------------------------------------------------- frames


class Codec:
    """Seals or plainly encodes gossip messages; refuses frames of the other mode."""

    def __init__(self, key: bytes | None) -> None:
        self.aead = aes_gcm(key) if key else None

    def encode(self, message: dict[str, Any]) -> bytes:
        body = json.dumps(message, separators=(",", ":")).encode()
        if self.aead is None:
            return b"\x00" + body
        nonce = secrets.token_bytes(12)
        return b"\x01" + nonce + self.aead.encrypt(nonce, body, AAD)

    def decode(self, frame: bytes) -> dict[str, Any]:
        if not frame:
            raise InvalidFrame("empty frame")
        kind, rest = frame[0], frame[1:]
        if kind == 0:
            if self.aead is not None:
                raise InvalidFrame(ERR_NOT_ENCRYPTED)
            body = rest
        elif kind == 1:
            if self.aead is None:
                raise InvalidFrame(ERR_ENCRYPTED)
            try:
                body = self.aead.decrypt(rest[:12], rest[12:], AAD)
            except InvalidFrame:
                raise
            except Exception as exc:  # noqa: BLE001 - cryptography's InvalidTag and friends
                raise InvalidFrame(f"AES-GCM authentication failed: {type(exc).__name__}") from exc
        else:
            raise InvalidFrame(f"unknown frame type {kind}")
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise InvalidFrame("frame is not JSON") from exc
        if not isinstance(message, dict):
            raise InvalidFrame("frame is not a JSON object")
        return message


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise InvalidFrame("connection closed mid-frame")
        buf += chunk
    return buf


def send_frame(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(struct.pack(">I", len(frame)) + frame)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n > MAX_FRAME:
        raise InvalidFrame(f"frame of {n} bytes is too large")
    return _recv_exact(sock, n)


# ---------------------------------------------------------------- the subsystem


def encryption_enabled(settings: dict[str, Any]) -> bool:
    return bool(settings.get("EnableGossipEncryption")) or bool(settings.get("EnableExperimentalGossipEncryption"))


def discovery_id(cluster: str, hostname: str) -> str:
    """26 characters like Mattermost ids, stable per (cluster, node)."""
    return hashlib.sha256(f"{cluster}\0{hostname}".encode()).hexdigest()[:26]


class Gossip:
    """The cluster subsystem (inert unless ClusterSettings.Enable)."""

    name = "gossip"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.settings = ctx.config.section("ClusterSettings")
        self.enabled = bool(self.settings.get("Enable"))
        self.encrypted = encryption_enabled(self.settings)
        self.cluster = str(self.settings.get("ClusterName") or "")
        self.port = int(self.settings.get("GossipPort") or 8074)
        self.bind = str(self.settings.get("BindAddress") or "0.0.0.0")
        self.hostname = str(self.settings.get("OverrideHostname") or socket.gethostname())
        self.advertise = str(self.settings.get("AdvertiseAddress") or "")
        self.codec: Codec | None = None
        self.members: dict[str, dict[str, Any]] = {}
        self.rejected: dict[str, int] = {}
        self.last_error: str | None = None
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.tcp: socket.socket | None = None
        self.udp: socket.socket | None = None
        if self.enabled and not self.advertise:
            self.advertise = self._guess_address()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.enabled:
            return
        db = self.ctx.subsystems.get("database")
        if db is None:
            raise StartupError("cluster gossip needs the database subsystem")
        self.db = db
        try:
            self._ensure_tables()
            key = self._encryption_key() if self.encrypted else None
        except StartupError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error stops the start, as in Mattermost
            raise StartupError(f"cluster: database setup failed: {type(exc).__name__}: {exc}") from exc
        self.codec = Codec(key)
        try:
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.bind, self.port))
            self.tcp.listen(64)
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((self.bind, self.port))
        except OSError as exc:
            raise StartupError(f"cluster: cannot listen on {self.bind}:{self.port}: {exc}") from exc
        self._register()
        for target, name in ((self._serve_tcp, "gossip-tcp"), (self._serve_udp, "gossip-udp"), (self._loop, "gossip")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)
        self.log.info(
            "Cluster gossip started",
            cluster=self.cluster,
            bind=f"{self.bind}:{self.port}",
            advertise=self.advertise,
            encryption=self.encrypted,
        )

    def stop(self) -> None:
        if not self.enabled:
            return
        for s in (self.tcp, self.udp):
            if s is not None:
                # shutdown wakes the threads blocked in accept/recvfrom; close alone would not,
                # and the port would stay taken
                for step in (lambda s=s: s.shutdown(socket.SHUT_RDWR), s.close):
                    try:
                        step()
                    except OSError:
                        pass
        for t in self.threads:
            t.join(timeout=5)
        try:
            self.db.query("DELETE FROM ClusterDiscovery WHERE Id = %s", (self._id(),))
        except Exception:  # noqa: BLE001 - the node is going away either way
            pass

    def status(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            members = {
                name: {
                    "address": m["address"],
                    "alive": now - max(m.get("tcp", 0), m.get("udp", 0)) < ALIVE_SECONDS,
                    "tcpAgeSeconds": round(now - m["tcp"], 1) if m.get("tcp") else None,
                    "udpAgeSeconds": round(now - m["udp"], 1) if m.get("udp") else None,
                }
                for name, m in sorted(self.members.items())
            }
            rejected = dict(self.rejected)
        return {
            "enabled": self.enabled,
            "clusterName": self.cluster,
            "hostname": self.hostname,
            "advertise": f"{self.advertise}:{self.port}" if self.enabled else None,
            "encryption": self.encrypted,
            "members": members,
            "alive": sorted(n for n, m in members.items() if m["alive"]),
            "rejected": rejected,
            "lastError": self.last_error,
        }

    # ------------------------------------------------------------ database

    def _driver(self) -> str:
        return str(self.ctx.config.get("SqlSettings", "DriverName"))

    def _ensure_tables(self) -> None:
        # nodes restart together after a full-cluster stop: create_tables retries the collision
        create_tables(
            self.db.query,
            "CREATE TABLE IF NOT EXISTS ClusterDiscovery (Id VARCHAR(26) PRIMARY KEY, Type VARCHAR(64), "
            "ClusterName VARCHAR(64), Hostname VARCHAR(512), GossipPort INTEGER, Port INTEGER, "
            "CreateAt BIGINT, LastPingAt BIGINT)",
            SYSTEMS_TABLE,
        )

    def _encryption_key(self) -> bytes:
        """The cluster's key: the first node that needs it creates it; everyone reads the winner."""
        fresh = base64.b64encode(secrets.token_bytes(32)).decode()
        if self._driver() == "mysql":
            self.db.query("INSERT IGNORE INTO Systems (Name, Value) VALUES (%s, %s)", (KEY_ROW, fresh))
        else:
            self.db.query(
                "INSERT INTO Systems (Name, Value) VALUES (%s, %s) ON CONFLICT (Name) DO NOTHING", (KEY_ROW, fresh)
            )
        rows = self.db.query("SELECT Value FROM Systems WHERE Name = %s", (KEY_ROW,))
        if not rows:
            raise StartupError("cluster: no ClusterEncryptionKey in Systems")
        key = base64.b64decode(rows[0][0])
        if len(key) not in (16, 24, 32):
            raise StartupError("cluster: ClusterEncryptionKey is not a 16, 24 or 32 byte key")
        return key

    def _id(self) -> str:
        return discovery_id(self.cluster, self.hostname)

    def _register(self) -> None:
        now = int(time.time() * 1000)
        self.db.query("DELETE FROM ClusterDiscovery WHERE Id = %s", (self._id(),))
        self.db.query(
            "INSERT INTO ClusterDiscovery (Id, Type, ClusterName, Hostname, GossipPort, Port, CreateAt, LastPingAt) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (self._id(), "mattermost_cluster", self.cluster, self.advertise, self.port, 8065, now, now),
        )

    def _peers(self) -> list[tuple[str, int]]:
        now = int(time.time() * 1000)
        self.db.query("UPDATE ClusterDiscovery SET LastPingAt = %s WHERE Id = %s", (now, self._id()))
        rows = self.db.query(
            "SELECT Hostname, GossipPort FROM ClusterDiscovery WHERE ClusterName = %s AND Type = %s AND LastPingAt > %s AND Id <> %s",
            (self.cluster, "mattermost_cluster", now - DISCOVERY_TTL_MS, self._id()),
        )
        return [(str(h), int(p)) for h, p in rows]

    # ------------------------------------------------------------ gossip

    def _guess_address(self) -> str:
        try:
            return socket.gethostbyname(self.hostname)
        except OSError:
            return "127.0.0.1"

    def _hello(self, kind: str) -> dict[str, Any]:
        return {
            "type": kind,
            "marker": PLAIN_MARKER,
            "cluster": self.cluster,
            "name": self.hostname,
            "address": self.advertise,
            "port": self.port,
            "ts": time.time(),
        }

    def _seen(self, message: dict[str, Any], via: str) -> None:
        if message.get("cluster") != self.cluster or message.get("name") == self.hostname:
            return
        name = str(message.get("name"))
        with self.lock:
            m = self.members.setdefault(name, {"address": message.get("address")})
            m["address"] = message.get("address")
            m[via] = time.time()

    def _reject(self, exc: Exception, source: str) -> None:
        text = str(exc)
        with self.lock:
            self.rejected[text] = self.rejected.get(text, 0) + 1
            first = self.rejected[text] == 1
            self.last_error = f"{source}: {text}"
        if first:
            self.log.error("Failed to handle gossip", error=text, source=source)

    def _serve_tcp(self) -> None:
        assert self.tcp is not None and self.codec is not None
        while not self.ctx.stopping.is_set():
            try:
                conn, addr = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._handle_tcp, args=(conn, addr), daemon=True).start()

    def _handle_tcp(self, conn: socket.socket, addr: Any) -> None:
        assert self.codec is not None
        with conn:
            conn.settimeout(5)
            try:
                message = self.codec.decode(recv_frame(conn))
                self._seen(message, "tcp")
                send_frame(conn, self.codec.encode(self._hello("push-pull-reply")))
            except (InvalidFrame, OSError, struct.error) as exc:
                self._reject(exc if isinstance(exc, InvalidFrame) else InvalidFrame(str(exc)), f"tcp {addr[0]}")

    def _serve_udp(self) -> None:
        assert self.udp is not None and self.codec is not None
        while not self.ctx.stopping.is_set():
            try:
                data, addr = self.udp.recvfrom(MAX_FRAME)
            except OSError:
                return
            if addr is None:  # the socket was shut down (stop): no datagram, no sender
                return
            try:
                message = self.codec.decode(data)
            except InvalidFrame as exc:
                self._reject(exc, f"udp {addr[0]}")
                continue
            self._seen(message, "udp")
            if message.get("type") == "ping":
                try:
                    self.udp.sendto(self.codec.encode(self._hello("ack")), addr)
                except OSError as exc:
                    self._reject(InvalidFrame(str(exc)), f"udp {addr[0]}")

    def _push_pull(self, host: str, port: int) -> None:
        assert self.codec is not None
        # a plain connect to the peer's advertised address: on a tunnelled node the DNAT in
        # nat OUTPUT sends it into the SSH tunnel, exactly as it does for Mattermost
        with socket.create_connection((host, port), timeout=3) as s:
            s.settimeout(5)
            send_frame(s, self.codec.encode(self._hello("push-pull")))
            self._seen(self.codec.decode(recv_frame(s)), "tcp")

    def _loop(self) -> None:
        assert self.udp is not None and self.codec is not None
        while not self.ctx.stopping.wait(INTERVAL):
            try:
                peers = self._peers()
            except Exception as exc:  # noqa: BLE001 - the database may be briefly away
                self.last_error = f"discovery: {type(exc).__name__}: {exc}"
                continue
            for host, port in peers:
                try:
                    self.udp.sendto(self.codec.encode(self._hello("ping")), (host, port))
                except OSError as exc:
                    self._reject(InvalidFrame(str(exc)), f"udp {host}")
                try:
                    self._push_pull(host, port)
                except (InvalidFrame, OSError, struct.error) as exc:
                    self._reject(exc if isinstance(exc, InvalidFrame) else InvalidFrame(str(exc)), f"tcp {host}")


def create(ctx: Context) -> Gossip:
    """Subsystem factory used by server.SUBSYSTEMS."""
    return Gossip(ctx)
