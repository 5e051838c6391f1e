"""Fixtures that evaluate the REAL program (`__main__.py`) with the replay engine (lab.replay), for
the tests that need the engine's own semantics: a preview over an earlier state, step operations,
aliases, an upgrade from an earlier commit.

Owns:
- `replay`: `replay(config=None, stack="lab", state=None, now=None) -> lab.replay.Evaluation`, a
  preview (no SSH, nothing written; keys, certificates and passwords are real). Without `state`,
  results are cached per (stack, config, now) for the session: treat them as read-only. With
  `state` (a `lab.replay.State`, e.g. `earlier.state`) it is a diff against that earlier run.
- `replay_inventory`, `replay_lab_config`: the synthetic lab inventory and the override that points
  the lab stacks at it (tests/helpers/program.py `write_inventory`, `lab_config_for`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lab.replay import Evaluation, State, evaluate
from tests.helpers.program import PROJECT_DIR, lab_config_for, write_inventory

Replay = Callable[..., Evaluation]


@pytest.fixture(scope="session")
def replay() -> Replay:
    cache: dict[str, Evaluation] = {}

    def run(
        config: dict[str, Any] | None = None,
        stack: str = "lab",
        state: State | None = None,
        now: datetime | None = None,
    ) -> Evaluation:
        if state is not None:
            return evaluate(PROJECT_DIR, stack, config=config, state=state, now=now)
        key = json.dumps([stack, config, now.isoformat() if now else None], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = evaluate(PROJECT_DIR, stack, config=config, now=now)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def replay_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inventory(tmp_path_factory.mktemp("inventory"))


@pytest.fixture(scope="session")
def replay_lab_config(replay_inventory: Path) -> dict[str, Any]:
    return lab_config_for(replay_inventory)
