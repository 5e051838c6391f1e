"""The host helper: per host, the upload and the install of components/scripts/mmtls-helper.sh.

Every other command of the program is a short call of this helper with a manifest on stdin
(components.remote_files), so no command text grows with the number or size of files, and the
helper's per-host lock keeps concurrent commands on one host from racing.

Why a shell file and not Python: the hosts are whatever Debian/Ubuntu servers run Mattermost,
NGINX or the database; python3 is not part of a minimal install there, while POSIX sh, coreutils,
awk and util-linux's flock are (Essential: yes or priority required).

Lifecycle:
- Per (address, port) two resources named by the host's stable identity, never a list position:
  `host-helper-<address>[-<port>]-upload`, a `remote.CopyToRemote` of the helper file (a
  `FileAsset`: the state holds its path and SHA-256, not its text), and `host-helper-<address>
  [-<port>]`, the `remote.Command` that installs the uploaded copy as root, created by the first
  command that needs the helper. Both wait for every preflight (`install_helpers_after`), but
  for a node host's upload: the node's preflight reads its check from that copy
  (`copy_for_check`; a preflight's script is 15 kB, stored twice per node as a command's
  stdin), so the copy in the login user's home is the one thing a host gets before every
  preflight passed. `host-helper-<address>[-<port>]-copy` (no create, a delete only) removes it
  on `destroy` when no install took it away (a refused run).
- Every other command on that host `depends_on` the install, so it is created first and deleted
  LAST (the engine deletes dependents first, replaced resources' deletes included).
- Its content changing is an in-place update of both (no triggers): the upload copies the new
  file (pulumi-command copies only when the asset's hash or the remote path changed), the install
  (its text names the new SHA-256) replaces the installed file atomically under the same
  interface path, and commands already stored in a state keep calling it. An incompatible
  interface ships as `helper-v2` next to `helper-v1`.
- Each host gets its own copy of the helper file: the helper and its library, then the entries
  of the host's own library, the non-secret texts its commands' inputs name instead of carrying
  them (components/remote_files_render.py HOST_ENTRIES: the cluster's peer tables, CA files,
  scripts with a host's values). The program writes the copy under `.host-helpers/` in the
  project (git-ignored) once every command of the program run is known, and the upload carries
  it as a `FileAsset`: a state holds its path and SHA-256 where a command's stdin is stored twice
  in full. A changed entry is a new copy: the upload and the install update (in place), before
  the commands that name it. The install's text names the copy's SHA-256.
- Its delete removes the helper only when nothing is left in the state directory (no backups,
  no ledger), so a helper deleted while something on the host still needs it stays. The upload
  has no delete (pulumi-command's CopyToRemote implements none): the install removes the
  uploaded copy as soon as it is installed, and its delete removes a copy left by a failed run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import remote

from components.config.schema import COPY_SUFFIX, UPLOAD_SUFFIX, helper_name
from components.host_helper_render import (
    UPLOAD_PATH,
    host_helper_text,
    install_command,
    remove_copy_command,
    uninstall_command,
)
from components.remote_files_render import host_entries

HOST_FILES = Path(__file__).resolve().parent.parent / ".host-helpers"
"""Where the program writes each host's copy of the helper file (git-ignored), per project and
stack: the engine hashes it when the upload is registered and the provider reads it when it
copies, both during the same `pulumi up`."""


def needs_sudo(connection: remote.ConnectionArgs) -> bool:
    """True when the SSH user is not root: every command then runs through `sudo -n`."""
    user = connection.user if connection.user is not None else "root"
    if not isinstance(user, str):
        raise TypeError("the SSH user must be a plain string to decide whether commands need sudo")
    return user != "root"


@dataclass
class _Host:
    name: str
    upload: remote.CopyToRemote
    text: pulumi.Output[str]
    """The host's copy of the helper file (its values only)."""
    early: bool
    """The upload waits for no preflight (`copy_for_check`)."""
    install: remote.Command | None = None
    """Created by the first command that needs the helper (`helper_for`)."""
    copy_removal: remote.Command | None = None
    """A node host's `<name>-copy` (`copy_for_check`)."""
    inputs: list[pulumi.Output[dict[str, str]]] = field(default_factory=list)
    """The host-library entries each command's input names (components/remote_files)."""
    sealed: bool = False
    """The copy of the helper file was rendered: a later command's entries would be missing."""


_helpers: dict[tuple[str, int], _Host] = {}
_helpers_run: list[object] = []


_after: list[pulumi.Input[pulumi.Resource]] = []
_opts: list[pulumi.ResourceOptions] = []


def _registry() -> dict[tuple[str, int], _Host]:
    # one program run per monitor: tests run the program many times in one process
    monitor = pulumi.runtime.settings.get_monitor()
    if not _helpers_run or _helpers_run[0] is not monitor:
        _helpers.clear()
        _after.clear()
        _opts.clear()
        _helpers_run[:] = [monitor]
    return _helpers


def install_helpers_after(
    resources: list[pulumi.Input[pulumi.Resource]], opts: pulumi.ResourceOptions | None = None
) -> None:
    """Every host helper created from now on in this program run waits for `resources`: the
    node preflights, so that nothing at all is installed on any host before every node passed
    (the preflights themselves run without the helper: remote_files.read_script, or from a node
    host's copy of it, which `copy_for_check` uploads first). `opts` (the Deployment's parent
    and alias) are given to each of them."""
    _registry()
    _after[:] = list(resources)
    _opts[:] = [opts] if opts else []


def helper_for(connection: remote.ConnectionArgs) -> remote.Command:
    """The host helper of `connection`'s host (created on first use)."""
    host = _host(connection)
    if host.install is None:
        sudo = needs_sudo(connection)
        text = host.text
        host.install = remote.Command(
            host.name,
            connection=connection,
            # the version (SHA-256) the install checks is in the text: readable in a preview's diff
            # no `update`: pulumi-command runs `create` for an update then (commandController.go `Command.Update`)
            # and the text is not stored twice more
            create=text.apply(lambda t: install_command(sudo, sha256=hashlib.sha256(t.encode()).hexdigest())),
            delete=uninstall_command(sudo),
            triggers=None,
            logging=remote.Logging.STDOUT_AND_STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions.merge(_helper_opts(), pulumi.ResourceOptions(depends_on=[host.upload])),
        )
    return host.install


@dataclass(frozen=True)
class CheckCopy:
    """What a check that reads the host's copy needs (`copy_for_check`)."""

    upload_name: str
    """The upload's resource name (for the check's error message)."""
    removal: remote.Command
    """`<helper>-copy`: the check waits for it (and so for the upload)."""


def copy_for_check(connection: remote.ConnectionArgs, opts: pulumi.ResourceOptions | None = None) -> CheckCopy:
    """For a read-only check that runs before any helper is installed and reads its text from
    the host's copy of the helper file (remote_files.read_check_from_copy: the node preflights):
    the host's upload, created now and so waiting for no preflight (`opts`: the parent and alias
    the helpers get), and `<name>-copy`, which waits for it and is returned for the check to
    wait for. That one runs nothing on `up` (no `create`: pulumi-command then does not connect,
    commandController.go `Create`); its delete removes the copy from the login user's home, so
    that a `destroy` after a refused run (no install ever took the copy away; a refused command
    is not kept in the state, which pulumi-command gives no partial state for) leaves nothing.
    A refused run keeps the copy: the next `up`, with the upload unchanged in its state, finds
    it there."""
    host = _host(connection, opts=opts, early=True)
    if host.copy_removal is None:
        host.copy_removal = remote.Command(
            host.name + COPY_SUFFIX,
            connection=connection,
            delete=remove_copy_command(),
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[host.upload])),
        )
    return CheckCopy(host.name + UPLOAD_SUFFIX, host.copy_removal)


def add_host_entries(
    connection: remote.ConnectionArgs, owner: str, stdin: pulumi.Output[Any], *, entries: bool = False
) -> None:
    """The entries of the host's own library that `stdin` (a command's helper input; `entries`:
    the entries themselves, ID -> text) names go into the host's copy of the helper file. Every
    command registers before the copy is rendered: the copy is rendered in an apply, and Pulumi
    runs applies only after the program's synchronous part, where every resource here is created."""
    host = _host(connection)
    if host.sealed:
        raise RuntimeError(
            f"{owner}: created after {host.name}'s copy of the helper file was written (inside an apply?): "
            "create every command of a host before the program's applies run"
        )
    # unsecret: a secret input is rendered without host entries (remote_files), so its entries are {}
    host.inputs.append(pulumi.Output.unsecret(stdin if entries else stdin.apply(host_entries)))


def _host_file(host: _Host) -> pulumi.Output[str]:
    host.sealed = True
    return pulumi.Output.all(*host.inputs).apply(lambda found: host_helper_text({k: v for d in found for k, v in d.items()}))


KEEP_SECONDS = 86400
"""A host's older copies are removed a day after they were written: long enough for any run
that registered one to have copied it."""


def _values_only(output: pulumi.Output[str]) -> pulumi.Output[str]:
    """`output` without the resources its value came from (the keys, certificates and the key
    list behind a host's entries): the upload and the install still wait for the value, and the
    order they need is their own `depends_on`; the engine would store each of those URNs twice
    more (dependencies and property dependencies) in both records, on every host. Known-ness and
    secrecy stay (pulumi sdk/python/lib/pulumi/output.py `Output.__init__`)."""
    # Tasks, not bare coroutines: a run that stops before the value exists never awaits the
    # last two, which Python then reports ("coroutine ... was never awaited"); the SDK schedules
    # its own the same way. The future is None while the value is unknown, as in every Output.
    value, known, secret = (asyncio.ensure_future(c) for c in (output.future(), output.is_known(), output.is_secret()))
    return pulumi.Output(set(), value, known, secret)  # type: ignore[arg-type]


def _write(name: str, text: str) -> str:
    """Write a host's copy (atomically; named by its SHA-256, so a run never reads another
    run's copy); its absolute path. Copies of the host older than KEEP_SECONDS go."""
    stack = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{pulumi.get_project()}.{pulumi.get_stack()}")
    directory = HOST_FILES / stack
    directory.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path = directory / f"{name}-{hashlib.sha256(data).hexdigest()[:16]}.sh"
    for old in directory.glob(f"{name}-" + "?" * 16 + ".sh"):
        try:
            if old != path and time.time() - old.stat().st_mtime > KEEP_SECONDS:
                old.unlink()
        except FileNotFoundError:
            pass
    if path.exists() and path.read_bytes() == data:
        os.utime(path)  # in use again: kept another day
    else:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return str(path)


def _helper_opts() -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        _opts[0] if _opts else None, pulumi.ResourceOptions(depends_on=list(_after)) if _after else None
    )


def _host(connection: remote.ConnectionArgs, opts: pulumi.ResourceOptions | None = None, early: bool = False) -> _Host:
    host, port = connection.host, connection.port if connection.port is not None else 22
    if not isinstance(host, str) or not isinstance(port, (int, float)):
        raise TypeError("host_helper needs a plain host address and port to identify the host")
    key = (host, int(port))
    helpers = _registry()
    if key in helpers:
        if early and not helpers[key].early:
            # its upload waits for the preflights: a check waiting for it would wait forever
            raise RuntimeError(f"{helpers[key].name}: a check that reads the host's copy is created after the host's helper")
        return helpers[key]
    name = helper_name(*key)
    # Rendered once the program's synchronous part (every command) is done: an apply's
    # callback runs only then (pulumi sdk/python/lib/pulumi/output.py `apply` schedules it).
    record: list[_Host] = []
    start: pulumi.Output[int] = pulumi.Output.from_input(0)
    text = _values_only(start.apply(lambda _: _host_file(record[0])))
    # The file as an asset: the state stores its path and SHA-256 (about 200 bytes) where a
    # command's stdin is stored twice in full (inputs, and outputs that embed them:
    # pulumi-command provider/pkg/provider/remote/command.go `CommandOutputs`). The absolute
    # path differs between checkouts, which is no diff: assets compare by hash alone
    # (pulumi sdk/go/common/resource/asset/asset.go `Asset.Equals`). A node host's (`early`:
    # its preflight reads from it) waits for no preflight; every other host's waits as its
    # install does.
    upload = remote.CopyToRemote(
        name + UPLOAD_SUFFIX,
        connection=connection,
        source=text.apply(lambda t: pulumi.FileAsset(_write(name, t))),
        remote_path=UPLOAD_PATH,
        opts=opts if early else _helper_opts(),
    )
    record.append(_Host(name, upload, text, early))
    helpers[key] = record[0]
    return helpers[key]
