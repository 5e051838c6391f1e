"""pulumi-tls and pulumi-random emulation: real keys and certificates, parsed back."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from lab.replay import evaluate
from lab.replay.model import Resource
from lab.replay.providers import Context, StepFailed
from lab.replay.providers.random import LOWER, NUMERIC, SPECIAL, UPPER, RandomPassword
from lab.replay.providers.tls import CertRequest, LocallySignedCert, PrivateKey, SelfSignedCert
from lab.replay.testing import write_project

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


def ctx(now: datetime = NOW) -> Context:
    return Context(preview=False, now=lambda: now, runner=None)


def resource(type_: str) -> Resource:
    return Resource(urn=f"urn:pulumi:s::p::{type_}::r", type=type_, name="r", parent_urn=None, custom=True)


def create(provider, inputs: dict) -> tuple[str, dict]:
    """(id, outputs) of `provider` creating a resource from `inputs`, checked as the engine does."""
    return provider.create(ctx(), resource(provider.type), provider.check(inputs))


def make_key(**inputs) -> dict:
    return create(PrivateKey(), inputs)[1]


@pytest.mark.parametrize(
    ("inputs", "pem_type", "key_class"),
    [
        ({"algorithm": "RSA"}, "RSA PRIVATE KEY", rsa.RSAPrivateKey),
        ({"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "EC PRIVATE KEY", ec.EllipticCurvePrivateKey),
        ({"algorithm": "ECDSA", "ecdsaCurve": "P384"}, "EC PRIVATE KEY", ec.EllipticCurvePrivateKey),
        ({"algorithm": "ECDSA", "ecdsaCurve": "P521"}, "EC PRIVATE KEY", ec.EllipticCurvePrivateKey),
        ({"algorithm": "ED25519"}, "PRIVATE KEY", ed25519.Ed25519PrivateKey),
    ],
)
def test_private_key_formats(inputs: dict, pem_type: str, key_class: type) -> None:
    out = make_key(**inputs)
    assert out["privateKeyPem"].startswith(f"-----BEGIN {pem_type}-----\n")
    key = serialization.load_pem_private_key(out["privateKeyPem"].encode(), None)
    assert isinstance(key, key_class)
    pkcs8 = serialization.load_pem_private_key(out["privateKeyPemPkcs8"].encode(), None)
    assert out["privateKeyPemPkcs8"].startswith("-----BEGIN PRIVATE KEY-----\n")
    openssh = serialization.load_ssh_private_key(out["privateKeyOpenssh"].encode(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public = key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()
    assert public == out["publicKeyPem"]
    for other in (pkcs8, openssh):
        assert other.public_key().public_bytes(serialization.Encoding.PEM, spki).decode() == public
    # authorized_keys line with a trailing newline, like ssh.MarshalAuthorizedKey
    kind, blob = out["publicKeyOpenssh"].rstrip("\n").split(" ")
    assert out["publicKeyOpenssh"].endswith("\n") and out["publicKeyOpenssh"].count("\n") == 1
    raw = base64.b64decode(blob)
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    assert out["publicKeyFingerprintSha256"] == f"SHA256:{digest}"
    md5 = hashlib.md5(raw).hexdigest()  # noqa: S324 - checking the legacy format
    assert out["publicKeyFingerprintMd5"] == ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    if inputs.get("algorithm") == "RSA":
        assert key.key_size == 2048


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    out = make_key(algorithm="ED25519")
    pub = tmp_path / "k.pub"
    pub.write_text(out["publicKeyOpenssh"])
    try:
        shown = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        pytest.skip("ssh-keygen not installed")
    assert shown.split()[1] == out["publicKeyFingerprintSha256"]
    assert out["publicKeyOpenssh"].startswith("ssh-ed25519 AAAA")


def test_p224_has_no_openssh_forms() -> None:
    out = make_key(algorithm="ECDSA")  # the provider's default curve is P224
    assert out["ecdsaCurve"] == "P224"
    assert isinstance(
        serialization.load_pem_private_key(out["privateKeyPem"].encode(), None), ec.EllipticCurvePrivateKey
    )
    assert out["privateKeyOpenssh"] == out["publicKeyOpenssh"] == out["publicKeyFingerprintSha256"] == ""


def test_bad_algorithm_fails_the_step() -> None:
    with pytest.raises(StepFailed, match="invalid algorithm"):
        make_key(algorithm="DSA")


def issue_chain(ca_algo: dict, leaf_algo: dict, **leaf_inputs):
    ca_key = make_key(**ca_algo)
    _, ca = create(
        SelfSignedCert(),
        {
            "privateKeyPem": ca_key["privateKeyPem"],
            "subject": {"commonName": "Lab CA", "organization": "Lab"},
            "isCaCertificate": True,
            "validityPeriodHours": 87600.0,
            "allowedUses": ["cert_signing", "crl_signing"],
        },
    )
    leaf_key = make_key(**leaf_algo)
    _, csr = create(
        CertRequest(),
        {
            "privateKeyPem": leaf_key["privateKeyPem"],
            "subject": {"commonName": "mm1"},
            "dnsNames": ["mm1.lab", "localhost"],
            "ipAddresses": ["10.251.0.101", "127.0.0.1"],
        },
    )
    inputs = {
        "certRequestPem": csr["certRequestPem"],
        "caCertPem": ca["certPem"],
        "caPrivateKeyPem": ca_key["privateKeyPem"],
        "validityPeriodHours": 720.0,
        "earlyRenewalHours": 168.0,
        "allowedUses": ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
        **leaf_inputs,
    }
    serial, leaf = create(LocallySignedCert(), inputs)
    return ca, leaf, serial


@pytest.mark.parametrize(
    ("ca_algo", "leaf_algo"),
    [
        ({"algorithm": "ECDSA", "ecdsaCurve": "P384"}, {"algorithm": "ECDSA", "ecdsaCurve": "P256"}),
        ({"algorithm": "RSA"}, {"algorithm": "RSA"}),
        ({"algorithm": "ED25519"}, {"algorithm": "ECDSA", "ecdsaCurve": "P256"}),
    ],
)
def test_locally_signed_cert_chain_verifies(ca_algo: dict, leaf_algo: dict, tmp_path: Path) -> None:
    ca, leaf, serial = issue_chain(ca_algo, leaf_algo)
    ca_cert = x509.load_pem_x509_certificate(ca["certPem"].encode())
    cert = x509.load_pem_x509_certificate(leaf["certPem"].encode())
    cert.verify_directly_issued_by(ca_cert)
    assert str(cert.serial_number) == serial
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mm1"
    assert cert.issuer == ca_cert.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mm1.lab", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.251.0.101"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(ekus) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    ca_constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_constraints.ca is True and ca_constraints.path_length is None
    ca_skid = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    akid = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert akid == ca_skid
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert leaf["validityStartTime"] == "2026-01-10T12:00:00Z"
    assert leaf["validityEndTime"] == "2026-02-09T12:00:00Z"
    assert cert.not_valid_before_utc == NOW and cert.not_valid_after_utc == NOW + timedelta(hours=720)
    assert leaf["readyForRenewal"] is False

    openssl_verify(ca["certPem"], leaf["certPem"], tmp_path)
    if not isinstance(ca_cert.public_key(), ed25519.Ed25519PublicKey):  # the Web PKI policy forbids Ed25519
        # A TLS client's view: chain to the CA, name and IP both match, server auth allowed.
        store = Store([ca_cert])
        for name in (x509.DNSName("mm1.lab"), x509.IPAddress(ipaddress.ip_address("10.251.0.101"))):
            verifier = PolicyBuilder().store(store).time(NOW + timedelta(hours=1)).build_server_verifier(name)
            verifier.verify(cert, [])


def openssl_verify(ca_pem: str, leaf_pem: str, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "leaf.pem").write_text(leaf_pem)
    at = str(int((NOW + timedelta(hours=1)).timestamp()))
    args = ["openssl", "verify", "-attime", at, "-purpose", "sslserver", "-CAfile", "ca.pem", "leaf.pem"]
    try:
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return
    assert done.returncode == 0, done.stdout + done.stderr


def test_subject_key_id_on_request() -> None:
    _, leaf, _ = issue_chain({"algorithm": "ED25519"}, {"algorithm": "ED25519"}, setSubjectKeyId=True)
    cert = x509.load_pem_x509_certificate(leaf["certPem"].encode())
    skid = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    raw = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert skid == hashlib.sha1(b"\x04\x20" + raw).digest()  # noqa: S324 - the provider's key id


def test_wrong_ca_key_is_refused() -> None:
    ca, _, _ = issue_chain({"algorithm": "ED25519"}, {"algorithm": "ED25519"})
    other = make_key(algorithm="ED25519")
    csr_provider = CertRequest()
    _, csr = csr_provider.create(
        ctx(), resource(csr_provider.type), {"privateKeyPem": other["privateKeyPem"], "subject": {"commonName": "x"}}
    )
    with pytest.raises(StepFailed, match="doesn't match parent's PublicKey"):
        create(
            LocallySignedCert(),
            {
                "certRequestPem": csr["certRequestPem"],
                "caCertPem": ca["certPem"],
                "caPrivateKeyPem": other["privateKeyPem"],
                "validityPeriodHours": 1.0,
                "allowedUses": [],
            },
        )


def test_ca_needs_a_subject() -> None:
    key = make_key(algorithm="ED25519")
    with pytest.raises(StepFailed, match="Distinguished Name"):
        create(SelfSignedCert(), {"privateKeyPem": key["privateKeyPem"], "isCaCertificate": True, "validityPeriodHours": 1.0})


PKI_PROGRAM = """
import pulumi, pulumi_tls as tls, pulumi_random as random
cfg = pulumi.Config()
ca_key = tls.PrivateKey("ca-key", algorithm="ECDSA", ecdsa_curve="P256")
ca = tls.SelfSignedCert("ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
    subject=tls.SelfSignedCertSubjectArgs(common_name="Lab CA"), validity_period_hours=87600,
    allowed_uses=["cert_signing"])
key = tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")
csr = tls.CertRequest("csr", private_key_pem=key.private_key_pem,
    subject=tls.CertRequestSubjectArgs(common_name="mm1"), dns_names=["mm1"])
cert = tls.LocallySignedCert("cert", cert_request_pem=csr.cert_request_pem, ca_cert_pem=ca.cert_pem,
    ca_private_key_pem=ca_key.private_key_pem, validity_period_hours=cfg.get_int("hours") or 720,
    early_renewal_hours=cfg.get_int("early") or 168, allowed_uses=["server_auth"])
pw = random.RandomPassword("pw", length=cfg.get_int("pwlen") or 24, special=False)
pulumi.export("cert", cert.cert_pem)
pulumi.export("key", key.private_key_pem)
pulumi.export("pw", pw.result)
"""


@pytest.fixture(scope="module")
def pki_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("pki"), PKI_PROGRAM)


def test_keys_certs_and_passwords_are_stable_across_runs(pki_project: Path) -> None:
    first = evaluate(pki_project, "dev", preview=False, now=NOW)
    second = evaluate(pki_project, "dev", preview=False, state=first.state, now=NOW + timedelta(days=1))
    assert {s.op for s in second.steps} == {"same"}
    assert second.outputs == first.outputs
    assert first.secret_outputs == {"key", "pw"}


def test_certificate_renews_itself_in_the_early_renewal_window(pki_project: Path) -> None:
    first = evaluate(pki_project, "dev", preview=False, now=NOW)
    before_window = NOW + timedelta(hours=720 - 168) - timedelta(minutes=1)
    quiet = evaluate(pki_project, "dev", preview=False, state=first.state, now=before_window)
    assert {s.op for s in quiet.steps} == {"same"}
    renewal = evaluate(pki_project, "dev", preview=False, state=first.state, now=before_window + timedelta(minutes=2))
    changed = {s.name: (s.op, s.changed) for s in renewal.steps if s.op not in ("same", "delete-replaced")}
    assert changed == {"cert": ("replace", ["ready_for_renewal"])}
    assert renewal.outputs["cert"] != first.outputs["cert"]
    assert renewal.outputs["key"] == first.outputs["key"]


def test_changed_inputs_replace_but_early_renewal_hours_updates(pki_project: Path) -> None:
    first = evaluate(pki_project, "dev", preview=False, now=NOW)
    early = evaluate(pki_project, "dev", config={"early": 100}, preview=False, state=first.state, now=NOW)
    assert {s.name: s.op for s in early.steps if s.op not in ("same", "delete-replaced")} == {"cert": "update"}
    assert early.outputs["cert"] == first.outputs["cert"]
    longer = evaluate(pki_project, "dev", config={"hours": 1000}, preview=False, state=first.state, now=NOW)
    assert {s.name: s.op for s in longer.steps if s.op not in ("same", "delete-replaced")} == {"cert": "replace"}
    pw = evaluate(pki_project, "dev", config={"pwlen": 30}, preview=False, state=first.state, now=NOW)
    assert {s.name: s.op for s in pw.steps if s.op not in ("same", "delete-replaced")} == {"pw": "replace"}
    assert len(pw.outputs["pw"]) == 30


def password(**inputs) -> str:
    return create(RandomPassword(), inputs)[1]["result"]


def test_password_classes_and_minimums() -> None:
    for _ in range(20):
        value = password(length=12, min_upper=0, minUpper=3, minNumeric=3, minSpecial=2)
        assert len(value) == 12
        assert sum(c in UPPER for c in value) >= 3
        assert sum(c in NUMERIC for c in value) >= 3
        assert sum(c in SPECIAL for c in value) >= 2
    plain = password(length=64, special=False)
    assert set(plain) <= set(UPPER + LOWER + NUMERIC)
    digits = password(length=40, upper=False, lower=False, special=False)
    assert set(digits) <= set(NUMERIC)
    custom = password(length=40, upper=False, lower=False, numeric=False, overrideSpecial="_-")
    assert set(custom) <= {"_", "-"}
    with pytest.raises(StepFailed, match="at least the sum"):
        password(length=2, minUpper=2, minLower=2)


def test_password_bcrypt_hash_verifies() -> None:
    provider = RandomPassword()
    _, out = create(provider, {"length": 16})
    assert out["bcryptHash"].startswith("$2a$10$")
    assert bcrypt.checkpw(out["result"].encode(), out["bcryptHash"].encode())
    assert provider.secret_outputs == {"result", "bcryptHash"}
