"""Stand-in commands for the node scripts (components/node_render.py): `systemctl`, `curl`,
`journalctl`, `update-ca-certificates`, and a fake clock (`date +%s` / `sleep`) so timeouts cost
no real time. Each stub logs its call; flag files in the stub directory steer its answers."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.helpers.scripts import run_script

UPSTREAM = "mattermost-app.internal"
"""The name NGINX verifies the nodes' certificates for (proxy_ssl_name)."""

JOURNAL = '{"level":"error","msg":"Failed to start server","error":"open /etc/mattermost-tls/node.key: permission denied"}'


def curl_stub(failure: str, code: int) -> str:
    """A `curl` that logs its call and fails with `failure` (exit `code`), unless the flag file
    curl_ok_after (a count) or curl_ok_if_good (a file that must hold GOOD) lets it succeed."""
    return (
        "#!/bin/sh\n"
        "printf 'curl %s\\n' \"$*\" >> \"$STUB_DIR/calls\"\n"
        'n=$(cat "$STUB_DIR/curl_count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$STUB_DIR/curl_count"\n'
        'if [ -e "$STUB_DIR/curl_ok_after" ] && [ "$n" -gt "$(cat "$STUB_DIR/curl_ok_after")" ]; then exit 0; fi\n'
        'if [ -e "$STUB_DIR/curl_ok_if_good" ] && grep -q GOOD "$(cat "$STUB_DIR/curl_ok_if_good")"; then exit 0; fi\n'
        f"echo {shlex.quote(failure)} >&2\n"
        f"exit {code}\n"
    )


CLOCK = {
    # a fake clock: `sleep` advances what `date +%s` says, so timeouts cost no real time
    "date": '#!/bin/sh\nif [ "$1" = "+%s" ]; then cat "$STUB_DIR/clock"; else exec /bin/date "$@"; fi\n',
    "sleep": '#!/bin/sh\nc=$(cat "$STUB_DIR/clock"); echo $((c + $1)) > "$STUB_DIR/clock"\n',
}


def install_stubs(root: Path, scripts: dict[str, str]) -> Path:
    """`scripts` as executables in root/stubs (the clock at 1000); returns that directory."""
    d = root / "stubs"
    d.mkdir()
    for name, text in scripts.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    (d / "clock").write_text("1000\n")
    return d


STUBS = {
    "systemctl": r"""#!/bin/sh
d=$STUB_DIR
printf 'systemctl %s\n' "$*" >> "$d/calls"
case "$1" in
  restart)
    if [ -e "$d/restart_fails" ]; then
      echo "Job for mattermost.service failed because the control process exited with error code." >&2; exit 1
    fi
    if [ -e "$d/pid_after_restart" ]; then cp "$d/pid_after_restart" "$d/mainpid"; fi ;;
  is-failed) [ -e "$d/unit_failed" ] && exit 0; exit 1 ;;
  show)
    case "$*" in
      *ActiveState*) cat "$d/activestate" 2>/dev/null || echo activating ;;
      *SubState*) cat "$d/substate" 2>/dev/null || echo start ;;
      *) cat "$d/mainpid" 2>/dev/null || echo 0 ;;
    esac ;;
  status) echo "x mattermost.service - Mattermost"; echo "     Active: activating (auto-restart) (Result: exit-code)"; exit 3 ;;
  daemon-reload) [ -e "$d/reload_fails" ] && exit 1 ;;
esac
exit 0
""",
    "curl": curl_stub("curl: (7) Failed to connect to mattermost-app.internal port 8065 after 0 ms: Couldn't connect to server", 7),
    "journalctl": "#!/bin/sh\nprintf 'journalctl %s\\n' \"$*\" >> \"$STUB_DIR/calls\"\necho '" + JOURNAL + "'\n",
    "update-ca-certificates": "#!/bin/sh\nprintf 'update-ca-certificates %s\\n' \"$*\" >> \"$STUB_DIR/calls\"\n",
    **CLOCK,
}


class Stubs:
    def __init__(self, root: Path, names: list[str] | None = None):
        self.dir = install_stubs(root, {n: STUBS[n] for n in names or list(STUBS)})

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.dir}:/usr/sbin:/usr/bin:/sbin:/bin", "STUB_DIR": str(self.dir), "LC_ALL": "C"}

    def flag(self, name: str, content: str = "") -> None:
        (self.dir / name).write_text(content)

    def calls(self) -> list[str]:
        f = self.dir / "calls"
        return f.read_text().splitlines() if f.exists() else []

    def clock(self) -> int:
        return int((self.dir / "clock").read_text())

    def path_prefix(self) -> str:
        """Put the stubs first inside a script that resets PATH (remote_files does)."""
        return f"PATH={self.dir}:$PATH\nexport PATH\n"


def run(script: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`sh -c script` in exactly `env` (e.g. `Stubs.env()`)."""
    return run_script(script, stdin, env=env, timeout=60)
