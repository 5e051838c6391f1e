"""The `ca.rotation: switch` guard (components/ca_switch.py), its script RUN against trust files
in a temporary tree: a switch whose `stage` was never applied (or did not finish on a host) is
refused with the config key and the fix; after a stage it passes."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.ca_switch import pem_body, render_switch_check
from components.pki import trust_bundle
from components.remote_files_render import strict


def _ca(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


OLD, NEW = _ca("CA"), _ca("CA gen 2")


def run(tmp: Path, contents: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    files = []
    for name, text in contents.items():
        f = tmp / name
        f.parent.mkdir(parents=True, exist_ok=True)
        if text is not None:
            f.write_text(text)
        files.append(str(f))
    script = strict(render_switch_check(host="mm1", generation=2, new_ca_pem=NEW, files=files))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)


def test_after_stage_every_file_holds_the_new_ca_and_the_switch_goes_on(tmp_path: Path) -> None:
    bundle = trust_bundle([OLD, NEW])
    crlf = bundle.replace("\n", "\r\n")  # another writer's line endings do not matter
    r = run(tmp_path, {"etc/ca.crt": bundle, "share/with space/ca.crt": crlf})
    assert r.returncode == 0, r.stderr
    assert "CA generation 2 trusted" in r.stdout


def test_switch_without_stage_is_refused_naming_the_key_the_file_and_the_fix(tmp_path: Path) -> None:
    r = run(tmp_path, {"etc/ca.crt": trust_bundle([OLD, NEW]), "share/ca.crt": OLD})
    assert r.returncode == 1
    assert "ca.rotation is 'switch'" in r.stderr and "CA generation 2 is not yet trusted on mm1" in r.stderr
    assert f"{tmp_path}/share/ca.crt" in r.stderr and f"{tmp_path}/etc/ca.crt" not in r.stderr
    assert "pulumi config set --path ca.rotation stage && pulumi up" in r.stderr


def test_an_absent_trust_file_is_refused_too(tmp_path: Path) -> None:
    r = run(tmp_path, {"etc/ca.crt": trust_bundle([OLD, NEW]), "gone/ca.crt": None})
    assert r.returncode == 1 and f"{tmp_path}/gone/ca.crt (absent)" in r.stderr


def test_pem_body_takes_one_certificate_only() -> None:
    assert pem_body(NEW) in "".join(trust_bundle([OLD, NEW]).split())
    with pytest.raises(ValueError, match="more than one"):
        pem_body(trust_bundle([OLD, NEW]))
    with pytest.raises(ValueError, match="not one PEM"):
        pem_body("junk")
