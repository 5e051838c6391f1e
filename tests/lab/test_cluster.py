"""Cluster transport: the stand-in's gossip on this machine, then the real thing in the lab.

The first part (no marker) runs the stand-in's gossip subsystem in-process on loopback addresses
with an SQLite stand-in for the database: members are found through ClusterDiscovery, gossip
flows over TCP and UDP, encrypted nodes share the Systems key, and nodes in different modes never
see each other. The libcrypto AES-GCM the lab hosts use is checked against `cryptography`.

The second part (marker `lab`) applies the program with the cluster enabled to the lab hosts
through the replay engine and checks it from the hosts and the bridge.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.standin.mmstandin import gossip
from lab.standin.mmstandin.config import DEFAULTS, Config
from lab.standin.mmstandin.runtime import Context, Logger

# ---------------------------------------------------------------- the stand-in's gossip, in-process


class SqliteDatabase:
    """What gossip needs from the database subsystem (`query` with %s placeholders)."""

    name = "database"

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self.conn.execute(sql.replace("%s", "?"), params)
            return cur.fetchall()


def make_node(db: SqliteDatabase, address: str, encrypted: bool, name: str) -> tuple[gossip.Gossip, Context]:
    data = {
        "SqlSettings": {"DriverName": "postgres"},
        "ClusterSettings": {
            "Enable": True,
            "ClusterName": "labcluster",
            "BindAddress": address,
            "AdvertiseAddress": address,
            "OverrideHostname": name,
            "GossipPort": 28974,
            "EnableGossipEncryption": encrypted,
        },
    }
    ctx = Context(config=Config(path="-", data=data), log=Logger("fatal"))
    ctx.subsystems["database"] = db  # type: ignore[assignment]
    node = gossip.create(ctx)
    node.start()
    return node, ctx


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(gossip, "INTERVAL", 0.1)
    started: list[tuple[gossip.Gossip, Context]] = []
    db = SqliteDatabase()

    def start(address: str, encrypted: bool, name: str) -> gossip.Gossip:
        node, ctx = make_node(db, address, encrypted, name)
        started.append((node, ctx))
        return node

    start.db = db  # type: ignore[attr-defined]
    yield start
    for node, ctx in started:
        ctx.stopping.set()
        node.stop()


def wait_for(predicate: Any, what: str, limit: float = 20) -> None:
    # a bound on waiting, not a timing assertion: the condition either holds or the test fails
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def both_ways(node: gossip.Gossip, peer: str) -> bool:
    m = node.status()["members"].get(peer)
    return bool(m and m["tcpAgeSeconds"] is not None and m["udpAgeSeconds"] is not None and m["alive"])


@pytest.mark.parametrize("encrypted", [False, True])
def test_nodes_find_each_other_and_gossip_over_tcp_and_udp(cluster: Any, encrypted: bool) -> None:
    nodes = {n: cluster(f"127.0.0.{i + 2}", encrypted, n) for i, n in enumerate(("mm1", "mm2", "mm3"))}
    for name, node in nodes.items():
        for peer in nodes:
            if peer != name:
                wait_for(lambda node=node, peer=peer: both_ways(node, peer), f"{name} sees {peer} over TCP and UDP")
        assert node.status()["encryption"] is encrypted and not node.status()["rejected"]
    rows = cluster.db.query("SELECT Hostname FROM ClusterDiscovery WHERE ClusterName = %s", ("labcluster",))
    assert sorted(r[0] for r in rows) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    keys = cluster.db.query("SELECT Value FROM Systems WHERE Name = %s", ("ClusterEncryptionKey",))
    assert len(keys) == (1 if encrypted else 0)


def test_encrypted_and_plain_nodes_never_see_each_other(cluster: Any) -> None:
    sealed = cluster("127.0.0.2", True, "mm1")
    plain = cluster("127.0.0.3", False, "mm2")
    wait_for(lambda: gossip.ERR_ENCRYPTED in plain.status()["rejected"], "the plain node rejects sealed gossip")
    wait_for(lambda: gossip.ERR_NOT_ENCRYPTED in sealed.status()["rejected"], "the sealed node rejects plain gossip")
    assert not sealed.status()["alive"] and not plain.status()["alive"]


def test_a_node_with_another_key_is_rejected(cluster: Any) -> None:
    first = cluster("127.0.0.2", True, "mm1")
    # the key row changes under a running node: the next node uses the new key
    cluster.db.query(
        "UPDATE Systems SET Value = %s WHERE Name = %s",
        (gossip.base64.b64encode(secrets.token_bytes(32)).decode(), "ClusterEncryptionKey"),
    )
    second = cluster("127.0.0.3", True, "mm2")
    wait_for(lambda: any("authentication failed" in e for e in first.status()["rejected"]), "wrong key rejected")
    assert not second.status()["alive"]


def test_sealed_frames_carry_no_plaintext_and_plain_ones_do() -> None:
    msg = {"type": "ping", "marker": gossip.PLAIN_MARKER, "cluster": "labcluster"}
    sealed = gossip.Codec(secrets.token_bytes(32)).encode(msg)
    plain = gossip.Codec(None).encode(msg)
    assert gossip.PLAIN_MARKER.encode() in plain and b"labcluster" in plain
    assert gossip.PLAIN_MARKER.encode() not in sealed and b"labcluster" not in sealed


@pytest.mark.parametrize("size", [16, 24, 32])
def test_libcrypto_aes_gcm_matches_cryptography(size: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce, aad = secrets.token_bytes(size), secrets.token_bytes(12), b"aad"
    ours, ref = gossip._OpenSslAesGcm(key), AESGCM(key)
    for data in (b"", b"x", secrets.token_bytes(1000)):
        sealed = ours.encrypt(nonce, data, aad)
        assert sealed == ref.encrypt(nonce, data, aad)
        assert ours.decrypt(nonce, sealed, aad) == data
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        with pytest.raises(gossip.InvalidFrame):
            ours.decrypt(nonce, tampered, aad)


def test_disabled_cluster_is_inert() -> None:
    ctx = Context(config=Config(path="-", data={}), log=Logger("fatal"))
    node = gossip.create(ctx)
    node.start()
    node.stop()
    assert node.status()["enabled"] is False and DEFAULTS["ClusterSettings"]["Enable"] is False


# ---------------------------------------------------------------- the lab (real hosts)

_ = (json, re)  # used by the lab part below
