"""The three files every TLS endpoint of the deployment has: its certificate, its key, and the
stack CA it verifies its peers with. The proxy's, a node's and the database's paths extend it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    """The certificate (chain) this host presents (PEM, absolute path)."""
    key: str
    """Its private key (PEM; readable by root and the service only)."""
    ca: str
    """The stack CA, which verifies the peers (absolute path)."""
