"""The stack's private CA (one or, during a rotation, two generations) and the server
certificates it issues.

Owns key algorithms, SANs, lifetimes, renewal and CA rotation. Renewal: a certificate is replaced
by a routine `pulumi up` once `now >= validity_end - early_renewal_hours`, and every consumer
installs whatever certificate is current, so renewal needs nothing but `pulumi up`. Rotation: the
user drives three `up`s with `ca.rotation` / `ca.generation` (README "Renewing certificates and rotating the CA"); in each,
every consumer trusts `ca_cert_pem`, the bundle of every generation `Ca.trusted` names, and every
certificate is signed by `Ca.issuer`. Nothing served ever changes in the same `up` as the trust
that verifies it, so no hop has a window in which its peer does not trust it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TypedDict

import pulumi
import pulumi_tls as tls

from components.config import Ca, ca_prefix

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


def trust_bundle(pems: list[str]) -> str:
    """One PEM file holding every certificate of `pems` in order, each once, each ending in a
    newline: what NGINX's proxy_ssl_trusted_certificate, libpq's sslrootcert, MariaDB's ssl_ca,
    update-ca-certificates and Python's `cadata` all read as a list of trusted CAs."""
    out: list[str] = []
    for pem in pems:
        if not pem.strip():
            raise ValueError("empty CA certificate in the trust bundle")
        block = pem.strip() + "\n"
        if block not in out:
            out.append(block)
    return "".join(out)


class Pki(pulumi.ComponentResource):
    """The CA generations `Ca.trusted` names (self-signed); `issue_server_cert` makes certificates
    signed by `Ca.issuer` under the caller's component."""

    ca_cert_pem: pulumi.Output[str]
    """The trust bundle (public): every CA generation trusted now, oldest first; nodes, NGINX, the
    DB server and clients, GitLab, the Teleport plugin and other stacks trust it. One certificate
    outside a rotation, two during one."""
    ca_expiry: pulumi.Output[str]
    """When the issuing CA expires."""

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:pki:Pki", name, None, opts)
        self._args = args
        ca = args.ca
        child = pulumi.ResourceOptions(parent=self)
        self._keys: dict[int, tls.PrivateKey] = {}
        self._certs: dict[int, tls.SelfSignedCert] = {}
        for gen in ca.trusted:
            prefix = ca_prefix(gen, name)
            key = tls.PrivateKey(f"{prefix}-key", **_key_args(ca.key_algorithm), opts=child)
            self._keys[gen] = key
            self._certs[gen] = tls.SelfSignedCert(
                f"{prefix}-cert",
                private_key_pem=key.private_key_pem,
                is_ca_certificate=True,
                set_subject_key_id=True,
                subject=tls.SelfSignedCertSubjectArgs(**ca_subject(ca, gen)),
                validity_period_hours=ca.validity_hours,
                early_renewal_hours=ca.early_renewal_hours,
                allowed_uses=CA_USES,
                opts=child,
            )
        self.ca_cert_pem = pulumi.Output.all(*[self._certs[g].cert_pem for g in ca.trusted]).apply(trust_bundle)
        self.ca_expiry = self._certs[ca.issuer].validity_end_time
        self.register_outputs({"ca_cert_pem": self.ca_cert_pem, "ca_expiry": self.ca_expiry})

    def ca_cert_of(self, generation: int) -> pulumi.Output[str]:
        """The certificate of one trusted CA generation alone (public), e.g. the one a
        `switch` issues from (components/ca_switch.py looks for it in every trust file)."""
        return self._certs[generation].cert_pem

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
            ca_private_key_pem=self._keys[ca.issuer].private_key_pem,
            ca_cert_pem=self._certs[ca.issuer].cert_pem,
            validity_period_hours=ca.cert_validity_hours,
            early_renewal_hours=ca.cert_early_renewal_hours,
            allowed_uses=SERVER_USES,
            set_subject_key_id=True,
            opts=opts,
        )
        return IssuedCert(key, cert)


def ca_subject(ca: Ca, generation: int) -> dict[str, str]:
    """The subject of one CA generation. Generations after the first carry it as their
    organizational unit: two CAs in one bundle never share a subject, so a verifier that looks
    issuers up by name (OpenSSL, Go) never has to tell them apart by key id alone. The first keeps
    the subject it always had (no replacement for existing stacks)."""
    subject = {"common_name": ca.common_name, "organization": ca.organization}
    if generation > 1:
        subject["organizational_unit"] = f"generation {generation}"
    return subject


class _KeyArgs(TypedDict, total=False):
    """tls.PrivateKey's keyword arguments, typed so the checker matches them to its overload."""

    algorithm: str
    ecdsa_curve: str
    rsa_bits: int


def _key_args(algorithm: str) -> _KeyArgs:
    # P256: the provider's default curve (P224) has no OpenSSH form and weak client support
    return {"algorithm": "ECDSA", "ecdsa_curve": "P256"} if algorithm == "ECDSA" else {"algorithm": "RSA", "rsa_bits": 3072}
