"""The stack's private CA and the server certificates it issues.

Owns key algorithms, SANs, lifetimes and renewal: a certificate is replaced by a routine
`pulumi up` once `now >= validity_end - early_renewal_hours`, and every consumer installs
whatever certificate is current, so renewal needs nothing but `pulumi up`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_tls as tls

from components.config import Ca

SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]


@dataclass(frozen=True)
class PkiArgs:
    """Settings of the CA (validated config)."""

    ca: Ca
    """CA subject, lifetimes and key algorithm."""


@dataclass(frozen=True)
class ServerCertSpec:
    """What one server certificate must say."""

    common_name: str
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)


def split_sans(names: list[str]) -> ServerCertSpec:
    """Sort host names and addresses into DNS and IP SANs, without duplicates, order kept."""
    dns: list[str] = []
    ips: list[str] = []
    for n in names:
        try:
            ip = str(ipaddress.ip_address(n))
            if ip not in ips:
                ips.append(ip)
        except ValueError:
            if n not in dns:
                dns.append(n)
    return ServerCertSpec(common_name=names[0], dns_names=dns, ip_addresses=ips)


class IssuedCert:
    """A key and a CA-signed certificate (plain Python object: the resources belong to the caller)."""

    def __init__(self, key: tls.PrivateKey, cert: tls.LocallySignedCert):
        self.key = key
        self.cert = cert

    @property
    def cert_pem(self) -> pulumi.Output[str]:
        return self.cert.cert_pem

    @property
    def key_pem(self) -> pulumi.Output[str]:
        return self.key.private_key_pem


class Pki(pulumi.ComponentResource):
    """A self-signed CA; `issue_server_cert` makes certificates under the caller's component."""

    ca_cert_pem: pulumi.Output[str]
    """The CA certificate (public); nodes, NGINX, the DB clients and other stacks trust it."""
    ca_expiry: pulumi.Output[str]

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:pki:Pki", name, None, opts)
        self._args = args
        ca = args.ca
        child = pulumi.ResourceOptions(parent=self)
        self._ca_key = tls.PrivateKey(f"{name}-ca-key", **_key_args(ca.key_algorithm), opts=child)
        self._ca_cert = tls.SelfSignedCert(
            f"{name}-ca-cert",
            private_key_pem=self._ca_key.private_key_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=ca.common_name, organization=ca.organization),
            validity_period_hours=ca.validity_hours,
            early_renewal_hours=ca.early_renewal_hours,
            allowed_uses=CA_USES,
            opts=child,
        )
        self.ca_cert_pem = self._ca_cert.cert_pem
        self.ca_expiry = self._ca_cert.validity_end_time
        self.register_outputs({"ca_cert_pem": self.ca_cert_pem, "ca_expiry": self.ca_expiry})

    def issue_server_cert(
        self, name: str, spec: ServerCertSpec, parent: pulumi.Resource
    ) -> IssuedCert:
        """A server key + certificate named `name`, children of `parent` (so they move with it)."""
        ca = self._args.ca
        opts = pulumi.ResourceOptions(parent=parent)
        key = tls.PrivateKey(f"{name}-key", **_key_args(ca.key_algorithm), opts=opts)
        csr = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=spec.common_name, organization=ca.organization),
            dns_names=spec.dns_names,
            ip_addresses=spec.ip_addresses,
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=self._ca_key.private_key_pem,
            ca_cert_pem=self._ca_cert.cert_pem,
            validity_period_hours=ca.cert_validity_hours,
            early_renewal_hours=ca.cert_early_renewal_hours,
            allowed_uses=SERVER_USES,
            set_subject_key_id=True,
            opts=opts,
        )
        return IssuedCert(key, cert)


def _key_args(algorithm: str) -> dict[str, object]:
    # P256: the provider's default curve (P224) has no OpenSSH form and weak client support
    return {"algorithm": "ECDSA", "ecdsa_curve": "P256"} if algorithm == "ECDSA" else {"algorithm": "RSA", "rsa_bits": 3072}
