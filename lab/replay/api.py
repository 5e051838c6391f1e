"""The replay engine's library API: evaluate, up, destroy, outputs.

Owns wiring a run together: project and config, old state, engine, runner, program, state
file. `evaluate` is what tests use (a preview by default: no SSH, no state written);
`up`/`destroy` are what the CLI runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.replay import state as state_file
from lab.replay.engine import Engine, StepCallback
from lab.replay.model import Evaluation, ReplayError
from lab.replay.project import Project, Secret, load_config, load_project, secret_keys
from lab.replay.runners import CommandRunner, SshRunner
from lab.replay.runtime import run_program
from lab.replay.state import State


def default_state_path(project_dir: str | Path, stack: str) -> Path:
    return Path(project_dir) / ".lab" / "state" / f"{stack}.json"


def _clock(now: datetime | Callable[[], datetime] | None) -> Callable[[], datetime] | None:
    if now is None or callable(now):
        return now
    return lambda: now


def _old_state(project: Project, stack: str, state: State | str | Path | None) -> State:
    if isinstance(state, State):
        old = state
    elif state is None:
        old = State()
    else:
        old = state_file.load(Path(state))
    if old.project and old.project != project.name:
        raise ReplayError(f"state belongs to project {old.project!r}, not {project.name!r}")
    if old.stack and old.stack != stack:
        raise ReplayError(f"state belongs to stack {old.stack!r}, not {stack!r}")
    old.project, old.stack = project.name, stack
    return old


def _evaluation(project: Project, stack: str, preview: bool, engine: Engine, runner: Any) -> Evaluation:
    return Evaluation(
        project=project.name,
        stack=stack,
        preview=preview,
        resources=list(engine.resources),
        outputs=dict(engine.stack_outputs),
        secret_outputs=set(engine.stack_secret_outputs),
        steps=list(engine.steps),
        ssh_connections=getattr(runner, "connections", 0),
        ssh_sessions=getattr(runner, "sessions", 0),
    )


def run(
    project_dir: str | Path = ".",
    stack: str = "lab",
    *,
    preview: bool,
    config: dict[str, Any] | None = None,
    state: State | str | Path | None = None,
    save_to: str | Path | None = None,
    runner: CommandRunner | None = None,
    parallel: int | None = None,
    now: datetime | Callable[[], datetime] | None = None,
    show_secrets: bool = False,
    continue_on_error: bool = False,
    on_step: StepCallback | None = None,
) -> Evaluation:
    """Run the program once against `state`; the engine executes steps unless `preview`.

    `parallel` defaults to the Pulumi CLI's default (`engine.default_parallel`: 4 x CPUs).

    `save_to` writes the resulting state there (checkpoints during the run, final at the end).
    Returns the evaluation with `.state` set to the resulting state; a program error is in
    `.program_error` (nothing after it is deleted, as with `pulumi up`).
    """
    started = time.monotonic()
    project = load_project(project_dir)
    values = load_config(project, stack, config)
    old = _old_state(project, stack, state)
    if runner is None and not preview:
        runner = SshRunner()
    target = Path(save_to) if save_to is not None and not preview else None
    engine = Engine(
        old=old,
        preview=preview,
        runner=runner,
        parallel=parallel,
        now=_clock(now),
        show_secrets=show_secrets,
        continue_on_error=continue_on_error,
        on_step=on_step,
        checkpoint=(lambda s: state_file.save(target, s)) if target else None,
        config_secrets=[str(v) for v in (config or {}).values() if isinstance(v, Secret)],
    )
    try:
        error = run_program(project, stack, values, engine, preview, secret_keys(project, config))
    except KeyboardInterrupt:
        if target:
            state_file.save(target, engine.snapshot(program_ok=False))
        raise
    new_state = engine.finish(program_ok=not error)
    if target:
        state_file.save(target, new_state)
    evaluation = _evaluation(project, stack, preview, engine, runner)
    evaluation.program_error = engine.ctx.redact(error)
    evaluation.state = new_state
    evaluation.duration = time.monotonic() - started
    return evaluation


def evaluate(
    project_dir: str | Path = ".",
    stack: str = "lab",
    config: dict[str, Any] | None = None,
    state: State | str | Path | None = None,
    preview: bool = True,
    *,
    now: datetime | Callable[[], datetime] | None = None,
    runner: CommandRunner | None = None,
    parallel: int | None = None,
    raise_on_error: bool = True,
) -> Evaluation:
    """Evaluate the program and return the captured graph.

    A preview by default: nothing runs over SSH and no state file is written; keys,
    certificates and passwords are generated for real so every rendered value is known.
    `config` entries override the stack file's (keys without a namespace get the project's).
    `state` (a State or a path) is the previous run, for diff tests. Raises ReplayError if the
    program fails (duplicate URN, config error, exception) unless `raise_on_error=False`.
    """
    evaluation = run(
        project_dir, stack, preview=preview, config=config, state=state, runner=runner, parallel=parallel, now=now
    )
    if raise_on_error and evaluation.program_error:
        raise ReplayError(evaluation.program_error)
    return evaluation


def up(
    project_dir: str | Path = ".",
    stack: str = "lab",
    state_path: str | Path | None = None,
    **kwargs: Any,
) -> Evaluation:
    """`pulumi up`: run the program, execute the steps, save the state file."""
    path = Path(state_path) if state_path else default_state_path(project_dir, stack)
    return run(project_dir, stack, preview=False, state=path, save_to=path, **kwargs)


def preview(
    project_dir: str | Path = ".",
    stack: str = "lab",
    state_path: str | Path | None = None,
    **kwargs: Any,
) -> Evaluation:
    """`pulumi preview` against the state file (nothing executed, nothing written)."""
    path = Path(state_path) if state_path else default_state_path(project_dir, stack)
    return run(project_dir, stack, preview=True, state=path, **kwargs)


def destroy(
    project_dir: str | Path = ".",
    stack: str = "lab",
    state_path: str | Path | None = None,
    *,
    runner: CommandRunner | None = None,
    parallel: int | None = None,
    show_secrets: bool = False,
    on_step: StepCallback | None = None,
    preview_only: bool = False,
) -> Evaluation:
    """`pulumi destroy`: delete everything in the state, dependents first (the program is not run)."""
    started = time.monotonic()
    project = load_project(project_dir)
    path = Path(state_path) if state_path else default_state_path(project_dir, stack)
    old = _old_state(project, stack, path)
    if runner is None and not preview_only:
        runner = SshRunner()
    engine = Engine(
        old=old, preview=preview_only, runner=runner, parallel=parallel, show_secrets=show_secrets, on_step=on_step
    )
    new_state = engine.destroy()
    if not preview_only:
        state_file.save(path, new_state)
    evaluation = _evaluation(project, stack, preview_only, engine, runner)
    evaluation.state = new_state
    evaluation.duration = time.monotonic() - started
    return evaluation


def outputs(project_dir: str | Path = ".", stack: str = "lab", state_path: str | Path | None = None) -> State:
    """The stack outputs stored by the last `up` (the state; see `.outputs`/`.secret_outputs`)."""
    path = Path(state_path) if state_path else default_state_path(project_dir, stack)
    if not path.exists():
        raise ReplayError(f"no state file at {path}: run `python -m lab.replay up` first")
    return state_file.load(path)
