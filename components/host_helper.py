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
  [-<port>]`, the `remote.Command` that installs the uploaded copy as root. Both are created by
  the first command that needs the helper.
- Every other command on that host `depends_on` the install, so it is created first and deleted
  LAST (the engine deletes dependents first, replaced resources' deletes included).
- Its content changing is an in-place update of both (no triggers): the upload copies the new
  file (pulumi-command copies only when the asset's hash or the remote path changed), the install
  (its text names the new SHA-256) replaces the installed file atomically under the same
  interface path, and commands already stored in a state keep calling it. An incompatible
  interface ships as `helper-v2` next to `helper-v1`.
- Its delete removes the helper only when nothing is left in the state directory (no backups,
  no ledger), so a helper deleted while something on the host still needs it stays. The upload
  has no delete (pulumi-command's CopyToRemote implements none): the install removes the
  uploaded copy as soon as it is installed, and its delete removes a copy left by a failed run.
"""

from __future__ import annotations

import pulumi
from pulumi_command import remote

from components.config.schema import UPLOAD_SUFFIX, helper_name
from components.host_helper_render import HELPER_SOURCE, UPLOAD_PATH, install_command, uninstall_command


def needs_sudo(connection: remote.ConnectionArgs) -> bool:
    """True when the SSH user is not root: every command then runs through `sudo -n`."""
    user = connection.user if connection.user is not None else "root"
    if not isinstance(user, str):
        raise TypeError("the SSH user must be a plain string to decide whether commands need sudo")
    return user != "root"


_helpers: dict[tuple[str, int], remote.Command] = {}
_helpers_run: list[object] = []


_after: list[pulumi.Input[pulumi.Resource]] = []
_opts: list[pulumi.ResourceOptions] = []


def _registry() -> dict[tuple[str, int], remote.Command]:
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
    (the preflights themselves run without the helper: remote_files.read_script). `opts` (the
    Deployment's parent and alias) are given to each of them."""
    _registry()
    _after[:] = list(resources)
    _opts[:] = [opts] if opts else []


def helper_for(connection: remote.ConnectionArgs) -> remote.Command:
    """The host helper of `connection`'s host (created on first use)."""
    host, port = connection.host, connection.port if connection.port is not None else 22
    if not isinstance(host, str) or not isinstance(port, (int, float)):
        raise TypeError("host_helper needs a plain host address and port to identify the host")
    key = (host, int(port))
    helpers = _registry()
    if key not in helpers:
        name = helper_name(*key)
        sudo = needs_sudo(connection)
        opts = pulumi.ResourceOptions.merge(
            _opts[0] if _opts else None, pulumi.ResourceOptions(depends_on=list(_after)) if _after else None
        )
        # The file as an asset: the state stores its path and SHA-256 (about 200 bytes) where a
        # command's stdin is stored twice in full (inputs, and outputs that embed them:
        # pulumi-command provider/pkg/provider/remote/command.go `CommandOutputs`). The absolute
        # path differs between checkouts, which is no diff: assets compare by hash alone
        # (pulumi sdk/go/common/resource/asset/asset.go `Asset.Equals`).
        upload = remote.CopyToRemote(
            name + UPLOAD_SUFFIX,
            connection=connection,
            source=pulumi.FileAsset(str(HELPER_SOURCE)),
            remote_path=UPLOAD_PATH,
            opts=opts,
        )
        helpers[key] = remote.Command(
            name,
            connection=connection,
            # the version (SHA-256) the install checks is in the text: readable in a preview's diff
            # no `update`: pulumi-command runs `create` for an update then (commandController.go `Command.Update`)
            # and the text is not stored twice more
            create=install_command(sudo),
            delete=uninstall_command(sudo),
            triggers=None,
            logging=remote.Logging.STDOUT_AND_STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[upload])),
        )
    return helpers[key]
