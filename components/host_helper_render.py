"""The host helper's pure half (plain values in, text out; no Pulumi): where the helper is
installed and uploaded, its text and SHA-256, and the command texts that install the upload,
remove it and run a command as root. components/host_helper.py creates the one helper resource per host
from these."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from components.platform import STATE_DIR
from components.shell import q, script, without_comment_lines

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


LIBRARY_HEAD = "#@lib "
"""Starts each entry of the helper's library (the comment lines at the end of its file: an
entry's header `#@lib ID BYTES`, then its lines prefixed "#|"; tools/helper_library.py writes
them, the helper's `mtm_lib` reads them)."""
LIBRARY_MIN = 256
"""Only a text this long (bytes) becomes an entry: a shorter one stays readable in the input."""


def library_id(text: str) -> str:
    """An entry's ID: the first 16 hex digits of the SHA-256 of its lines, each ending in a newline."""
    return hashlib.sha256(_lines(text).encode()).hexdigest()[:16]


def _lines(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


@functools.cache
def helper_library() -> dict[str, str]:
    """The library at the end of the helper file: entry ID -> text (its lines, each ending in a newline)."""
    out: dict[str, str] = {}
    key = ""
    for line in HELPER_SOURCE.read_text().split("\n"):
        if line.startswith(LIBRARY_HEAD):
            key = line.split(" ")[1]
            out[key] = ""
        elif key and line.startswith("#|"):
            out[key] += line[2:] + "\n"
        else:
            key = ""
    return out


def host_helper_text(entries: dict[str, str]) -> str:
    """A host's copy of the helper file: the helper and its library, then the entries of the
    host's own library (components/remote_files_render.py HOST_ENTRIES), in ID order so the same
    entries always make the same file."""
    return helper_source() + "".join(library_entry(entries[k]) for k in sorted(entries))


def helper_code() -> str:
    """The helper without its library: what a self-contained script carries inline (its inputs
    never name a library entry: see remote_files_render `render_files_manifest(library=False)`)."""
    text = helper_source()
    at = text.find("\n" + LIBRARY_HEAD)
    return text if at < 0 else text[: at + 1]


def library_entry(text: str) -> str:
    """`text` as one library entry: header and "#|" lines."""
    body = _lines(text)
    return f"{LIBRARY_HEAD}{library_id(body)} {len(body.encode())}\n" + "".join(f"#|{line}\n" for line in body.split("\n")[:-1])


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
    # its comments document the template; a state stores this text twice per host
    return without_comment_lines(script("host-helper-install.sh", dir=d, helper=helper, sha=want))


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


def remove_copy_command() -> str:
    """Command text (the login user's own file: no root): remove the host's copy of the helper
    from the login user's home, if a run left one there (components.host_helper.copy_for_check)."""
    return script("host-helper-copy-remove.sh", upload=UPLOAD_PATH)
