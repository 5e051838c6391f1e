"""Fixtures that run the REAL program (`__main__.py`) on Pulumi's mock runtime
(tests/helpers/program.py `run_stack`; the providers answered by real keys and certificates, no
SSH, nothing written; not a preview, so every output is known).

Owns:
- `program`: `program(config=None, stack="lab", stdout=None) -> tests.helpers.program.Program`.
  `config` overrides the stack file (keys without a namespace get the project's); `stdout` the
  commands' answers by resource name (default tests/helpers/program.py STDOUT). Results are cached per
  (stack, config) for the session, so many tests can inspect one run cheaply: treat them as
  read-only.
- `inventory`: a synthetic lab inventory (the format `python -m lab.hosts up` writes) in a temp dir.
- `lab_config`: the config override that points the lab stacks at that inventory, so the
  committed `stacks/Pulumi.lab*.yaml` run without a running lab.
- `lab`: the committed `stacks/Pulumi.lab.yaml` run with `lab_config`; read-only.
- `prod`: the committed `stacks/Pulumi.prod.yaml` run once (its SSH key and the site's current
  database password given as config); read-only.

A `Program` has `.resources`, `.get(name)`, `.by_type(t)`, `.by_urn(urn)`, `.outputs`,
`.secret_outputs`, `.program_error`, `.any_command_contains(text)`; each resource `urn`,
`parent_urn`, `dependencies`, `property_dependencies`, `options`, `inputs` (plain),
`secret_inputs` (paths), `outputs` (the mocks' answer). What needs the engine itself (a preview
over an earlier state, step operations, aliases, upgrades from an old commit) is tested with the
replay engine in tests/replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.program import Program, Secret, lab_config_for, prod_config, run_stack, write_inventory

Run = Callable[..., Program]


@pytest.fixture(scope="session")
def program() -> Run:
    cache: dict[str, Program] = {}

    def run(config: dict[str, Any] | None = None, stack: str = "lab", stdout: dict[str, str] | None = None) -> Program:
        key = json.dumps([stack, config, stdout], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = run_stack(stack, config, stdout)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inventory(tmp_path_factory.mktemp("inventory"))


@pytest.fixture(scope="session")
def lab_config(inventory: Path) -> dict[str, Any]:
    return lab_config_for(inventory)


@pytest.fixture(scope="session")
def lab(program: Run, lab_config: dict[str, Any]) -> Program:
    return program(lab_config)


@pytest.fixture(scope="session")
def prod(program: Run) -> Program:
    # the site's current database password from config: without it the DSN is only known once
    # the first node's current DSN has been read (apply time)
    return program(prod_config(dbPassword=Secret("prod-site-Pw-1")), stack="prod")
