"""Fixtures that run the REAL program (`__main__.py`) on Pulumi's mock runtime
(tests/helpers/program.py `run_stack`; the providers answered by real keys and certificates, no
SSH, nothing written; not a preview, so every output is known).

Owns:
- `program`: `program(config=None, stack="lab", stdout=None) -> tests.helpers.program.Program`.
  `config` overrides the stack file (keys without a namespace get the project's); `stdout` the
  commands' answers by resource name (default tests/helpers/program.py STDOUT). Results are cached per
  (stack, config) for the session, so many tests can inspect one run cheaply: treat them as
  read-only.
- `inventory`, `lab_config` (tests/helpers/program.py, shared with tests/replay): a synthetic lab
  inventory (the format `python -m lab.hosts up` writes) in a temp dir, and the config override
  that points the lab stacks at it, so the committed `stacks/Pulumi.lab*.yaml` run without a lab.
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

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import program as shared
from tests.helpers.program import Program, Secret, cached, prod_config, run_stack

Run = Callable[..., Program]

inventory = shared.inventory
lab_config = shared.lab_config
"""The shared fixtures (tests/helpers/program.py)."""


@pytest.fixture(scope="session")
def program() -> Run:
    def run(config: dict[str, Any] | None = None, stack: str = "lab", stdout: dict[str, str] | None = None) -> Program:
        return run_stack(stack, config, stdout)

    return cached(run)


@pytest.fixture(scope="session")
def lab(program: Run, lab_config: dict[str, Any]) -> Program:
    return program(lab_config)


@pytest.fixture(scope="session")
def prod(program: Run) -> Program:
    # the site's current database password from config: without it the DSN is only known once
    # the first node's current DSN has been read (apply time)
    return program(prod_config(dbPassword=Secret("prod-site-Pw-1")), stack="prod")
