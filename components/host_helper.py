"""The host helper: one remote command per host that installs components/scripts/mmtls-helper.sh.

Every other command of the program is a short call of this helper with a manifest on stdin
(components.remote_files), so no command text grows with the number or size of files, and the
helper's per-host lock keeps concurrent commands on one host from racing.

Why a shell file and not Python: the hosts are whatever Debian/Ubuntu servers run Mattermost,
NGINX or the database; python3 is not part of a minimal install there, while POSIX sh, coreutils,
awk and util-linux's flock are (Essential: yes or priority required).

Lifecycle:
- One `remote.Command` per (address, port), created by the first command that needs it and named
  `host-helper-<address>[-<port>]`: a stable identity of the host, never a list position.
- Every command on that host `depends_on` it, so it is created first and deleted LAST (the
  engine deletes dependents first, replaced resources' deletes included).
- Its content changing is an in-place update (no triggers): the file is replaced atomically
  under the same interface path, and commands already stored in a state keep calling it. An
  incompatible interface ships as `helper-v2` next to `helper-v1`.
- Its delete removes the helper only when nothing is left in the state directory (no backups,
  no ledger), so a helper deleted while something on the host still needs it stays.
"""

from __future__ import annotations

import base64
import functools
import gzip
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


def helper_source() -> str:
    """The helper's shell text."""
    return HELPER_SOURCE.read_text()


@functools.lru_cache(maxsize=4)
def helper_stdin(source: str | None = None) -> str:
    """What the helper's install command reads: one readable line naming the version (SHA-256
    and size of the file it installs), then the file as gzip, base64 lines. Packed because the
    state stores every command's stdin twice per host (inputs, and outputs that embed them:
    pulumi-command provider/pkg/provider/remote/command.go `CommandOutputs`): 20 KB of shell text
    per host was the largest fixed part of a node's state. Deterministic (mtime 0), so an
    unchanged helper is no diff."""
    text = helper_source() if source is None else source
    data = text.encode()
    packed = base64.encodebytes(gzip.compress(data, compresslevel=9, mtime=0)).decode()
    return f"mmtls-helper.sh sha256 {hashlib.sha256(data).hexdigest()} {len(data)} bytes, gzip+base64\n{packed}"



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


def render_install(helper: str = HELPER_PATH) -> str:
    """Command text: the helper arrives on stdin (helper_stdin), is checked against the SHA-256
    its first line names, and replaces the installed one atomically."""
    d = helper.rsplit("/", 1)[0]
    return script("host-helper-install.sh", dir=d, helper=helper)


def render_uninstall(helper: str = HELPER_PATH, state_dir: str = STATE_DIR, lock: str = LOCK_FILE) -> str:
    """Command text: remove the helper (and its lock and directory) unless the state directory
    still holds something a later command will need it for."""
    d = helper.rsplit("/", 1)[0]
    return script("host-helper-uninstall.sh", dir=d, helper=helper, state=state_dir, lock=lock)


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
        source = helper_source()
        name = helper_name(*key)
        helpers[key] = remote.Command(
            name,
            connection=connection,
            create=as_root(render_install(), needs_sudo(connection)),
            update=as_root(render_install(), needs_sudo(connection)),
            delete=as_root(render_uninstall(), needs_sudo(connection)),
            # its version (SHA-256) readable in a preview's diff, the text packed (helper_stdin)
            stdin=helper_stdin(source),
            triggers=None,
            logging=remote.Logging.STDOUT_AND_STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions.merge(
                _opts[0] if _opts else None, pulumi.ResourceOptions(depends_on=list(_after)) if _after else None
            ),
        )
        pulumi.log.debug(f"{name}: helper sha256 {hashlib.sha256(source.encode()).hexdigest()}")
    return helpers[key]
