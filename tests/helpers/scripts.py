"""Running and checking rendered shell scripts: the one helper the unit tests share.

- `SHELLS`: the POSIX shells a script must work under (the hosts' /bin/sh is dash on Debian
  and Ubuntu; bash as sh is the other common one).
- `run_script(script, ...)`: run the TEXT as `SHELL -c script [ARGS]`, output captured as text,
  optional stdin, env, stub directory first on PATH, working directory, timeout.
- `syntax_ok(script, shell)`: `SHELL -n -c script` (parses, runs nothing).
- `tree_digest(root)`: every path below a directory with its content hash and mode, to prove a
  script changed nothing (or exactly what it should).
- `shellcheck(scripts)`: shellcheck -s sh over many scripts at once (one process), findings as
  `name:line:col: level: message [SCxxxx]` lines, less what `ALLOWED` and `ALLOWED_LINES` let
  through (each with its reason); empty when clean.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# Codes that the renderers' quoting style sets off on purpose, everywhere:
ALLOWED = {
    "SC2140": 'a q()-quoted value spliced between double-quoted text ("a plain login of "\'x y\'" is ...") '
    "is one correctly quoted word; shellcheck takes it for a missing escape",
    "SC2016": "q() single-quotes every value, so SQL, awk and sh text carrying $ stays literal: the intent",
    "SC2209": "q() leaves a plain word bare, so `config_store=file` assigns the word `file` (a command's name "
    "too): the intent",
}
# Single lines (code, text in the offending line) kept as they are: each changes no behaviour, and
# its fix would change an installed file or a command in every existing stack.
ALLOWED_LINES = {
    ("SC2086", "set -- $spec"): "cluster helper: splits a tunnel table line into its fields (none has blanks)",
    ("SC2086", "set -- $line"): "cluster helper: the same, for `tunnel PEER`",
    ("SC2086", 'wait_listen "$3" $ports'): "cluster helper: one argument per port",
    ("SC2086", "systemctl restart $todo || true"): "cluster helper: one argument per unit name",
    ("SC2086", "portre=$(printf '%s\\n' $ports | paste -sd '|' -)"): "cluster preflight: one line per port",
    ("SC2120", "sql() { "): "the admin client wrapper every database script defines alike; some only feed it stdin",
    ("SC2119", "sql < "): "the same: SQL on stdin, no arguments meant",
    ("SC2119", "} | sql"): "the same",
    ("SC2009", "ps -ww -eo pid=,args= 2>/dev/null | grep -E"): "cluster preflight: needs pid and full command "
    "line of every ssh -L, which it filters in three steps",
    ("SC2043", "for f in @FIREWALL_FILES@; do"): "cluster preflight template: the placeholder is the "
    "platform's firewall rule files, several words once rendered (the rendered script is checked too)",
    ("SC2043", "for u in @units@; do"): "cluster sshd reload template: the placeholder is the platform's "
    "sshd units, several words once rendered (the rendered script is checked too)",
}

SHELLS = [s for s in ("/bin/sh", "/bin/dash", "/bin/bash") if Path(s).exists()]
"""Every POSIX shell a host may run the scripts with: each script must behave alike in all."""


def run_script(
    script: str,
    stdin: str = "",
    shell: str = "/bin/sh",
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    path: str | Path | None = None,
    cwd: str | Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `script` under `shell` (`args` become $0 $1 ...). `path`: a directory of stubs put
    first on the inherited (or given) PATH."""
    environ = dict(os.environ if env is None else env)
    if path is not None:
        environ["PATH"] = f"{path}:{environ.get('PATH', os.defpath)}"
    return subprocess.run(
        [shell, "-c", script, *args], input=stdin, capture_output=True, text=True, env=environ, cwd=cwd, timeout=timeout
    )


def syntax_ok(script: str, shell: str = "/bin/sh") -> bool:
    return subprocess.run([shell, "-n", "-c", script], capture_output=True).returncode == 0


def shellcheck(scripts: Mapping[str, str], *, exclude: Sequence[str] = (), severity: str = "style") -> list[str]:
    """shellcheck -s sh every script (name -> text) in one run; the findings not allowed above
    (with the line they are on), [] when clean. `exclude`: more codes left out, for this call."""
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is in the Makefile's APT_PACKAGES: run `make deps`"
    with tempfile.TemporaryDirectory() as d:
        files, texts = {}, {}
        for i, (name, text) in enumerate(scripts.items()):
            f = Path(d) / f"{i}.sh"
            f.write_text(text)
            files[str(f)], texts[str(f)] = name, text
        cmd = [exe, "-s", "sh", "-S", severity, "-f", "gcc"]
        if exclude:
            cmd += ["-e", ",".join(exclude)]
        r = subprocess.run([*cmd, *files], capture_output=True, text=True)
    if r.returncode not in (0, 1) or (r.returncode == 1 and not r.stdout):
        raise RuntimeError(f"shellcheck failed: {r.stderr}")
    out = []
    for finding in r.stdout.splitlines():
        file, lineno, rest = finding.split(":", 2)
        code = finding.rsplit("[", 1)[-1].rstrip("]")
        line = texts[file].splitlines()[int(lineno) - 1].strip()
        if code in ALLOWED or any(c == code and t in line for c, t in ALLOWED_LINES):
            continue
        out.append(f"{files[file]}:{lineno}:{rest} | {line[:160]}")
    return out


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every path below `root` with its content hash (or link target, or "dir") and mode: two
    equal digests mean byte-identical trees."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link:" + os.readlink(p), 0)
        elif p.is_file():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        else:
            out[str(p)] = ("dir", p.stat().st_mode)
    return out
