"""Engine semantics: which step each registered resource gets, and running the steps.

Owns the rules of FACTS.md "Pulumi engine and providers": unchanged inputs do nothing and
keep the stored outputs; a diff is an in-place update unless the provider (or
`replaceOnChanges`) says replace; replacement is create-before-delete (the old delete runs at
the end of the run, with the old inputs) unless `deleteBeforeReplace`; resources no longer
registered, old replaced versions and `destroy` are deleted dependents-first; a failed step
marks its resource failed, skips what depends on it and (like `pulumi up` without
--continue-on-error) every step not yet started, and keeps the state of what succeeded; a
program that fails gets no deletes at all (pulumi/pulumi `pkg/resource/deploy/
deployment_executor.go`, `Execute`: a source error bails before `performPostSteps`).
What it prints is masked like the engine's own output: secret config values only (see
`props.Redactor`). Default parallelism is the CLI's (`default_parallel`).

`register` is called by the monitor from the SDK's threads: the SDK registers a resource only
after its dependencies finished, so doing the step inside `register` gives dependency order,
and independent resources run concurrently (bounded by `parallel`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from lab.replay import props
from lab.replay.model import ReplayError, Resource, Step
from lab.replay.providers import Context, Provider, StepFailed, lookup
from lab.replay.runners import CommandRunner
from lab.replay.state import State

StepCallback = Callable[[Step], None]


def default_parallel() -> int:
    """`pulumi up`'s default --parallel: PULUMI_PARALLEL if set > 0, else 4 x GOMAXPROCS.

    pulumi/pulumi `pkg/cmd/pulumi/operations/up.go`, `defaultParallel`; Go's GOMAXPROCS
    defaults to the CPUs this process may run on (its affinity mask), or the GOMAXPROCS
    variable when set. (Go 1.25 also lowers it to a cgroup CPU quota; not modelled here.)
    """
    try:
        wanted = int(os.environ.get("PULUMI_PARALLEL", "0"))
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    try:
        procs = int(os.environ.get("GOMAXPROCS", "0"))
    except ValueError:
        procs = 0
    if procs <= 0:
        procs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 4 * procs


def apply_ignore_changes(ignore: list[str], old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New inputs with ignored top-level properties taken from the old inputs."""
    out = dict(new)
    for path in ignore:
        key = props.top_key(path)
        if key in old:
            out[key] = old[key]
        else:
            out.pop(key, None)
    return out


def replace_on_changes(patterns: list[str], changed: set[str]) -> set[str]:
    if "*" in patterns:
        return set(changed)
    return {props.top_key(p) for p in patterns} & changed


class Engine:
    def __init__(
        self,
        *,
        old: State,
        preview: bool,
        runner: CommandRunner | None,
        parallel: int | None = None,
        now: Callable[[], datetime] | None = None,
        show_secrets: bool = False,
        continue_on_error: bool = False,
        on_step: StepCallback | None = None,
        checkpoint: Callable[[State], None] | None = None,
        config_secrets: list[str] | None = None,
    ) -> None:
        self.old = old
        self.old_by_urn = old.by_urn()
        self.preview = preview
        self.continue_on_error = continue_on_error
        self.ctx = Context(
            preview=preview, now=now or (lambda: datetime.now(UTC)), runner=runner, show_secrets=show_secrets
        )
        self.parallel = max(1, parallel if parallel is not None else default_parallel())
        self.on_step = on_step
        self.checkpoint = checkpoint
        self.resources: list[Resource] = []
        self.steps: list[Step] = []
        self.pending_deletes: list[Resource] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_secret_outputs: set[str] = set()
        self._by_urn: dict[str, Resource] = {}
        self._aliased: dict[str, str] = {}
        """Old URN -> the new URN that claimed it through an alias (step_generator.go `aliased`)."""
        self._failed: set[str] = set()
        self._any_failure = False
        self._cancelled = False
        self._old_deleted: set[str] = set()
        self._deleted: set[int] = set()
        self._lock = threading.RLock()
        self._slots = threading.Semaphore(self.parallel)
        self._last_checkpoint = 0.0
        self._checkpoint_lock = threading.Lock()
        # events.go `makeEventEmitter`: the decrypted secure config values, nothing else.
        self.ctx.redact.add_all(config_secrets or [])

    # ---- registration (called from the SDK's threads) -------------------------------------

    def register(self, res: Resource) -> Resource:
        with self._lock:
            if res.urn in self._by_urn:
                raise ReplayError(f"Duplicate resource URN '{res.urn}'; try giving it a unique name")
            if res.urn in self._aliased:
                raise ReplayError(f"Duplicate resource alias '{res.urn}' applied to resource with URN '{self._aliased[res.urn]}'")
            self._by_urn[res.urn] = res
            self.resources.append(res)
            res_old = self._claim_old(res)
        if not res.custom:
            res.status = "same" if res_old is not None else "create"
            if res_old is not None:
                res.outputs = res_old.outputs
            self._stamp(res, res_old, res.status)
            self._record(Step(res.status, res.urn, res.type, res.name, result=self._done_result()))
            return res
        provider = self._provider(res.type)
        if provider is None:
            self._fail(
                res,
                Step("create", res.urn, res.type, res.name),
                f"the replay engine does not emulate resource type {res.type!r}",
            )
            return res
        self._step(provider, res)
        return res

    def _claim_old(self, res: Resource) -> Resource | None:
        """The old record of `res`: by its URN first, then by each alias; one found through an
        alias is this resource's from now on and is not deleted as removed
        (step_generator.go `getOldResource`). Called with the lock held."""
        if (old := self.old_by_urn.get(res.urn)) is not None:
            return old
        for alias in res.aliases:
            if (old := self.old_by_urn.get(alias)) is None:
                continue
            if alias in self._by_urn or alias in self._aliased:
                claimed = self._aliased.get(alias, alias)
                raise ReplayError(f"Duplicate resource alias '{alias}' applied to resource with URN '{res.urn}' ({claimed} has it)")
            self._aliased[alias] = res.urn
            return old
        return None

    def alias_of(self, urn: str) -> str | None:
        """The old URN a registered resource took over through an alias (step_generator.go `aliases`)."""
        with self._lock:
            return next((old for old, new in self._aliased.items() if new == urn), None)

    def _old(self, urn: str) -> Resource | None:
        """The old record of the registered resource `urn` (its own, or the one its alias claimed)."""
        with self._lock:
            return self.old_by_urn.get(urn) or self.old_by_urn.get(self.alias_of(urn) or "")

    def set_outputs(self, urn: str, outputs: dict[str, Any], secret_paths: set[str], stack_urn: str) -> None:
        """RegisterResourceOutputs: stack exports, or a component's registered outputs."""
        with self._lock:
            if urn == stack_urn:
                self.stack_outputs, self.stack_secret_outputs = outputs, secret_paths
            elif urn in self._by_urn:
                self._by_urn[urn].outputs = outputs
                self._by_urn[urn].secret_outputs = secret_paths

    def cancel(self) -> None:
        """No new steps (Ctrl-C): steps already running finish, their results are kept."""
        with self._lock:
            self._cancelled = True

    def _provider(self, type_: str) -> Provider | None:
        return lookup(type_)

    def _plan(self, provider: Provider, res: Resource, old: Resource | None) -> tuple[str, list[str]]:
        inputs = provider.check(res.inputs)
        if old is None:
            res.inputs = inputs
            return "create", []
        old_inputs = provider.check(old.inputs)
        inputs = apply_ignore_changes(res.options.ignore_changes, old_inputs, inputs)
        res.inputs = inputs
        # assets compare by hash alone (pulumi sdk/go/common/resource/properties.go
        # `PropertyValue.DeepEquals` -> asset.go `Asset.Equals`)
        changed = {
            k for k in set(old_inputs) | set(inputs)
            if old_inputs.get(k) != inputs.get(k)
            and props.by_asset_hash(old_inputs.get(k)) != props.by_asset_hash(inputs.get(k))
        }
        op = "same"
        if changed:
            forced = provider.replace_keys(changed) | replace_on_changes(res.options.replace_on_changes, changed)
            op = "replace" if forced else "update"
        if op != "replace" and provider.renewal_due(old, inputs, self.ctx.now()):
            return "replace", ["ready_for_renewal"]
        return op, sorted(changed)

    def _step(self, provider: Provider, res: Resource) -> None:
        old = self._old(res.urn)
        op, changed = self._plan(provider, res, old)
        res.secret_outputs = (
            set(provider.secret_outputs) | set(res.options.additional_secret_outputs) | set(res.secret_inputs)
        )
        step = Step(op, res.urn, res.type, res.name, changed=changed)
        if old is not None and op in ("update", "replace"):
            step.texts = {
                k: (old.inputs[k], res.inputs[k])
                for k in changed
                if isinstance(old.inputs.get(k), str) and isinstance(res.inputs.get(k), str)
                and not old.is_secret_input(k) and not res.is_secret_input(k)
            }
        if op == "same" and old is not None:
            res.id, res.outputs, res.status = old.id, old.outputs, "same"
            self._stamp(res, old, "same")
            res.secret_outputs |= old.secret_outputs
            step.result = self._done_result()
            self._record(step)
            return
        blocked = sorted(res.all_dependencies() & self._failed)
        if blocked or (props.contains_unknown(res.inputs) and not self.preview):
            reason = f"dependency failed: {blocked[0].rsplit('::', 1)[-1]}" if blocked else "an input is unknown"
            self._skip(res, step, reason)
            return
        with self._slots:
            # Checked once a slot is ours: a step that failed while we waited stops this one too.
            with self._lock:
                stop = self._cancelled or (self._any_failure and not self.continue_on_error)
            if stop:
                self._skip(res, step, "not started: an earlier step failed" if self._any_failure else "cancelled")
                return
            started = time.monotonic()
            try:
                resource_id, outputs = self._execute(provider, res, old, op)
            except StepFailed as exc:
                step.duration = time.monotonic() - started
                self._fail(res, step, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a provider bug must fail the step, not hang the program
                step.duration = time.monotonic() - started
                self._fail(res, step, f"internal error in the replay engine: {exc!r}")
                return
        res.id, res.outputs, res.status = resource_id, outputs, op
        self._stamp(res, old, op)
        res.secret_outputs = {p for p in res.secret_outputs if props.top_key(p) in outputs}
        step.duration = time.monotonic() - started
        step.result = self._done_result()
        self._record(step)

    def _execute(self, provider: Provider, res: Resource, old: Resource | None, op: str) -> tuple[str, dict[str, Any]]:
        if props.contains_unknown(res.inputs):
            # Preview only: values that depend on a step not run yet are unknown.
            computed = {k: props.UNKNOWN for k in provider.computed}
            if op == "update" and old is not None:
                return old.id or "", {**old.outputs, **res.inputs}
            return "", {**res.inputs, **computed}
        if op == "create" or old is None:
            return provider.create(self.ctx, res, res.inputs)
        if op == "update":
            return old.id or "", provider.update(self.ctx, old, res, res.inputs)
        # replace
        if res.options.delete_before_replace:
            if not self.preview:
                self._delete_one(provider, old)
            with self._lock:
                self._old_deleted.add(res.urn)
            return provider.create(self.ctx, res, res.inputs)
        resource_id, outputs = provider.create(self.ctx, res, res.inputs)
        if not self.preview:
            with self._lock:
                self.pending_deletes.append(old)
        return resource_id, outputs

    def _delete_one(self, provider: Provider, old: Resource) -> None:
        if old.options.protect:
            raise StepFailed(f"resource {old.urn} cannot be deleted because it is protected")
        if old.options.retain_on_delete:
            return
        provider.delete(self.ctx, old)

    def _skip(self, res: Resource, step: Step, reason: str) -> None:
        res.status = step.result = "skipped"
        step.error = reason
        with self._lock:
            self._failed.add(res.urn)
        self._record(step)

    def _fail(self, res: Resource, step: Step, message: str) -> None:
        res.status = "failed"
        step.result = "failed"
        step.error = self.ctx.redact(message)
        with self._lock:
            self._failed.add(res.urn)
            self._any_failure = True
        self._record(step)

    def _done_result(self) -> str:
        return "planned" if self.preview else "ok"

    def _record_target(self, target: tuple[Resource, str], result: str, error: str) -> None:
        """A delete target's step that did not run its delete (skipped, or part of a cycle)."""
        record, op = target
        self._record(Step(op, record.urn, record.type, record.name, result=result, error=error))

    def _record(self, step: Step) -> None:
        with self._lock:
            self.steps.append(step)
        if self.on_step:
            self.on_step(step)
        if self.checkpoint and not self.preview:
            with self._checkpoint_lock:
                if time.monotonic() - self._last_checkpoint >= 1.0:
                    self._last_checkpoint = time.monotonic()
                    self.checkpoint(self.snapshot(program_ok=False))

    # ---- after the program --------------------------------------------------------------

    def finish(self, program_ok: bool) -> State:
        """Delete what is gone (removed resources, replaced old versions), then the new state."""
        registered = set(self._by_urn) | set(self._aliased)
        removed = [r for r in self.old.resources if r.urn not in registered]
        replaced = list(self.old.pending_deletes) + self.pending_deletes
        with self._lock:
            stop = self._cancelled or (self._any_failure and not self.continue_on_error)
        targets = [(r, "delete-replaced") for r in replaced] + [(r, "delete") for r in removed]
        # On a program error the engine bails before it generates any delete
        # (deployment_executor.go `Execute`): no delete steps, not even skipped ones, so the
        # program's error (a config error above all) is the first thing a user reads.
        if program_ok and not stop:
            self._delete_all(targets)
        elif program_ok:
            for record, op in targets:
                self._record(
                    Step(op, record.urn, record.type, record.name, result="skipped", error="an earlier step failed")
                )
        return self.snapshot(program_ok)

    def destroy(self) -> State:
        targets = [(r, "delete-replaced") for r in self.old.pending_deletes]
        targets += [(r, "delete") for r in self.old.resources]
        self._delete_all(targets)
        state = self.snapshot(program_ok=False)
        if not state.resources:
            state.outputs, state.secret_outputs = {}, set()
        return state

    def _delete_all(self, targets: list[tuple[Resource, str]]) -> None:
        """Dependents before their dependencies (children before parents), in parallel."""
        # must_wait[i] = targets that must be deleted before target i (they depend on it).
        must_wait: dict[int, set[int]] = {i: set() for i in range(len(targets))}
        for i, (dependent, _) in enumerate(targets):
            deps = dependent.all_dependencies()
            for j, (dependency, _) in enumerate(targets):
                if i != j and dependency.urn in deps and dependency.urn != dependent.urn:
                    must_wait[j].add(i)
        pending = set(must_wait)
        running: dict[Future[bool], int] = {}
        blocked: set[int] = set()
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="replay-delete") as pool:
            while pending or running:
                for i in sorted(pending):
                    if must_wait[i] & blocked:
                        pending.discard(i)
                        blocked.add(i)
                        self._record_target(targets[i], "skipped", "a resource that depends on it could not be deleted")
                    elif not must_wait[i] & (pending | set(running.values())):
                        pending.discard(i)
                        running[pool.submit(self._delete_target, *targets[i])] = i
                if not running:
                    # Nothing can start: only a dependency cycle does that; report, do not spin.
                    for i in sorted(pending):
                        self._record_target(targets[i], "failed", "dependency cycle among resources to delete")
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    if not future.result():
                        blocked.add(i)

    def _delete_target(self, record: Resource, op: str) -> bool:
        step = Step(op, record.urn, record.type, record.name)
        if self.preview:
            step.result = "planned"
            self._record(step)
            return True
        started = time.monotonic()
        try:
            if record.custom:
                provider = self._provider(record.type)
                if provider is None:
                    raise StepFailed(f"the replay engine does not emulate resource type {record.type!r}")
                with self._slots:
                    self._delete_one(provider, record)
        except Exception as exc:  # noqa: BLE001 - StepFailed, or a bug that must not stop other deletes
            step.duration = time.monotonic() - started
            step.result = "failed"
            step.error = self.ctx.redact(str(exc) if isinstance(exc, StepFailed) else f"internal error: {exc!r}")
            with self._lock:
                self._any_failure = True
            self._record(step)
            return False
        step.duration = time.monotonic() - started
        with self._lock:
            self._deleted.add(id(record))
        self._record(step)
        return True

    def _stamp(self, res: Resource, old: Resource | None, op: str) -> None:
        """The record's timestamps (pulumi pkg/resource/deploy/step.go): a create (or the new
        half of a replace) sets both, an update `modified`, a same keeps both."""
        now = self.ctx.now()
        now = now.astimezone(UTC) if now.tzinfo else now
        # Go writes a time.Time as RFC 3339 with its nanoseconds (a real clock's nearly always
        # have 9 digits; this clock has microseconds)
        stamp = f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond * 1000:09d}Z"
        if op in ("same", "update") and old is not None:
            res.created, res.modified = old.created, old.modified
        if op in ("create", "replace") or (op == "update" and old is None):
            res.created = stamp
        if op != "same":
            res.modified = stamp

    def snapshot(self, program_ok: bool = True) -> State:
        """The state as of now: new records for done steps, old ones for everything else."""
        with self._lock:
            state = State(project=self.old.project, stack=self.old.stack)
            for res in self.resources:
                if res.status in ("same", "create", "update", "replace"):
                    state.resources.append(res)
                elif res.urn not in self._old_deleted:
                    # failed, skipped, or (in a checkpoint) still running: the old record stands.
                    if (old := self._old(res.urn)) is not None:
                        state.resources.append(old)
            registered = set(self._by_urn) | set(self._aliased)
            state.resources += [r for r in self.old.resources if r.urn not in registered and id(r) not in self._deleted]
            state.pending_deletes = [
                r for r in self.old.pending_deletes + self.pending_deletes if id(r) not in self._deleted
            ]
            if program_ok:
                # An export that depends on a failed step is unknown: keep its last known value.
                state.outputs, state.secret_outputs = {}, set()
                for name, value in self.stack_outputs.items():
                    if not props.contains_unknown(value):
                        state.outputs[name] = value
                        if name in self.stack_secret_outputs:
                            state.secret_outputs.add(name)
                    elif name in self.old.outputs:
                        state.outputs[name] = self.old.outputs[name]
                        if name in self.old.secret_outputs:
                            state.secret_outputs.add(name)
            else:
                state.outputs, state.secret_outputs = self.old.outputs, set(self.old.secret_outputs)
            return state
