"""SSH client keys as the program hands them to pulumi-command: pure, no Pulumi import."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def load_private_key(text: str) -> object:
    """The unencrypted private key in `text` (OpenSSH or PEM: PKCS#1, SEC1, PKCS#8); raises
    ValueError or TypeError (cryptography's) when it does not parse."""
    data = text.strip().encode()
    if b"OPENSSH PRIVATE KEY" in data:
        return serialization.load_ssh_private_key(data, password=None)
    return serialization.load_pem_private_key(data, password=None)


@functools.lru_cache(maxsize=4)
def compact_private_key(text: str) -> str:
    """The same key in the shortest PEM form the provider reads, else `text` as it is.

    Every command's state holds its connection twice (inputs, and outputs that repeat them),
    sealed whole: at 100 nodes that is about 2,000 copies of the key. The OpenSSH container
    carries the public key twice, a comment, check words and padding: an Ed25519 key is 119
    bytes as PKCS#8 and about 400 in it; ECDSA 227 as SEC1 against about 500. pulumi-command
    v1.2.1 parses the key with golang.org/x/crypto v0.48.0 `ssh.ParsePrivateKey`, whose
    `ParseRawPrivateKey` (ssh/keys.go) reads "OPENSSH PRIVATE KEY", "PRIVATE KEY" (PKCS#8, an
    `ed25519.PrivateKey` among them), "EC PRIVATE KEY" (SEC1) and "RSA PRIVATE KEY" (PKCS#1), and
    `NewSignerFromKey` signs with any of them alike: the same key, the same signatures. A key
    the program cannot re-encode (DSA) is given as it came; the config schema already refused
    one that does not parse. Pure, no I/O; the value stays a secret at every caller."""
    try:
        key = load_private_key(text)
    except (ValueError, TypeError):
        return text
    if isinstance(key, ed25519.Ed25519PrivateKey):
        form = serialization.PrivateFormat.PKCS8
    elif isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        form = serialization.PrivateFormat.TraditionalOpenSSL  # SEC1 / PKCS#1
    else:
        return text
    compact = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode()
    return compact if len(compact) < len(text) else text
