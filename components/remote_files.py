"""The one way this program changes anything on a host.

Owns the commands that install files and marked blocks over SSH, back up every original once,
roll back on a failed validation or activation, and restore the originals on delete. The logic
lives in one host helper (components/scripts/mmtls-helper.sh, installed once per host by
components.host_helper, which every command here depends on); each command's text is a short
call of it, and what it installs travels on stdin as a readable manifest (per file: path, mode,
owner, size, SHA-256, then the content; the validate/activate/restore scripts), so no command
text grows with the files and a preview's diff names every file and script. Every component
builds its remote commands through `managed_files`, `managed_block` or `run_script`, so the
guarantees below hold everywhere:

- File content travels in `stdin`, never in command text, so secrets stay out of the engine's
  logs, the command text and error messages; a manifest holding a secret is secret as a whole.
- The helper holds a per-host lock for its whole run: commands on one host never race on the
  state directory or on the daemons their scripts restart.
- The first change of a path keeps the original under STATE_DIR/backup; `delete` puts it back
  byte for byte (or removes a file that did not exist, and the directories created for it).
- An owner ledger (STATE_DIR/owners) names the resource that installed each path. Under
  create-before-delete replacement the old resource's `delete` runs after the new `create` and
  finds another owner in the ledger, so it leaves the new files alone.
- Unchanged content (bytes, mode, owner, group) changes nothing and activates nothing: running
  a script twice is safe and cheap.
- A failed `validate` (e.g. `nginx -t`) or `activate` (e.g. restart and wait) puts the previous
  files back, re-activates them, and fails with the tool's own error text. A file that cannot be
  backed up or installed (a full or read-only disk, a file where a directory must be) fails the
  change naming the path, with the files this run already replaced put back: never half a set.
- A path the owner installed before but no longer lists (a moved TLS directory, a renamed site)
  gets its original back in the same change, so nothing it installed outlives it on the host
  (an old private key or an env file with the database password, say); delete sweeps the same way.

The manifests, the helper calls and the self-contained scripts are rendered by pure functions in
components/remote_files_render.py; this module turns them into remote commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import pulumi
from pulumi_command import remote

from components.host_helper import add_host_entries, copy_for_check, helper_for, needs_sudo
from components.host_helper_render import SUDO
from components.remote_files_render import (
    READ_COMMAND,
    FileSpec,
    check_block,
    check_specs,
    file_host_entries,
    render_block_manifest,
    render_call,
    render_copy_read_stdin,
    render_files_manifest,
    render_read_stdin,
    render_run_manifest,
    strict,
)

__all__ = ["HelperOptions", "ManagedFile", "managed_block", "managed_files", "read_script", "run_script"]


@dataclass(frozen=True)
class ManagedFile:
    """A file and its content (a plain string or an Output, possibly secret)."""

    spec: FileSpec
    content: pulumi.Input[str]
    host_library: bool = False
    """This file's content may go to the host's own library even where the command's other
    contents may not (HelperOptions.host_library): never fed by a command's output."""


def _command_opts(
    opts: pulumi.ResourceOptions | None, secret: bool, connection: remote.ConnectionArgs
) -> pulumi.ResourceOptions:
    extra = pulumi.ResourceOptions(
        additional_secret_outputs=["stdout", "stderr"] if secret else None,
        # created first and deleted last on its host (components.host_helper)
        depends_on=[helper_for(connection)],
    )
    return pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), extra)


def _logging(secret: bool) -> remote.Logging:
    return remote.Logging.NONE if secret else remote.Logging.STDOUT_AND_STDERR


def _stdin(manifest: pulumi.Output[str], secret: bool) -> pulumi.Output[str]:
    # a secret file keeps the whole manifest secret; a plain one stays readable in a preview
    return pulumi.Output.secret(manifest) if secret else manifest


def _rendered(
    connection: remote.ConnectionArgs,
    name: str,
    values: Sequence[pulumi.Input[Any]],
    eligible: Sequence[bool],
    render: Callable[[list[Any], list[bool]], str],
    entries: Callable[[list[int], list[Any]], dict[str, str]] | None = None,
) -> pulumi.Output[str]:
    """`render(values, plain)`, `plain[i]` true when value i is `eligible` for the host's library
    and not secret: only such a text may go to the host's copy of the helper file, which is
    neither secret in the state nor private on the host. What the input names there is
    registered with the host (components.host_helper.add_host_entries): the whole input when
    every value is eligible, else `entries(indexes, texts)` of the eligible values alone, so that
    the host's copy never waits for a value fed by a command's output (a cycle: every command
    waits for the helper)."""
    outputs = [pulumi.Output.from_input(v) for v in values]
    if not any(eligible):
        return pulumi.Output.all(*outputs).apply(lambda v: render(v, [False] * len(outputs)))
    # an awaitable is an Input (pulumi output.py `from_input`); only an eligible value is awaited
    flags: list[pulumi.Output[bool]] = [
        pulumi.Output.from_input(o.is_secret()) if e else pulumi.Output.from_input(True)  # type: ignore[arg-type]
        for o, e in zip(outputs, eligible, strict=True)
    ]
    manifest = pulumi.Output.all(pulumi.Output.all(*outputs), pulumi.Output.all(*flags)).apply(
        lambda a: render(a[0], [not s for s in a[1]])
    )
    if all(eligible):
        add_host_entries(connection, name, manifest)
    elif entries is not None:
        at = [i for i, e in enumerate(eligible) if e]

        def plain_entries(args: list[Any], at: list[int] = at) -> dict[str, str]:
            # args: the eligible values, then whether each is secret
            values, secret = args[: len(at)], args[len(at):]
            keep = [k for k, s in enumerate(secret) if not s]
            return entries([at[k] for k in keep], [values[k] for k in keep])

        plain = pulumi.Output.all(*[outputs[i] for i in at], *[flags[i] for i in at]).apply(plain_entries)
        add_host_entries(connection, name, plain, entries=True)
    return manifest


def _helper_command(
    name: str,
    kind: str,
    connection: remote.ConnectionArgs,
    manifest: pulumi.Output[str],
    secret: bool,
    opts: pulumi.ResourceOptions | None,
) -> remote.Command:
    """The command of managed_files/managed_block: `KIND-apply` on create and update,
    `KIND-restore` on delete, the manifest on stdin.

    No `update` text: pulumi-command runs `create` for an update that has none
    (provider/pkg/provider/remote/commandController.go `Command.Update`), and a state stores
    every text twice (inputs, and outputs that embed them: `CommandOutputs`)."""
    return remote.Command(
        name,
        connection=connection,
        create=render_call(f"{kind}-apply", name, sudo=needs_sudo(connection)),
        delete=render_call(f"{kind}-restore", name, sudo=needs_sudo(connection)),
        stdin=_stdin(manifest, secret),
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=_command_opts(opts, secret, connection),
    )


class HelperOptions(TypedDict, total=False):
    """What managed_files and managed_block take besides what they install (all optional)."""

    validate: str | None
    """Runs after a change, before activate (e.g. `nginx -t`); failing, the change is rolled back."""
    activate: str | None
    """Runs after a change (e.g. a reload); failing, the previous files are put back and re-activated."""
    restore_activate: str | None
    """Runs on delete, after the originals are back."""
    secret: bool
    """The content is secret: the whole manifest stays secret and the command logs nothing."""
    host_library: bool
    """Texts go to the host's own library when neither secret nor in the shipped one (see
    `_rendered`). Only where no content comes from a command's output: the host's copy of the
    helper file waits for every such input, and every command waits for the helper."""
    opts: pulumi.ResourceOptions | None


class _Hooks(TypedDict):
    validate: str | None
    activate: str | None
    restore_activate: str | None


def _hooks_of(name: str, options: HelperOptions) -> _Hooks:
    unknown = set(options) - set(HelperOptions.__annotations__)
    if unknown:  # **options accepts any keyword at run time; a misspelt hook must not vanish
        raise TypeError(f"{name}: unknown option(s) {sorted(unknown)}")
    return {
        "validate": options.get("validate"),
        "activate": options.get("activate"),
        "restore_activate": options.get("restore_activate"),
    }


def managed_files(
    name: str, *, connection: remote.ConnectionArgs, files: Sequence[ManagedFile], **options: Unpack[HelperOptions]
) -> remote.Command:
    """A remote command that owns `files` on one host (see the module docstring).

    `name` must be unique per host and stable: it is the owner written in the ledger.
    """
    specs = [f.spec for f in files]
    check_specs(name, specs)
    hooks = _hooks_of(name, options)
    secret = options.get("secret", False)
    whole = options.get("host_library", False)
    manifest = _rendered(
        connection,
        name,
        [f.content for f in files],
        [whole or f.host_library for f in files],
        # the hooks go to the host's library with the contents only when nothing is secret
        lambda contents, plain: render_files_manifest(
            name, specs, contents, host=True if whole and not secret and all(plain) else plain, **hooks
        ),
        lambda at, texts: file_host_entries([specs[i] for i in at], texts),
    )
    return _helper_command(name, "files", connection, manifest, secret, options.get("opts"))


def managed_block(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    path: str,
    content: pulumi.Input[str],
    comment: str = "#",
    position: str = "bottom",
    **options: Unpack[HelperOptions],
) -> remote.Command:
    """A remote command that owns one marked block inside an existing file."""
    check_block(path, comment, position)
    hooks = _hooks_of(name, options)
    secret = options.get("secret", False)
    manifest = _rendered(
        connection,
        name,
        [content],
        [options.get("host_library", False)],
        lambda c, plain: render_block_manifest(
            name, path, c[0], comment=comment, position=position, host=not secret and plain[0], **hooks
        ),
    )
    return _helper_command(name, "block", connection, manifest, secret, options.get("opts"))


def read_script(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    script: str | pulumi.Output[str],
    secret: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A read-only check that changes nothing on the host, so it needs neither the host helper
    nor its lock (and can run before anything, the helper included, is installed). The script
    travels on stdin, so the command text stays short whatever its size; a changed script runs
    again (an update runs create). No delete: there is nothing to undo. The script may be an
    Output (e.g. it names a certificate the stack creates)."""
    extra = pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"] if secret else None)
    stdin = (
        pulumi.Output.from_input(render_read_stdin(strict(script)))
        if isinstance(script, str)
        else script.apply(lambda s: render_read_stdin(strict(s)))
    )
    return remote.Command(
        name,
        connection=connection,
        create=(SUDO if needs_sudo(connection) else "") + READ_COMMAND,
        stdin=_stdin(stdin, secret),
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), extra),
    )


def read_check_from_copy(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    script: str,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A read-only check, as `read_script`, whose text travels as an entry of the host's own
    library in the host's copy of the helper file, which the state holds as a path and a hash
    (a node's preflight is 15 kB of shell, stored twice per node as stdin): the input holds the
    entry's ID, a SHA-256 prefix (remote_files_render.render_copy_read_stdin). The host's upload then
    comes before the check (host_helper.copy_for_check, whose `<helper>-copy` it waits for), and
    is the one thing a host gets before every preflight passed: a file in the login user's
    home, which the install takes away and `destroy` removes. Not for a secret script (the copy
    is readable by all on the host), nor one fed by another command's output (the upload would
    wait for it, and it for the checks)."""
    gate = copy_for_check(connection, opts)
    stdin, _ = render_copy_read_stdin(strict(script), sudo=needs_sudo(connection), resource=gate.upload_name)
    add_host_entries(connection, name, pulumi.Output.from_input(stdin))
    return remote.Command(
        name,
        connection=connection,
        # the stdin's own `sudo -n` runs the check as root (the copy is the login user's)
        create=READ_COMMAND,
        stdin=stdin,
        logging=_logging(False),
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), pulumi.ResourceOptions(depends_on=[gate.removal])),
    )


def run_script(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    create: str,
    delete: pulumi.Input[str] | None = None,
    update: str | None = None,
    stdin: pulumi.Input[str] | None = None,
    secret: bool = False,
    triggers: Sequence[pulumi.Input[object]] | None = None,
    host_library: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A one-off action (create/update/delete scripts, values already quoted by the caller;
    `delete` may be an Output, e.g. one that depends on what a capture found; `host_library`:
    see HelperOptions).

    The scripts travel in the manifest on stdin with the caller's `stdin` as their input; the
    command text is the helper call, which holds the host's lock while the script runs."""
    manifest = _rendered(
        connection,
        name,
        [stdin if stdin is not None else "", delete if delete is not None else ""],
        [host_library, host_library],
        lambda args, plain: render_run_manifest(
            name,
            create=strict(create),
            # the helper runs `create` when there is no update script
            update=strict(update) if update is not None and update != create else None,
            delete=strict(args[1]) if delete is not None else None,
            input=args[0] if stdin is not None else None,
            host=not secret and all(plain),
        ),
    )
    return remote.Command(
        name,
        connection=connection,
        create=render_call("run-create", name, sudo=needs_sudo(connection)),
        update=render_call("run-update", name, sudo=needs_sudo(connection)),
        delete=render_call("run-delete", name, sudo=needs_sudo(connection)) if delete is not None else None,
        stdin=_stdin(manifest, secret),
        triggers=list(triggers) if triggers is not None else None,
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=_command_opts(opts, secret, connection),
    )
