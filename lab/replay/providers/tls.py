"""pulumi-tls emulation (PrivateKey, SelfSignedCert, CertRequest, LocallySignedCert).

Owns generating real keys and certificates with `cryptography`, following what
terraform-provider-tls (the provider pulumi-tls bridges) does with Go's crypto/x509: key PEM
types, OpenSSH forms (none for P-224), fingerprints, 128-bit random serials, key usages and
EKUs from `allowed_uses`, basic constraints always present, subject key id for CAs or on
request, authority key id from the issuer's subject key id, and renewal when
`now >= validity_end - early_renewal_hours`. Every input change replaces, except
`early_renewal_hours` of a certificate (updated in place, as the provider does).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from lab.replay.model import Resource
from lab.replay.providers import Context, Provider, StepFailed

PrivateKeyTypes = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKeyTypes = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

CURVES: dict[str, ec.EllipticCurve] = {
    "P224": ec.SECP224R1(),
    "P256": ec.SECP256R1(),
    "P384": ec.SECP384R1(),
    "P521": ec.SECP521R1(),
}

KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}

EXT_KEY_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec_end_system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec_tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec_user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft_server_gated_crypto": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape_server_gated_crypto": ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoft_commercial_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoft_kernel_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}

# pkix.Name.ToRDNSequence order in Go.
SUBJECT_FIELDS = [
    ("country", NameOID.COUNTRY_NAME),
    ("province", NameOID.STATE_OR_PROVINCE_NAME),
    ("locality", NameOID.LOCALITY_NAME),
    ("streetAddresses", NameOID.STREET_ADDRESS),
    ("postalCode", NameOID.POSTAL_CODE),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("commonName", NameOID.COMMON_NAME),
    ("serialNumber", NameOID.SERIAL_NUMBER),
    ("emailAddress", NameOID.EMAIL_ADDRESS),
]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def algorithm_of(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ECDSA"
    return "ED25519"


def load_private_key(pem: str, what: str) -> PrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise StepFailed(f"Failed to parse {what}: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise StepFailed(f"Failed to parse {what}: unsupported key type {type(key).__name__}")
    return key


def _hash_for(key: PrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    # Go's x509 signingParamsForKey: SHA-256 for RSA and P-224/P-256, larger curves larger hashes.
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp384r1":
            return hashes.SHA384()
        if key.curve.name == "secp521r1":
            return hashes.SHA512()
    return hashes.SHA256()


def subject_key_id(pub: PublicKeyTypes) -> bytes:
    """SHA-1 over the key bytes as terraform-provider-tls's generateSubjectKeyID marshals them."""
    if isinstance(pub, rsa.RSAPublicKey):
        data = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        data = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        data = b"\x04" + bytes([len(raw)]) + raw  # asn1.Marshal([]byte) is an OCTET STRING
    return hashlib.sha1(data).digest()  # noqa: S324 - RFC 5280 method 1, not a security use


def build_name(subject: dict[str, Any] | None) -> x509.Name:
    attrs: list[x509.NameAttribute] = []
    for key, oid in SUBJECT_FIELDS:
        value = (subject or {}).get(key)
        if value in (None, "", []):
            continue
        for item in value if isinstance(value, list) else [value]:
            attrs.append(x509.NameAttribute(oid, str(item)))
    return x509.Name(attrs)


def build_sans(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in inputs.get("dnsNames") or []]
    for ip in inputs.get("ipAddresses") or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise StepFailed(f"Invalid IP address {ip!r} in ip_addresses") from None
    names.extend(x509.UniformResourceIdentifier(u) for u in inputs.get("uris") or [])
    return names


def _public_key_outputs(key: PrivateKeyTypes, curve: str) -> dict[str, Any]:
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    openssh = md5 = sha256 = ""
    private_openssh = ""
    # x/crypto/ssh has no P-224: the provider leaves the OpenSSH forms and fingerprints empty.
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and curve == "P224"):
        line = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        blob = base64.b64decode(line.split()[1])
        openssh = line + "\n"
        md5 = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())  # noqa: S324 - legacy fingerprint format
        sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        private_openssh = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    else:
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "id": hashlib.sha1(der).hexdigest(),  # noqa: S324 - the provider's hashForState
        "privateKeyPem": private_pem,
        "privateKeyPemPkcs8": pkcs8,
        "privateKeyOpenssh": private_openssh,
        "publicKeyPem": pem,
        "publicKeyOpenssh": openssh,
        "publicKeyFingerprintMd5": md5,
        "publicKeyFingerprintSha256": sha256,
    }


class PrivateKey(Provider):
    type = "tls:index/privateKey:PrivateKey"
    secret_outputs = frozenset({"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"})
    computed = (
        "privateKeyPem",
        "privateKeyPemPkcs8",
        "privateKeyOpenssh",
        "publicKeyPem",
        "publicKeyOpenssh",
        "publicKeyFingerprintMd5",
        "publicKeyFingerprintSha256",
    )

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"rsaBits": 2048.0, "ecdsaCurve": "P224", **inputs}

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        algorithm = inputs.get("algorithm")
        curve = str(inputs.get("ecdsaCurve"))
        key: PrivateKeyTypes
        if algorithm == "RSA":
            key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs["rsaBits"]))
        elif algorithm == "ECDSA":
            if curve not in CURVES:
                raise StepFailed(f"invalid ECDSA curve {curve!r}; supported values are: {sorted(CURVES)}")
            key = ec.generate_private_key(CURVES[curve])
        elif algorithm == "ED25519":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise StepFailed(f"invalid algorithm {algorithm!r}; supported values are: RSA, ECDSA, ED25519")
        outputs = _public_key_outputs(key, curve)
        return outputs.pop("id"), {**inputs, **outputs}


class _Cert(Provider):
    secret_outputs = frozenset({"privateKeyPem", "caPrivateKeyPem"})
    computed: tuple[str, ...] = ("certPem", "validityStartTime", "validityEndTime", "readyForRenewal")

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"isCaCertificate": False, "earlyRenewalHours": 0.0, "setSubjectKeyId": False, **inputs}

    def replace_keys(self, changed: set[str]) -> set[str]:
        return changed - {"earlyRenewalHours"}

    def renewal_due(self, old: Resource, inputs: dict[str, Any], now: datetime) -> bool:
        end = old.outputs.get("validityEndTime")
        if not isinstance(end, str):
            return False
        early = timedelta(hours=float(inputs.get("earlyRenewalHours") or 0))
        return now >= parse_rfc3339(end) - early

    def update(self, ctx: Context, old: Resource, res: Resource, inputs: dict[str, Any]) -> dict[str, Any]:
        return {**old.outputs, **inputs, "readyForRenewal": False}

    def _issue(
        self,
        ctx: Context,
        inputs: dict[str, Any],
        subject: x509.Name,
        sans: list[x509.GeneralName],
        public_key: PublicKeyTypes,
        issuer: x509.Name,
        issuer_key: PrivateKeyTypes,
        issuer_skid: bytes | None,
        self_signed: bool,
    ) -> tuple[str, dict[str, Any]]:
        now = ctx.now().astimezone(UTC).replace(microsecond=0)
        hours = float(inputs.get("validityPeriodHours") or 0)
        end = now + timedelta(hours=hours)
        serial = secrets.randbelow(1 << 128) or 1
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now)
            .not_valid_after(end)
        )
        usages = set()
        ekus: list[ObjectIdentifier] = []
        for use in inputs.get("allowedUses") or []:
            if use in KEY_USAGES:
                usages.add(KEY_USAGES[use])
            elif use in EXT_KEY_USAGES:
                ekus.append(EXT_KEY_USAGES[use])
            else:
                raise StepFailed(f"allowed_uses: unsupported value {use!r}")
        if usages:
            flags = {name: (name in usages) for name in KEY_USAGES.values()}
            builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        is_ca = bool(inputs.get("isCaCertificate"))
        if is_ca and len(subject) == 0:
            raise StepFailed(
                "Invalid Certificate Subject: Must contain at least one Distinguished Name when creating "
                "Certificate Authority (CA)"
            )
        path_len = inputs.get("maxPathLength")
        # Go: MaxPathLen 0 without MaxPathLenZero means "no limit".
        path_length = int(path_len) if is_ca and path_len is not None and int(path_len) > 0 else None
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        skid = subject_key_id(public_key) if (is_ca or inputs.get("setSubjectKeyId")) else None
        if skid:
            builder = builder.add_extension(x509.SubjectKeyIdentifier(skid), critical=False)
        if self_signed:
            if inputs.get("setAuthorityKeyId"):
                if not skid:
                    raise StepFailed("Invalid Certificate Authority: Could not determine Authority Key Identifier")
                builder = builder.add_extension(x509.AuthorityKeyIdentifier(skid, None, None), critical=False)
        elif issuer_skid:
            # x509.CreateCertificate takes the authority key id from the parent's subject key id.
            builder = builder.add_extension(x509.AuthorityKeyIdentifier(issuer_skid, None, None), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
        cert = builder.sign(issuer_key, _hash_for(issuer_key))
        outputs = {
            **inputs,
            "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": rfc3339(now),
            "validityEndTime": rfc3339(end),
            "readyForRenewal": False,
        }
        return str(serial), outputs


class SelfSignedCert(_Cert):
    type = "tls:index/selfSignedCert:SelfSignedCert"
    computed = (*_Cert.computed, "keyAlgorithm")

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"setAuthorityKeyId": False, **super().check(inputs)}

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = load_private_key(str(inputs.get("privateKeyPem", "")), "private key PEM")
        name = build_name(inputs.get("subject"))
        cert_id, outputs = self._issue(
            ctx, inputs, name, build_sans(inputs), key.public_key(), name, key, None, self_signed=True
        )
        outputs["keyAlgorithm"] = algorithm_of(key)
        return cert_id, outputs


class CertRequest(Provider):
    type = "tls:index/certRequest:CertRequest"
    secret_outputs = frozenset({"privateKeyPem"})
    computed = ("certRequestPem", "keyAlgorithm")

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = load_private_key(str(inputs.get("privateKeyPem", "")), "private key PEM")
        name = build_name(inputs.get("subject"))
        builder = x509.CertificateSigningRequestBuilder().subject_name(name)
        sans = build_sans(inputs)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(name) == 0)
        csr = builder.sign(key, _hash_for(key))
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        outputs = {**inputs, "certRequestPem": pem, "keyAlgorithm": algorithm_of(key)}
        return hashlib.sha1(pem.encode()).hexdigest(), outputs  # noqa: S324 - an id, not security


class LocallySignedCert(_Cert):
    type = "tls:index/locallySignedCert:LocallySignedCert"
    computed = (*_Cert.computed, "caKeyAlgorithm")

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            csr = x509.load_pem_x509_csr(str(inputs.get("certRequestPem", "")).encode())
        except ValueError as exc:
            raise StepFailed(f"Failed to parse certificate request PEM: {exc}") from None
        try:
            ca_cert = x509.load_pem_x509_certificate(str(inputs.get("caCertPem", "")).encode())
        except ValueError as exc:
            raise StepFailed(f"Failed to parse CA certificate PEM: {exc}") from None
        ca_key = load_private_key(str(inputs.get("caPrivateKeyPem", "")), "CA private key PEM")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if ca_key.public_key().public_bytes(serialization.Encoding.DER, spki) != ca_cert.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ):
            raise StepFailed("Failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey")
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        try:
            ca_skid: bytes | None = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            ca_skid = None
        public_key = csr.public_key()
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
            raise StepFailed("Failed to parse certificate request PEM: unsupported public key type")
        cert_id, outputs = self._issue(
            ctx, inputs, csr.subject, sans, public_key, ca_cert.subject, ca_key, ca_skid, self_signed=False
        )
        outputs["caKeyAlgorithm"] = algorithm_of(ca_key)
        return cert_id, outputs


PROVIDERS: list[Provider] = [PrivateKey(), SelfSignedCert(), CertRequest(), LocallySignedCert()]
