"""components.host_helper_render.SUDO run for real with stand-in `sudo` commands: a user whose sudo
asks for a password fails at once with a line naming the user, the host and the fix, and the
command itself never runs; passwordless sudo runs it with its stdin."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from components.host_helper_render import SUDO, as_root
from tests.helpers.scripts import run_script

PASSWORD_REQUIRED = "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"
PASSWORDLESS = '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n'


def run(tmp_path: Path, sudo: str, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sudo").write_text(sudo)
    (bin_dir / "sudo").chmod(0o755)
    return run_script(command, stdin, path=bin_dir)


def test_a_sudo_that_wants_a_password_fails_naming_user_host_and_fix(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = run(tmp_path, PASSWORD_REQUIRED, as_root(f"touch {marker}", sudo=True))
    assert r.returncode == 1 and not marker.exists()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert f"{user}@{socket.gethostname()} cannot run sudo without a password" in r.stderr, r.stderr
    assert "NOPASSWD in /etc/sudoers.d" in r.stderr and "or connect as root" in r.stderr


def test_passwordless_sudo_runs_the_command_with_its_stdin(tmp_path: Path) -> None:
    r = run(tmp_path, PASSWORDLESS, SUDO + "/bin/sh -c 'cat; echo done'", stdin="manifest\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "manifest\ndone\n", "")
