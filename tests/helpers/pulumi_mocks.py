"""Pulumi's mock runtime for the component tests (tests/program), with a monitor that records
what the engine is told.

`pulumi.runtime.mocks.MockMonitor` answers RegisterResource but drops the request; the
`RecordingMonitor` here keeps each one as the engine would receive it (parent, dependencies,
additionalSecretOutputs, inputs still carrying their secret markers) and every
RegisterResourceOutputs. `ProviderMocks` stands in for the providers' outputs (pulumi-tls PEMs,
pulumi-command stdout); a test subclasses it to change one answer. No lab.replay involved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor

from components.config import PROJECT
from components.remote_files import command_script

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
    its stdin."""
    return command_script(res.inputs[field], plain(res.inputs["stdin"]))
