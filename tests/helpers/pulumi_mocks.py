"""Pulumi's mock runtime for the component tests (tests/program), with a monitor that records
what the engine is told.

`pulumi.runtime.mocks.MockMonitor` answers RegisterResource but drops the request; the
`RecordingMonitor` here keeps each one as the engine would receive it (parent, dependencies,
additionalSecretOutputs, inputs still carrying their secret markers) and every
RegisterResourceOutputs. `ProviderMocks` stands in for the providers' outputs (pulumi-tls PEMs,
pulumi-command stdout); a test subclasses it to change one answer; `CertMocks` answers with real
keys and certificates (a CA, leaves it issues, OpenSSH keys) for code that parses them.
`start` sets the mock runtime up for a `@pulumi.runtime.test` function in this thread;
`run_main` runs a whole program directory (`__main__.py`) as the Python language host does.
No lab.replay involved.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import runpy
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from google.protobuf import json_format
from pulumi.runtime import settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_in_stack

from components.config import PROJECT
from components.remote_files_render import command_script
from tests.helpers import certs

# pulumi/sdk/python/lib/pulumi/runtime/rpc.py: _special_sig_key and _special_secret_sig, how a
# secret travels on the wire ({SIG_KEY: SECRET_SIG, "value": ...})
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
COMMAND = "command:remote:Command"


class ProviderMocks(pulumi.runtime.Mocks):
    """Outputs for the providers' resources: fake PEMs for pulumi-tls, `stdout` (by resource name,
    "" otherwise) for remote commands; everything else echoes its inputs."""

    validity_end = "2030-01-01T00:00:00Z"

    def __init__(self, stdout: dict[str, str] | None = None) -> None:
        self.stdout = stdout or {}
        """A command's stdout by resource name (e.g. the capture of the live NGINX site)."""

    def private_key_pem(self, name: str) -> str:
        return f"-----BEGIN PRIVATE KEY-----\nFAKE-{name}\n-----END PRIVATE KEY-----\n"

    def cert_pem(self, name: str) -> str:
        return f"-----BEGIN CERTIFICATE-----\nFAKE-{name}\n-----END CERTIFICATE-----\n"

    def command_stdout(self, name: str) -> str:
        return self.stdout.get(name, "")

    def other(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        """Outputs of any other resource type beyond its inputs."""
        return {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = self.private_key_pem(args.name)
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state["certPem"] = self.cert_pem(args.name)
            state["validityEndTime"] = self.validity_end
        elif args.typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = "CSR " + args.name
        elif args.typ == COMMAND:
            state.update({"stdout": self.command_stdout(args.name), "stderr": ""})
        else:
            state.update(self.other(args))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class CertMocks(ProviderMocks):
    """Real material where the program parses it: each PrivateKey a real key (ED25519 as asked,
    else EC P-256: the algorithm of the others is not what these tests check) with its OpenSSH
    forms; a CA certificate self-signed by its own key; a locally signed certificate issued by the
    CA key it is given; random strings of their length."""

    def __init__(self, stdout: dict[str, str] | None = None) -> None:
        super().__init__(stdout)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "tls:index/privateKey:PrivateKey":
            key: Any = ed25519.Ed25519PrivateKey.generate() if args.inputs.get("algorithm") == "ED25519" else (
                ec.generate_private_key(ec.SECP256R1()))
            state.update(_key_outputs(key))
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = serialization.load_pem_private_key(plain(args.inputs["privateKeyPem"]).encode(), None)
            subject = (args.inputs.get("subject") or {}).get("commonName") or args.name
            state["certPem"] = _issue(key, key.public_key(), subject, subject, ca=bool(args.inputs.get("isCaCertificate")))
        elif args.typ == "tls:index/locallySignedCert:LocallySignedCert":
            ca_key = serialization.load_pem_private_key(plain(args.inputs["caPrivateKeyPem"]).encode(), None)
            ca_cert = x509.load_pem_x509_certificate(plain(args.inputs["caCertPem"]).encode())
            leaf = ec.generate_private_key(ec.SECP256R1())
            state["certPem"] = _issue(ca_key, leaf.public_key(), args.name, ca_cert.subject)
        elif args.typ in ("random:index/randomString:RandomString", "random:index/randomPassword:RandomPassword"):
            state["result"] = "r" * int(args.inputs.get("length", 16))
        return rid, state


def _issue(signer: Any, public_key: Any, subject: str, issuer: str | x509.Name, ca: bool = False) -> str:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(certs.name(subject))
        .issuer_name(issuer if isinstance(issuer, x509.Name) else certs.name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return certs.pem(builder.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()))


def _key_outputs(key: Any) -> dict[str, str]:
    pub = key.public_key()
    blob = base64.b64decode(pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1])
    return {
        # pulumi-tls's format: ssh-keygen's, the unpadded base64 of the key blob's SHA-256
        "publicKeyFingerprintSha256": "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "privateKeyOpenssh": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode(),
        "publicKeyPem": pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        + "\n",
    }


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    dependencies: list[str]
    additional_secret_outputs: list[str]
    inputs: dict[str, Any]
    """Raw wire inputs: secrets still wrapped in {SIG_KEY: SECRET_SIG, "value": ...}."""
    custom: bool = True
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """The other resource options sent: delete_before_replace, replace_on_changes, ignore_changes,
    retain_on_delete, protect."""


class RecordingMonitor(MockMonitor):
    """The stock mock monitor, plus a record of each request: what the stock one drops."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        """RegisterResourceOutputs by URN."""
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        reg = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            dependencies=list(request.dependencies),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            inputs=json_format.MessageToDict(request.object),
            custom=bool(request.custom),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            options={
                "delete_before_replace": bool(request.deleteBeforeReplace),
                "replace_on_changes": list(request.replaceOnChanges),
                "ignore_changes": list(request.ignoreChanges),
                "retain_on_delete": bool(request.retainOnDelete),
                "protect": bool(request.protect),
            },
        )
        with self._lock:
            self.registrations.append(reg)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        with self._lock:
            self.outputs[request.urn] = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)

    def by_name(self, name: str) -> Registration:
        (reg,) = [r for r in self.registrations if r.name == name]
        return reg

    def named(self) -> dict[str, Registration]:
        return {r.name: r for r in self.registrations}


def start(mocks: pulumi.runtime.Mocks, stack: str = "test") -> RecordingMonitor:
    """Pulumi's mock runtime with a fresh RecordingMonitor over `mocks` (not a preview)."""
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    return monitor


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def plain(value: Any) -> Any:
    """A wire value without its secret wrapper."""
    return value["value"] if is_secret(value) else value


def unwrap(value: Any) -> tuple[Any, bool]:
    """(the value, whether it was secret)."""
    return plain(value), is_secret(value)


def runs(res: Any, field: str) -> str:
    """Command `field` of a recorded command with the scripts it runs from the helper manifest on
    its stdin; an `update` without a text of its own runs `create` (pulumi-command
    commandController.go `Command.Update`)."""
    text = (res.inputs.get("update") or res.inputs["create"]) if field == "update" else res.inputs[field]
    return command_script(text, plain(res.inputs["stdin"]))


class _Root:
    """Stands in as root while set_mocks runs, so run_in_stack registers the program's own Stack."""


_PROGRAM_LOCK = threading.Lock()
"""One program at a time per process: cwd, sys.path and the SDK's settings are process-wide."""


def run_main(
    directory: Path,
    monitor: MockMonitor,
    *,
    project: str,
    stack: str,
    config: dict[str, str],
    secret_keys: list[str] | None = None,
) -> str:
    """Run `directory/__main__.py` on Pulumi's mock runtime as the Python language host runs a
    program (run_in_stack, cwd and sys.path = its directory, `config` set, `secret_keys` secret),
    on its own thread and event loop; '' or the error it stopped with."""
    error: list[str] = []

    def target() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        # spare workers: components wait on each other's outputs in the default executor
        executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mock-program")
        loop.set_default_executor(executor)
        settings.ROOT.set(_Root())  # type: ignore[arg-type]
        pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
        settings.ROOT.set(None)
        # its own set of pending outputs: set_mocks keeps the process-wide one, where a failed
        # earlier program's outputs stay to fail this run (why: lab/replay/runtime.py `_run`)
        settings.SETTINGS.outputs = set()
        set_all_config(config, secret_keys or [])
        cwd, path, modules = os.getcwd(), list(sys.path), set(sys.modules)
        os.chdir(directory)
        sys.path.insert(0, str(directory))
        try:
            main = str(directory / "__main__.py")
            loop.run_until_complete(run_in_stack(lambda: runpy.run_path(main, run_name="__main__")))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            error.append(f"{type(e).__name__}: {e}")
        finally:
            os.chdir(cwd)
            sys.path[:] = path
            for name in set(sys.modules) - modules:  # the directory's own modules, imported afresh next time
                origin = getattr(sys.modules[name], "__file__", "") or ""
                if origin.startswith(str(directory) + os.sep) and "site-packages" not in origin:
                    del sys.modules[name]
            loop.close()
            executor.shutdown(wait=True)

    with _PROGRAM_LOCK:
        thread = threading.Thread(target=target, name=f"mock-{stack}")
        thread.start()
        thread.join()
    return "\n".join(error)


class Refused(Exception):
    """The error of `fail_a_program`."""


def _refuse(value: Any) -> Any:
    raise Refused(f"refused {value}")


def fail_a_program() -> None:
    """Run, on this thread, a program whose resource waits on an output that fails (as NGINX's
    refused live site does, tests/program/test_live_site_gate.py): the registration fails, so the
    SDK stops before it drains its pending outputs and keeps the failed one in the process-wide
    `SETTINGS.outputs`. Asserts that it did, so a test that runs a program after this one runs it
    after a real leftover (if a Pulumi release stops leaving it, the reset in `run_main` and
    lab/replay/runtime.py `_run` can go)."""
    start(ProviderMocks())

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        refused = pulumi.Output.from_input("site").apply(_refuse)
        return pulumi.CustomResource("test:index:Gated", "gated", {"site": refused}).urn

    try:
        program()
    except Refused:
        pass
    else:
        raise AssertionError("the program did not fail")
    left = [t for t in settings.SETTINGS.outputs if t.done() and not t.cancelled() and t.exception()]
    assert any(isinstance(t.exception(), Refused) for t in left), "the SDK kept no failed output"
