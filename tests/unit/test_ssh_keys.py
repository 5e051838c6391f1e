"""The connection's private key in its shortest form: the same key, in a PEM block that
golang.org/x/crypto's ssh.ParsePrivateKey reads (the replay's SSH runner reads the same ones)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from components.ssh_keys import compact_private_key
from lab.replay.runners import load_client_key

OPENSSH = serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()


def _public(key: object) -> bytes:
    pub = key.public_key()  # type: ignore[attr-defined]
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


@pytest.mark.parametrize(
    ("make", "block", "at_most"),
    [
        (ed25519.Ed25519PrivateKey.generate, "PRIVATE KEY", 119),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "EC PRIVATE KEY", 227),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "EC PRIVATE KEY", 288),
        (lambda: rsa.generate_private_key(65537, 2048), "RSA PRIVATE KEY", 1679),
    ],
)
def test_an_openssh_key_becomes_the_same_key_in_a_shorter_pem_block(make, block, at_most) -> None:  # type: ignore[no-untyped-def]
    key = make()
    text = key.private_bytes(*OPENSSH).decode()
    out = compact_private_key(text)
    assert out.startswith(f"-----BEGIN {block}-----\n") and out.endswith(f"-----END {block}-----\n")
    assert len(out) <= at_most < len(text)
    again = serialization.load_pem_private_key(out.encode(), password=None)
    assert _public(again) == _public(key)
    # the replay's SSH client (as pulumi-command's x/crypto) logs in with it: same public key
    assert load_client_key(out).get_base64() == load_client_key(text).get_base64()
    assert compact_private_key(out) == out  # already the shortest: unchanged


def test_a_key_it_cannot_shorten_or_read_comes_back_as_it_was() -> None:
    # DSA: x/crypto reads it, this program does not re-encode it
    dsa_key = dsa.generate_private_key(1024)
    text = dsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    assert compact_private_key(text) == text
    assert compact_private_key("not a key\n") == "not a key\n"
    # a PKCS#8 Ed25519 key is already the shortest
    short = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert compact_private_key(short) == short
