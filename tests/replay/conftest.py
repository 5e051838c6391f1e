"""Fixtures that evaluate the REAL program (`__main__.py`) with the replay engine (lab.replay), for
the tests that need the engine's own semantics: a preview over an earlier state, step operations,
aliases, an upgrade from an earlier commit.

Owns:
- `replay`: `replay(config=None, stack="lab", state=None, now=None) -> lab.replay.Evaluation`, a
  preview (no SSH, nothing written; keys, certificates and passwords are real). Without `state`,
  results are cached per (stack, config, now) for the session: treat them as read-only. With
  `state` (a `lab.replay.State`, e.g. `earlier.state`) it is a diff against that earlier run.
- `inventory`, `lab_config` (tests/helpers/program.py, shared with tests/program): the synthetic
  lab inventory and the override that points the lab stacks at it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from lab.replay import Evaluation, State, evaluate
from tests.helpers import program as shared
from tests.helpers.program import PROJECT_DIR, cached

Replay = Callable[..., Evaluation]

inventory = shared.inventory
lab_config = shared.lab_config
"""The shared fixtures (tests/helpers/program.py)."""


@pytest.fixture(scope="session")
def replay() -> Replay:
    def fresh(config: dict[str, Any] | None, stack: str, now: datetime | None) -> Evaluation:
        return evaluate(PROJECT_DIR, stack, config=config, now=now)

    once = cached(fresh)

    def run(
        config: dict[str, Any] | None = None,
        stack: str = "lab",
        state: State | None = None,
        now: datetime | None = None,
    ) -> Evaluation:
        if state is not None:
            return evaluate(PROJECT_DIR, stack, config=config, state=state, now=now)
        return once(config, stack, now)

    return run
