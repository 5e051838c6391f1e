"""What the replay CLI prints: one line per step, then a summary like `pulumi up`'s.

Owns formatting only. Step errors are printed as the provider returned them (the whole command
text and all output), with only secret config values masked by the engine, as `pulumi up` prints
them; stack outputs marked secret print as [secret] unless --show-secrets.
"""

from __future__ import annotations

import difflib
import json
import sys
import threading
from typing import Any, TextIO

from lab.replay import props
from lab.replay.model import Evaluation, Step

_PRINT_LOCK = threading.Lock()

DONE = {
    "create": "created",
    "update": "updated",
    "replace": "replaced",
    "delete": "deleted",
    "delete-replaced": "deleted (replaced)",
    "same": "unchanged",
}
PLANNED = {
    "create": "create",
    "update": "update",
    "replace": "replace",
    "delete": "delete",
    "delete-replaced": "delete (replaced)",
    "same": "unchanged",
}


def text_diff(step: Step) -> str:
    """The changed plain string inputs as a unified diff (secret ones are never in `texts`); a
    secret changed input says so."""
    out = []
    for key in step.changed:
        if key not in step.texts:
            continue
        old, new = step.texts[key]
        lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{key} (before)", f"{key} (after)", n=3, lineterm="")
        out += ["      " + line for line in lines]
    return "\n".join(out)


def step_line(step: Step, diff: bool = False) -> str:
    if step.result == "planned":
        status = PLANNED.get(step.op, step.op)
    elif step.result == "ok":
        status = DONE.get(step.op, step.op)
    else:
        status = f"{step.op} {step.result.upper()}"
    detail = f" [diff: {', '.join(step.changed)}]" if step.changed and step.op in ("update", "replace") else ""
    timing = f" ({step.duration:.1f}s)" if step.result in ("ok", "failed") and step.op != "same" else ""
    line = f" {step.symbol:>2} {step.type:<46} {step.name:<40} {status}{detail}{timing}"
    if diff and step.texts:
        shown = text_diff(step)
        if shown:
            line += "\n" + shown
    if step.error:
        line += "\n" + "\n".join("      " + part for part in step.error.splitlines())
    return line


class StepPrinter:
    """on_step callback: prints each step as it finishes (unchanged ones only if verbose)."""

    def __init__(self, out: TextIO = sys.stdout, verbose: bool = False, diff: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.diff = diff

    def __call__(self, step: Step) -> None:
        if step.op == "same" and not self.verbose and step.result in ("ok", "planned"):
            return
        with _PRINT_LOCK:
            print(step_line(step, self.diff), file=self.out, flush=True)


def render_value(value: Any, secret: bool, show_secrets: bool) -> str:
    if secret and not show_secrets:
        return "[secret]"
    if props.contains_unknown(value):
        return "[unknown]" if value == props.UNKNOWN else json.dumps(value).replace(json.dumps(props.UNKNOWN), "?")
    return value if isinstance(value, str) else json.dumps(value)


def outputs_block(outputs: dict[str, Any], secret: set[str], show_secrets: bool) -> str:
    if not outputs:
        return ""
    lines = ["Outputs:"]
    for name in sorted(outputs):
        shown = render_value(outputs[name], name in secret, show_secrets)
        shown = shown.replace("\n", "\n" + " " * (6 + len(name)))
        lines.append(f"    {name}: {shown}")
    return "\n".join(lines)


def counts_line(evaluation: Evaluation) -> str:
    c = evaluation.counts()
    failed = sum(1 for s in evaluation.steps if s.result == "failed")
    skipped = sum(1 for s in evaluation.steps if s.result == "skipped")
    if evaluation.preview:
        parts = [
            f"{c.get('create', 0)} to create",
            f"{c.get('update', 0)} to update",
            f"{c.get('replace', 0)} to replace",
            f"{c.get('delete', 0)} to delete",
            f"{c.get('same', 0)} unchanged",
        ]
    else:
        parts = [
            f"{c.get('create', 0)} created",
            f"{c.get('update', 0)} updated",
            f"{c.get('replace', 0)} replaced",
            f"{c.get('delete', 0)} deleted",
            f"{c.get('same', 0)} unchanged",
        ]
    if failed:
        parts.append(f"{failed} failed")
    if skipped:
        parts.append(f"{skipped} skipped")
    return "Resources: " + ", ".join(parts)


def summary(evaluation: Evaluation, show_secrets: bool = False) -> str:
    lines = []
    if evaluation.program_error:
        lines += ["", "error: the program failed:", evaluation.program_error]
    failed = evaluation.failed_steps
    if failed:
        lines += ["", f"error: {len(failed)} step(s) failed:"]
        lines += [step_line(s) for s in failed]
    block = outputs_block(evaluation.outputs, evaluation.secret_outputs, show_secrets)
    if block:
        lines += ["", block]
    lines += ["", counts_line(evaluation)]
    lines.append(
        f"Duration: {evaluation.duration:.1f}s; SSH: {evaluation.ssh_sessions} sessions on "
        f"{evaluation.ssh_connections} connections"
    )
    return "\n".join(lines)
