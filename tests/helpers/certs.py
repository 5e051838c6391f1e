"""Throwaway keys and certificates for tests (cryptography only, nothing written to disk).

EC P-256 everywhere (what the stack's CA issues); validity starts an hour back so a clock a little
behind still accepts it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """PKCS#8 PEM of `key` (a new P-256 key without one)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(sans)


def make_ca(cn: str = "test CA", days: int = 1) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca: CA, names: list[str], days: int = 1) -> tuple[str, str]:
    """(certificate PEM, key PEM) for a server named `names` (DNS names or IPs), issued by `ca`."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(names[0])).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return pem(cert), key_pem(key)


def self_signed(names: list[str], days: int = 1) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed certificate for `names` (no CA involved)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(names[0])).issuer_name(name(names[0])).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return pem(cert), key_pem(key)


def ssh_keypair() -> tuple[str, str]:
    """A new ed25519 key: (private key in OpenSSH PEM, what `sshPrivateKey` holds; public key in
    OpenSSH form, what a pinned `ssh.hostKey` or authorized_keys line holds)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def ssh_private_key() -> str:
    return ssh_keypair()[0]


def ssh_host_key() -> str:
    return ssh_keypair()[1]
