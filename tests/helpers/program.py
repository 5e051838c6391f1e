"""The whole program (`__main__.py`) on Pulumi's mock runtime, for the program tests that look at
the complete graph of a stack: `run_stack(stack, config)` -> `Program`, the registrations the
SDK sent (tests/helpers/pulumi_mocks.py RecordingMonitor) as plain values with their secret paths.

The stack's config is read as the CLI hands it to a program (Pulumi.yaml defaults, then
stacks/Pulumi.<stack>.yaml, then `config`; a `Secret` value is set secret): lab.replay.project
owns that reading, nothing of the replay engine runs. Also owns the synthetic lab inventory
(`write_inventory`, `lab_config`), the prod stack's inputs (`prod_config`), the transitive
dependency walk (`deps`) and reading a managed-files command's payload (`files_in`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.remote_files import stdin_contents
from lab.replay.project import Secret, load_config, load_project, secret_keys
from tests.helpers.certs import ssh_host_key, ssh_private_key
from tests.helpers.pulumi_mocks import COMMAND, SECRET_SIG, SIG_KEY, CertMocks, RecordingMonitor, Registration, run_main
from tests.helpers.stack_config import SSH_KEY

__all__ = ["Secret"]

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


def _strip(value: Any, path: str, secrets: set[str]) -> Any:
    """A wire value without secret markers; the paths that carried one go to `secrets`."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            secrets.add(path)
            return _strip(value.get("value"), path, secrets)
        return {k: _strip(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def _under(path: str, paths: Iterable[str]) -> bool:
    return any(path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in paths)


@dataclass
class Options:
    additional_secret_outputs: list[str]
    delete_before_replace: bool
    replace_on_changes: list[str]
    ignore_changes: list[str]
    retain_on_delete: bool
    protect: bool


@dataclass
class Resource:
    """One RegisterResource request as the engine receives it, inputs as plain values."""

    urn: str
    type: str
    name: str
    parent_urn: str | None
    custom: bool
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    options: Options
    inputs: dict[str, Any]
    secret_inputs: set[str]
    """Paths of inputs that arrived secret (`connection`, `stdin`, ...)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """What the mocks answered (tests/helpers/pulumi_mocks.py CertMocks)."""
    registration: Registration | None = None

    @property
    def secret_outputs(self) -> set[str]:
        """The outputs the engine is told to keep secret (the provider SDKs' own list included)."""
        return set(self.options.additional_secret_outputs)

    def all_dependencies(self) -> set[str]:
        """Every URN this resource must outlive: dependencies, property dependencies, parent."""
        found = set(self.dependencies)
        for urns in self.property_dependencies.values():
            found.update(urns)
        if self.parent_urn:
            found.add(self.parent_urn)
        return found

    def command_texts(self) -> list[str]:
        """create/update/delete strings of a remote.Command (empty for other types)."""
        if self.type != COMMAND:
            return []
        return [v for k in ("create", "update", "delete") if isinstance(v := self.inputs.get(k), str)]

    def is_secret_input(self, path: str) -> bool:
        """True if `path` or an enclosing value was sent secret."""
        return _under(path, self.secret_inputs)

    def is_secret_output(self, path: str) -> bool:
        return _under(path, self.secret_outputs)


@dataclass
class Program:
    """What one run of `__main__.py` told the engine: resources in registration order, the
    stack's exports, and the error it stopped with ('' if none)."""

    resources: list[Resource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    program_error: str
    monitor: RecordingMonitor

    def by_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, name: str, type_: str | None = None) -> Resource:
        """The one resource with this name (and type); KeyError if none or several."""
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}" + (f" of type {type_}" if type_ else ""))
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        (found,) = [r for r in self.resources if r.urn == urn]
        return found

    def descendants(self, parent: Resource) -> list[Resource]:
        out: list[Resource] = []
        todo = [parent.urn]
        while todo:
            urn = todo.pop()
            kids = [r for r in self.resources if r.parent_urn == urn]
            out += kids
            todo += [r.urn for r in kids]
        return out

    def commands(self) -> list[Resource]:
        return self.by_type(COMMAND)

    def any_command_contains(self, text: str) -> bool:
        return any(text in t for r in self.commands() for t in r.command_texts())


def _resource(reg: Registration, state: dict[str, Any]) -> Resource:
    secrets: set[str] = set()
    inputs = _strip(reg.inputs, "", secrets)
    return Resource(
        urn=reg.urn,
        type=reg.type,
        name=reg.name,
        parent_urn=reg.parent or None,
        custom=reg.custom,
        dependencies=reg.dependencies,
        property_dependencies=reg.property_dependencies,
        options=Options(
            additional_secret_outputs=reg.additional_secret_outputs,
            delete_before_replace=reg.delete_before_replace,
            replace_on_changes=reg.replace_on_changes,
            ignore_changes=reg.ignore_changes,
            retain_on_delete=reg.retain_on_delete,
            protect=reg.protect,
        ),
        inputs=inputs,
        secret_inputs=secrets,
        outputs=state,
        registration=reg,
    )


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
    secret_outputs: set[str] = set()
    outputs: dict[str, Any] = {}
    for urn, values in monitor.outputs.items():
        if f"::{STACK_TYPE}::" in urn:
            outputs = _strip(values, "", secret_outputs)
    return Program(resources, outputs, {p.split(".")[0] for p in secret_outputs}, error, monitor)


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
