"""examples/consumer: a second stack reading this stack's outputs through `pulumi.StackReference`,
run under Pulumi's mock runtime against the outputs the REAL program exported on the same mock
runtime (the lab stack, tests/program/conftest.py `lab`: real CA and node certificates).

The mock answers the StackReference read as the engine's builtin provider does
(pulumi pkg/resource/deploy/builtins.go, `readStackReference`): state `name`, `outputs` (secret
outputs stay secret) and `secretOutputNames` (sorted). Values cross the SDK's protobuf boundary
as the engine's would, so a number comes back as a float, as it does from a real backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.runtime import mocks

from tests.helpers.certs import self_signed
from tests.helpers.program import PROJECT_DIR, Program
from tests.helpers.pulumi_mocks import run_main

CONSUMER_DIR = PROJECT_DIR / "examples" / "consumer"
PRODUCER = "organization/mattermost-transport-encryption/lab"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


class _Producer(mocks.Mocks):
    def __init__(self, outputs: dict[str, Any], secret_names: set[str]) -> None:
        self.outputs = outputs
        self.secret_names = secret_names
        self.reads: list[mocks.MockResourceArgs] = []

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ != "pulumi:pulumi:StackReference":
            raise AssertionError(f"the consumer registers only a StackReference, not {args.typ}")
        self.reads.append(args)
        if args.inputs.get("name") != PRODUCER:
            raise AssertionError(f"unknown stack {args.inputs.get('name')!r}")  # the backend: stack not found
        outputs = {k: pulumi.Output.secret(v) if k in self.secret_names else v for k, v in self.outputs.items()}
        return args.resource_id, {"name": PRODUCER, "outputs": outputs, "secretOutputNames": sorted(self.secret_names)}

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"the consumer calls no functions ({args.token})")


class _Monitor(mocks.MockMonitor):
    """Keeps what the program exports (the root Stack's outputs)."""

    def __init__(self, producer: _Producer) -> None:
        super().__init__(producer)
        self.exports: dict[str, Any] = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.exports = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def run_consumer(outputs: dict[str, Any], secret_names: set[str]) -> tuple[_Monitor, _Producer, str]:
    """Run examples/consumer as the Python language host would (cwd and sys.path = its directory,
    config set); returns the monitor, the mock and the error."""
    producer = _Producer(outputs, secret_names)
    monitor = _Monitor(producer)
    config = {"mattermost-tls-consumer:producer": PRODUCER}
    error = run_main(CONSUMER_DIR, monitor, project="mattermost-tls-consumer", stack="dev", config=config)
    return monitor, producer, error


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and value.get(SECRET_SIG):
        return _plain(value["value"])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def lab_outputs(lab: Program) -> tuple[dict[str, Any], set[str]]:
    ev = lab
    assert not ev.program_error, ev.program_error
    return ev.outputs, set(ev.secret_outputs)


def test_consumer_trusts_the_ca_and_pins_every_node(lab_outputs: tuple[dict[str, Any], set[str]]) -> None:
    outputs, secret_names = lab_outputs
    assert "mattermostDsn" in secret_names, "the mock must carry a secret output, as a real stack does"
    monitor, producer, error = run_consumer(outputs, secret_names)
    assert not error, error
    [read] = producer.reads
    assert read.resource_id == PRODUCER and read.inputs["name"] == PRODUCER
    exports = _plain(monitor.exports)
    assert exports["trustedCaPem"] == outputs["caCertPem"]
    assert set(exports["nodePins"]) == set(outputs["nodes"]) == {"mm1", "mm2", "mm3"}
    for name, pin in exports["nodePins"].items():
        assert pin == {
            "address": outputs["nodes"][name]["address"],
            "certFingerprintSha256": outputs["nodes"][name]["certFingerprintSha256"],
        }
    dsn = outputs["mattermostDsn"]
    assert dsn and dsn not in repr(monitor.exports), "the consumer never re-exports the producer's secrets"


def test_consumer_refuses_a_leaf_certificate_as_its_ca(lab_outputs: tuple[dict[str, Any], set[str]]) -> None:
    """An output that changed shape must stop the consumer, not widen what it trusts."""
    outputs, secret_names = lab_outputs
    leaf = dict(outputs)
    leaf["caCertPem"] = _leaf_pem()  # a valid PEM certificate, but not a CA
    _, _, error = run_consumer(leaf, secret_names)
    assert "not a CA certificate" in error, error


def test_consumer_refuses_a_malformed_fingerprint(lab_outputs: tuple[dict[str, Any], set[str]]) -> None:
    outputs, secret_names = lab_outputs
    bad = dict(outputs)
    bad["nodes"] = {**outputs["nodes"], "mm2": {**outputs["nodes"]["mm2"], "certFingerprintSha256": "AB:CD"}}
    _, _, error = run_consumer(bad, secret_names)
    assert "nodes.mm2.certFingerprintSha256 is not a SHA-256 fingerprint" in error, error


def _leaf_pem() -> str:
    return self_signed(["mm1"])[0]


def test_example_is_a_project_of_its_own() -> None:
    import yaml

    project = yaml.safe_load((CONSUMER_DIR / "Pulumi.yaml").read_text())
    assert project["name"] != "mattermost-transport-encryption"
    assert project["runtime"]["name"] == "python"
    assert project["config"]["producer"]["type"] == "string" and "default" not in project["config"]["producer"]
    assert Path(CONSUMER_DIR / "__main__.py").is_file()
