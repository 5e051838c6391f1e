"""Fixtures that evaluate the REAL program (`__main__.py`) with the replay engine (lab.replay).

Owns:
- `replay`: `replay(config=None, stack="lab", state=None, now=None) -> lab.replay.Evaluation`, a
  preview (no SSH, nothing written; keys, certificates and passwords are real, so rendered
  content is known). `config` overrides the stack file (keys without a namespace get the
  project's). Without `state`, results are cached per (stack, config, now) for the session, so
  many tests can inspect one evaluation cheaply: treat them as read-only. With `state` (a
  `lab.replay.State`, e.g. `earlier.state`) it is a diff against that earlier run.
- `replay_inventory`: a synthetic lab inventory (the format `python -m lab.hosts up` writes:
  addresses from host names, host keys, an SSH key file, database passwords) in a temp dir.
- `replay_lab_config`: the config override that points the lab stack at that inventory, so
  the committed `stacks/Pulumi.lab.yaml` evaluates without a running lab.
- `lab`: the committed `stacks/Pulumi.lab.yaml` evaluated with `replay_lab_config`; read-only.
- `prod`: the committed `stacks/Pulumi.prod.yaml` evaluated once (its SSH key and the site's
  current database password given as config); read-only.

The component tests that need no whole program run on Pulumi's mock runtime directly
(tests/helpers/pulumi_mocks.py); the helpers these fixtures build on are in
tests/helpers/program.py.

See `lab.replay.model.Evaluation` for `.resources`, `.get(name)`, `.by_type(t)`,
`.outputs`/`.secret_outputs`, `.any_command_contains(text)`; each `Resource` has `urn`,
`parent_urn`, `dependencies`, `property_dependencies`, `options`, `inputs`, `secret_inputs`,
`outputs`, `secret_outputs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lab.replay import Evaluation, Secret, State, evaluate
from tests.helpers.certs import ssh_host_key, ssh_private_key
from tests.helpers.program import PROJECT_DIR, evaluate_prod

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

Replay = Callable[..., Evaluation]


@pytest.fixture(scope="session")
def replay_project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def replay(replay_project_dir: Path) -> Replay:
    cache: dict[str, Evaluation] = {}

    def run(
        config: dict[str, Any] | None = None,
        stack: str = "lab",
        state: State | None = None,
        now: datetime | None = None,
    ) -> Evaluation:
        if state is not None:
            return evaluate(replay_project_dir, stack, config=config, state=state, now=now)
        key = json.dumps([stack, config, now.isoformat() if now else None], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = evaluate(replay_project_dir, stack, config=config, now=now)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def lab(replay: Replay, replay_lab_config: dict[str, Any]) -> Evaluation:
    return replay(replay_lab_config)


@pytest.fixture(scope="session")
def prod() -> Evaluation:
    # the site's current database password from config: without it the DSN is only known once
    # the first node's current DSN has been read (apply time), so a first preview cannot show it
    return evaluate_prod(dbPassword=Secret("prod-site-Pw-1"))


@pytest.fixture(scope="session")
def replay_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("inventory")
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


@pytest.fixture(scope="session")
def replay_lab_config(replay_inventory: Path) -> dict[str, Any]:
    # the site's current database password given as config (its other source, the first node's
    # DSN read at apply time, is unknown in a preview; tests/program/test_database.py covers it)
    password = json.loads(replay_inventory.read_text())["databases"]["postgres"]["password"]
    return {"inventoryFile": str(replay_inventory), "dbPassword": Secret(password)}
