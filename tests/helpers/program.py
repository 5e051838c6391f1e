"""The whole program (`__main__.py`) on Pulumi's mock runtime, for the program tests that look at
the complete graph of a stack: `run_stack(stack, config)` -> `Program`, the registrations the
SDK sent (tests/helpers/pulumi_mocks.py RecordingMonitor, CertMocks) as plain values with their
secret paths.

Of lab.replay only what is not the engine: the stack's config read as the CLI hands it to a
program (lab/replay/project.py: Pulumi.yaml defaults, then stacks/Pulumi.<stack>.yaml, then
`config`; a `Secret` value is set secret) and the result types (lab/replay/model.py), so a test
asks a mock run and a replay evaluation the same questions. Also owns the synthetic lab inventory
and the fixtures over it (`inventory`, `lab_config`: tests/program and tests/replay import them
into their conftest.py), the prod stack's inputs (`prod_config`), what the hosts answer the
program's reads (`STDOUT`), the transitive dependency walk (`deps`) and reading a managed-files
command's payload (`files_in`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import pytest
import yaml
from google.protobuf import struct_pb2

from components.remote_files_render import stdin_contents
from lab.replay.model import Evaluation, Options, Resource
from lab.replay.project import Secret, load_config, load_project, secret_keys
from lab.replay.props import ASSET_SIG, SIG_KEY, decode_struct
from tests.helpers.certs import ssh_host_key, ssh_private_key
from tests.helpers.pulumi_mocks import CertMocks, RecordingMonitor, Registration, run_main
from tests.helpers.stack_config import SSH_KEY

__all__ = ["Secret"]

T = TypeVar("T")
PROJECT_DIR = Path(__file__).resolve().parents[2]
KEY = SSH_KEY
"""The SSH private key a prod run is given (the committed stack keeps it out)."""
STACK_TYPE = "pulumi:pulumi:Stack"

# Addresses derive from the host NAME (design contract).
LAB_ADDRESSES = {
    "proxy": 10,
    "mariadb": 20,
    "postgres": 21,
    "pgreplica": 22,
    "plugin": 30,
    "gitlab": 31,
    "mm1": 101,
    "mm2": 102,
    "mm3": 103,
}


def write_inventory(directory: Path) -> Path:
    """A synthetic lab inventory in `directory` (the format `python -m lab.hosts up` writes:
    addresses from host names, host keys, an SSH key file, database passwords)."""
    key_file = directory / "id_ed25519"
    key_file.write_text(ssh_private_key())
    key_file.chmod(0o600)
    inventory = {
        "subnet": "10.251.0.0/24",
        "gateway": "10.251.0.1",
        "bridge": "mmtls-br0",
        "sshUser": "root",
        "sshPrivateKeyFile": str(key_file),
        "hosts": {
            name: {"address": f"10.251.0.{last}", "port": 22, "hostKey": ssh_host_key()}
            for name, last in LAB_ADDRESSES.items()
        },
        "databases": {
            "mysql": {"host": "mariadb", "name": "mattermost", "user": "mmuser", "password": "lab-mysql-Pw-1"},
            "postgres": {"host": "postgres", "name": "mattermost", "user": "mmuser", "password": "lab-pg-Pw-1"},
        },
    }
    path = directory / "inventory.json"
    path.write_text(json.dumps(inventory, indent=1))
    path.chmod(0o600)
    return path


def lab_config_for(inventory: Path) -> dict[str, Any]:
    """The config override that points the lab stacks at `inventory`, so the committed
    stacks/Pulumi.lab*.yaml run without a running lab. The site's current database password is
    given as config: its other source, the first node's DSN read at apply time, is unknown before."""
    password = json.loads(inventory.read_text())["databases"]["postgres"]["password"]
    return {"inventoryFile": str(inventory), "dbPassword": Secret(password)}


def cached(run: Callable[..., T]) -> Callable[..., T]:
    """`run`, its result kept per arguments (compared as JSON) for the session: many tests inspect
    one run cheaply, and treat it as read-only."""
    results: dict[str, T] = {}

    def once(*args: Any, **kwargs: Any) -> T:
        key = json.dumps([args, kwargs], sort_keys=True, default=str)
        if key not in results:
            results[key] = run(*args, **kwargs)
        return results[key]

    return once


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic lab inventory in a temp dir (`write_inventory`)."""
    return write_inventory(tmp_path_factory.mktemp("inventory"))


@pytest.fixture(scope="session")
def lab_config(inventory: Path) -> dict[str, Any]:
    """The config override that points the lab stacks at `inventory` (`lab_config_for`)."""
    return lab_config_for(inventory)


def prod_config(**overrides: Any) -> dict[str, Any]:
    """Config for stacks/Pulumi.prod.yaml: the SSH key it needs, plus `overrides`."""
    return {"sshPrivateKey": Secret(KEY), **overrides}


def prod_nodes() -> list[dict[str, Any]]:
    """The nodes the committed prod stack lists."""
    data = yaml.safe_load((PROJECT_DIR / "stacks" / "Pulumi.prod.yaml").read_text())
    return data["config"]["mattermost-transport-encryption:nodes"]


def accounts_output(*accounts: str, skip: bool = False) -> str:
    """What database_accounts.render_accounts_read prints on the database host (`user@host` each)."""
    rows = [f"{u.encode().hex().upper()}\t{h.encode().hex().upper()}" for u, h in (a.split("@") for a in accounts)]
    return "\n".join([f"skip_name_resolve {int(skip)}", *rows]) + "\n"


def current_dsn_output(dsn: str) -> str:
    """What database_render.render_read_current_dsn prints on the first node when only its
    config.json holds the site's DataSource (the running server's environment and the
    EnvironmentFile empty)."""
    config_json = json.dumps({"SqlSettings": {"DataSource": dsn}})
    return "\n".join(base64.b64encode(x.encode()).decode() for x in ("", "", config_json)) + "\n"


STDOUT = {
    "database-accounts": accounts_output("mmuser@%"),
    "database-current-password": current_dsn_output("mmuser:site-Pw-1@tcp(10.10.250.148:3306)/mattermost"),
}
"""What the hosts answer the reads the program decides on: a MySQL server whose one `mmuser`
account is `mmuser@%`, and a first node whose config.json holds a MySQL DataSource (the prod
stack's, read when no dbPassword is set). A PostgreSQL stack without dbPassword needs its own
DataSource here; an empty live-site capture is a site that does not exist yet."""


# ---------------------------------------------------------------- one run of the program


@dataclass
class Program(Evaluation):
    """What one run of `__main__.py` on the mock runtime told the engine, in the replay's result
    types (lab/replay/model.py: the same questions are asked of both): resources in
    registration order with plain inputs and their secret paths, `secret_outputs` the outputs
    the engine is told to keep secret, `outputs` the mocks' answers; the stack's exports; the
    error the program stopped with ('' if none). No steps and no state: nothing ran an engine."""

    monitor: RecordingMonitor | None = None


def _resource(reg: Registration, state: dict[str, Any]) -> Resource:
    inputs, secrets = _plain(reg.inputs)
    return Resource(
        urn=reg.urn,
        type=reg.type,
        name=reg.name,
        parent_urn=reg.parent or None,
        custom=reg.custom,
        dependencies=reg.dependencies,
        property_dependencies=reg.property_dependencies,
        options=Options(additional_secret_outputs=reg.additional_secret_outputs, **reg.options),
        inputs=inputs,
        secret_inputs=secrets,
        outputs=_plain(state)[0],
        # the engine keeps an output secret when the input it echoes was (and the mocks echo inputs)
        secret_outputs=set(reg.additional_secret_outputs) | {p.split(".")[0].split("[")[0] for p in secrets},
        id=f"{reg.name}-id" if reg.custom else None,
        status="create",
    )


def _plain(wire: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """A wire struct as plain values and the paths that were secret (lab/replay/props.py reads
    the engine's protobuf the same way)."""
    struct = struct_pb2.Struct()
    struct.update(_wire_assets(wire))
    return decode_struct(struct)


def _wire_assets(value: Any) -> Any:
    """The mocks hand over the SDK's own objects; a `FileAsset` goes on the wire as its signature
    and path (pulumi sdk/python/lib/pulumi/runtime/rpc.py `serialize_property`)."""
    if isinstance(value, pulumi.FileAsset):
        return {SIG_KEY: ASSET_SIG, "path": str(value.path)}
    if isinstance(value, dict):
        return {k: _wire_assets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_assets(v) for v in value]
    return value


def stack_values(stack: str, config: dict[str, Any] | None = None) -> dict[str, str]:
    """The config map the program sees for `stack` with `config`: `{"<namespace>:<key>": "<string>"}`."""
    return load_config(load_project(PROJECT_DIR), stack, config)


def run_stack(stack: str = "lab", config: dict[str, Any] | None = None, stdout: dict[str, str] | None = None) -> Program:
    """`__main__.py` with stacks/Pulumi.<stack>.yaml and `config` on Pulumi's mock runtime (not a
    preview: every output is known), the providers answered by CertMocks (real keys and PEMs)
    and the commands' stdout by `stdout` (default STDOUT)."""
    project = load_project(PROJECT_DIR)
    monitor = RecordingMonitor(CertMocks(STDOUT if stdout is None else stdout))
    error = run_main(
        PROJECT_DIR,
        monitor,
        project=project.name,
        stack=stack,
        config=load_config(project, stack, config),
        secret_keys=secret_keys(project, config),
    )
    resources = [
        _resource(reg, dict(getattr(monitor.resources.get(reg.urn), "state", None) or {}))
        for reg in monitor.registrations
        if reg.type != STACK_TYPE
    ]
    exports = [values for urn, values in monitor.outputs.items() if f"::{STACK_TYPE}::" in urn]
    outputs, secret_outputs = _plain(exports[0] if exports else {})
    return Program(
        project=project.name,
        stack=stack,
        preview=False,
        resources=resources,
        outputs=outputs,
        secret_outputs={p.split(".")[0] for p in secret_outputs},
        program_error=error,
        monitor=monitor,
    )


CLUSTER_TYPE = "mattermost-tls:cluster:Cluster"
CLUSTER_NODES = ("mm1", "mm2", "mm3")


def cluster_config(lab: dict[str, Any], *, mm4_host_key: str | None = None, **cluster: Any) -> dict[str, Any]:
    """The lab stack's three nodes with the cluster on (`cluster` its settings), and with
    `mm4_host_key` a fourth node mm4 pinned to it."""
    nodes: list[dict[str, Any]] = [{"name": n} for n in CLUSTER_NODES]
    if mm4_host_key:
        nodes.append({"name": "mm4", "address": "10.251.0.104", "ssh": {"hostKey": mm4_host_key}})
    return {**lab, "nodes": nodes, "cluster": {"enabled": True, **cluster}}


def cluster_resources(ev: Any) -> list[Any]:
    """Everything under the one Cluster component of `ev` (a Program or a replay Evaluation)."""
    (component,) = ev.by_type(CLUSTER_TYPE)
    return ev.descendants(component)


def deps(ev: Any, name: str) -> set[str]:
    """Names of everything `name` waits for (transitively); `ev` a Program or a replay Evaluation."""
    seen: set[str] = set()
    todo = [ev.get(name)]
    while todo:
        r = todo.pop()
        for urn in r.all_dependencies():
            if f"::{STACK_TYPE}::" in urn:
                continue
            d = ev.by_urn(urn)
            if d.name not in seen:
                seen.add(d.name)
                todo.append(d)
    return seen


def files_in(res: Any) -> list[str]:
    """The file contents a managed_files command carries in stdin, in order."""
    return stdin_contents(res.inputs["stdin"])
