"""The host helper's pure half (plain values in, text out; no Pulumi): where the helper is
installed, its text, what its install command reads, and the command texts that install it, remove
it and run a command as root. components/host_helper.py creates the one helper resource per host
from these."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from pathlib import Path

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
