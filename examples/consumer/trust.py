"""What this consumer trusts, decided from the producer's outputs by pure functions."""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509

_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){31}$")


def trusted_ca(ca_pem: str) -> str:
    """The producer's `caCertPem`, refused unless it is exactly one CA certificate: a consumer
    must not start trusting a leaf (or a bundle) because an output changed shape."""
    if not isinstance(ca_pem, str):
        raise ValueError("caCertPem is not a PEM string")
    certs = x509.load_pem_x509_certificates(ca_pem.encode())
    if len(certs) != 1:
        raise ValueError(f"caCertPem holds {len(certs)} certificates; expected the stack CA alone")
    try:
        constraints = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ValueError("caCertPem has no basicConstraints: not a CA certificate") from None
    if not constraints.ca:
        raise ValueError("caCertPem is not a CA certificate (basicConstraints CA:FALSE)")
    return ca_pem


def node_pins(nodes: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per node: its address and the SHA-256 fingerprint of its certificate (colon-separated
    uppercase hex, as `openssl x509 -fingerprint -sha256` prints it)."""
    if not isinstance(nodes, dict) or not nodes:
        raise ValueError("nodes is empty or not a map of node name -> details")
    pins: dict[str, dict[str, str]] = {}
    for name, node in sorted(nodes.items()):
        fingerprint = str(node.get("certFingerprintSha256", "")).upper()
        if not _FINGERPRINT_RE.match(fingerprint):
            raise ValueError(f"nodes.{name}.certFingerprintSha256 is not a SHA-256 fingerprint")
        pins[name] = {"address": str(node["address"]), "certFingerprintSha256": fingerprint}
    return pins
