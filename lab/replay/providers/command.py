"""pulumi-command `remote.Command` emulation.

Owns the provider's semantics: outputs are the inputs plus `stdout`/`stderr` (one trailing
newline trimmed); create runs `create`; an update runs `update` if set, else `create` (so a
change of only `delete` re-runs `create`); only `triggers` forces a replacement (the SDK adds
`replaceOnChanges: triggers[*]`, other replaceOnChanges are applied by the engine); delete runs
the OLD `delete` with the OLD connection, stdin and environment. A non-zero exit fails the
step with the provider's error text, word for word: the exit status, the WHOLE command text
Go-quoted and ALL of stdout and stderr as received (pulumi-command v1.2.1
`provider/pkg/provider/remote/commandOutputs.go`, `CommandOutputs.run`:
`fmt.Errorf("%w: running %q:\n%s", err, cmd, stdouterrbuf.String())`). The provider does this
whether the command text, its stdin or its stdout/stderr are secret, and whatever `logging`
says; the engine then masks only secret config values (see `props.Redactor`).

Also `remote.CopyToRemote` for file assets (see `CopyToRemote`).
"""

from __future__ import annotations

import secrets
import unicodedata
from typing import Any

from lab.replay import props
from lab.replay.model import Resource
from lab.replay.providers import Context, Provider, StepFailed
from lab.replay.runners import RunnerError


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote): printable runes kept, the rest escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif _go_printable(ch):
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            # invalid UTF-8 decoded with surrogateescape/replace: Go prints the U+FFFD it sees
            out.append("\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_printable(ch: str) -> bool:
    """unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def _trim(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


class Command(Provider):
    type = "command:remote:Command"
    computed = ("stdout", "stderr")

    def replace_keys(self, changed: set[str]) -> set[str]:
        return changed & {"triggers"}

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        resource_id = f"{res.name}{secrets.token_hex(4)}"
        if ctx.preview:
            return resource_id, {**inputs, "stdout": props.UNKNOWN, "stderr": props.UNKNOWN}
        if not inputs.get("create"):
            return resource_id, {**inputs, "stdout": "", "stderr": ""}
        stdout, stderr = self._run(ctx, res, inputs, "create", previous=None)
        return resource_id, {**inputs, "stdout": stdout, "stderr": stderr}

    def update(self, ctx: Context, old: Resource, res: Resource, inputs: dict[str, Any]) -> dict[str, Any]:
        previous = (str(old.outputs.get("stdout") or ""), str(old.outputs.get("stderr") or ""))
        outputs = {**inputs, "stdout": previous[0], "stderr": previous[1]}
        field = "update" if inputs.get("update") else "create" if inputs.get("create") else None
        if ctx.preview or field is None:
            return outputs
        stdout, stderr = self._run(ctx, res, inputs, field, previous=previous)
        return {**inputs, "stdout": stdout, "stderr": stderr}

    def delete(self, ctx: Context, old: Resource) -> None:
        state = {**old.inputs, **old.outputs}
        if not state.get("delete") or ctx.preview:
            return
        previous = (str(state.get("stdout") or ""), str(state.get("stderr") or ""))
        self._run(ctx, old, state, "delete", previous=previous)

    def _run(
        self, ctx: Context, res: Resource, values: dict[str, Any], field: str, previous: tuple[str, str] | None
    ) -> tuple[str, str]:
        if ctx.runner is None:
            raise StepFailed("no command runner configured")
        command = str(values[field])
        if values.get("addPreviousOutputInEnv") is False:
            previous = None
        environment = {str(k): str(v) for k, v in (values.get("environment") or {}).items()}
        stdin = values.get("stdin")
        try:
            result = ctx.runner.run(
                dict(values.get("connection") or {}),
                command,
                stdin=str(stdin) if stdin is not None else None,
                environment=environment or None,
                previous=previous,
            )
        except RunnerError as exc:
            raise StepFailed(str(exc)) from None
        if not result.ok:
            # commandOutputs.go `run`: the whole command and all output, secret or not.
            raise StepFailed(f"{result.describe_exit()}: running {go_quote(command)}:\n{result.combined}")
        return _trim(result.stdout), _trim(result.stderr)


class CopyToRemote(Provider):
    """pulumi-command `remote.CopyToRemote` (provider/pkg/provider/remote/copyController.go):
    outputs are exactly the inputs (`CopyToRemoteOutputs{input}`); a preview copies nothing;
    create copies; an update copies only when the source's hash or `remotePath` changed
    (`needCopy`); only `triggers` replaces (the SDK's `replaceOnChanges: triggers[*]`); delete
    does nothing (no `Delete` method: a copied file stays on the host). Only file assets: the
    program copies nothing else (archives and text assets fail the step here)."""

    type = "command:remote:CopyToRemote"

    def replace_keys(self, changed: set[str]) -> set[str]:
        return changed & {"triggers"}

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if ctx.preview:
            return "", dict(inputs)
        self._copy(ctx, inputs)
        return secrets.token_hex(8), dict(inputs)

    def update(self, ctx: Context, old: Resource, res: Resource, inputs: dict[str, Any]) -> dict[str, Any]:
        if ctx.preview:
            return dict(inputs)
        olds = old.inputs
        if _hash(inputs) != _hash(olds) or inputs.get("remotePath") != olds.get("remotePath"):
            self._copy(ctx, inputs)
        return dict(inputs)

    def _copy(self, ctx: Context, inputs: dict[str, Any]) -> None:
        if ctx.runner is None:
            raise StepFailed("no command runner configured")
        source = inputs.get("source")
        if not isinstance(source, dict) or not props.is_asset(source) or not source.get("path"):
            raise StepFailed("the replay engine copies only file assets (pulumi.FileAsset)")
        try:
            ctx.runner.copy(dict(inputs.get("connection") or {}), str(source["path"]), str(inputs["remotePath"]))
        except RunnerError as exc:
            raise StepFailed(str(exc)) from None


def _hash(inputs: dict[str, Any]) -> Any:
    source = inputs.get("source")
    return source.get("hash") if isinstance(source, dict) else None


PROVIDERS: list[Provider] = [Command(), CopyToRemote()]
