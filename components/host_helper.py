"""The host helper: one remote command per host that installs components/scripts/mmtls-helper.sh.

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

import hashlib
from pathlib import Path

import pulumi
from pulumi_command import remote

from components.platform import STATE_DIR
from components.shell import q, script

HELPER_INTERFACE = 1
"""Interface version of the host helper; part of its installed path (see HELPER_PATH)."""
HELPER_DIR = "/usr/local/lib/mattermost-transport-encryption"
HELPER_PATH = f"{HELPER_DIR}/helper-v{HELPER_INTERFACE}"
"""Where the helper is installed. Delete commands stored in a stack's state call this path: a
change of the helper's interface ships as helper-v2 beside it, never in place."""
LOCK_FILE = "/run/lock/mattermost-transport-encryption.lock"
"""The helper's default lock (tmpfs: never in a backup, gone after a reboot)."""
HELPER_SOURCE = Path(__file__).parent / "scripts" / "mmtls-helper.sh"
UPLOAD_PATH = f".mattermost-transport-encryption-helper-v{HELPER_INTERFACE}.sh"
"""Where the helper's upload lands, relative to the SSH user's home directory: SFTP resolves a
relative path against the directory the server started in, and sshd starts every session's
subsystem in the user's home (OpenSSH session.c `do_child`: `chdir(pw->pw_dir)`), where the
install command finds it as "$HOME/...". A file, not a directory: nothing is created that the
install does not remove again."""


def helper_source() -> str:
    """The helper's shell text."""
    return HELPER_SOURCE.read_text()


def needs_sudo(connection: remote.ConnectionArgs) -> bool:
    """True when the SSH user is not root: every command then runs through `sudo -n`."""
    user = connection.user if connection.user is not None else "root"
    if not isinstance(user, str):
        raise TypeError("the SSH user must be a plain string to decide whether commands need sudo")
    return user != "root"


SUDO = (
    "sudo -n true 2>/dev/null || { echo \"mattermost-transport-encryption: $(id -un)@$(hostname) cannot run sudo "
    'without a password (sudo -n failed): give it passwordless sudo (NOPASSWD in /etc/sudoers.d) or connect as root" >&2; '
    "exit 1; }; sudo -n "
)
"""How a non-root SSH user's command becomes root: `sudo -n` (never waits for a password), after
a check whose failure names the user, the host and the fix (sudo alone says only "a password is
required"). Nothing secret is in either: the command's input stays on stdin."""


def as_root(script: str, sudo: bool) -> str:
    return f"{SUDO}/bin/sh -c {q(script)}" if sudo else script


def _root_shell(script: str, sudo: bool) -> str:
    """`script` as ONE command run as root (its own `/bin/sh -c` even for root: it `exit`s, and
    the caller's line goes on after it, with a redirection that applies to all of it)."""
    return f"{SUDO if sudo else ''}/bin/sh -c {q(script)}"


def render_install(helper: str = HELPER_PATH, sha256: str | None = None) -> str:
    """Script (run as root): the uploaded helper arrives on stdin, is checked against `sha256`
    (the version this program ships) and replaces the installed one atomically. Empty stdin (no
    upload left: an earlier run installed it) is fine when the installed helper is that version."""
    d = helper.rsplit("/", 1)[0]
    want = sha256 if sha256 is not None else helper_sha256()
    return script("host-helper-install.sh", dir=d, helper=helper, sha=want)


def install_command(sudo: bool, helper: str = HELPER_PATH, sha256: str | None = None) -> str:
    """Command text: the login user's shell feeds the upload (in its home) to the install script
    run as root, then removes the upload; with no upload left, the script checks what is installed."""
    return script("host-helper-upload-install.sh", upload=UPLOAD_PATH, code={"install": _root_shell(render_install(helper, sha256), sudo)})


def helper_sha256() -> str:
    """SHA-256 of the helper file: what the upload's `FileAsset` hash will be (the engine hashes
    the file's bytes: pulumi sdk/go/common/resource/asset/asset.go `EnsureHashWithWD`)."""
    return hashlib.sha256(HELPER_SOURCE.read_bytes()).hexdigest()


def render_uninstall(helper: str = HELPER_PATH, state_dir: str = STATE_DIR, lock: str = LOCK_FILE) -> str:
    """Script (run as root): remove the helper (and its lock and directory) unless the state
    directory still holds something a later command will need it for."""
    d = helper.rsplit("/", 1)[0]
    return script("host-helper-uninstall.sh", dir=d, helper=helper, state=state_dir, lock=lock)


def uninstall_command(sudo: bool, helper: str = HELPER_PATH, state_dir: str = STATE_DIR, lock: str = LOCK_FILE) -> str:
    """Command text: the uninstall as root, then the login user removes an upload a failed
    install left in its home."""
    uninstall = _root_shell(render_uninstall(helper, state_dir, lock), sudo)
    return script("host-helper-upload-uninstall.sh", upload=UPLOAD_PATH, code={"uninstall": uninstall})


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


UPLOAD_SUFFIX = "-upload"
"""The helper's upload (CopyToRemote) is named after its install: `host-helper-<address>-upload`."""


def helper_name(host: str, port: int) -> str:
    """The helper resource's name: the host's stable identity (its SSH address and port)."""
    return f"host-helper-{host}" + ("" if port == 22 else f"-{port}")


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
