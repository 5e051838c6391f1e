"""Shell for the hosts: the one quoting function and the one template convention.

Every value a renderer puts into shell goes through `q` (shlex.quote). Long scripts and files
live as templates in components/templates/; a template names each parameter `@name@`, and
`fill` replaces every one: a placeholder without a value, or a value without a placeholder, is a
bug and raises. `@name@` and not `{{name}}` or `$name` because it is a plain word to sh (so a
`.sh` template is itself valid shell that shellcheck reads), to NGINX and to systemd.

In a shell template a parameter is one shell word: `script()` quotes every value with `q`, and
only what it takes as `code=` (shell the renderer built from quoted parts, e.g. a client
command, or a shared fragment such as dsn-checks.sh) goes in as it is. A script template
assigns its parameters to variables in its first lines (`node=@node@`) and reads only those
variables below, so the file itself is a valid script for shellcheck. Where a rendered script
must keep the bytes existing stacks ran (a changed command text re-runs the command on every
host), a placeholder may also stand where its one word is used: `echo @name@": restarted"`. A
number, or a Platform value (plain text, no shell characters), may stand inside quoted text.

An optional piece is a `code` placeholder alone on its line (at its start): given "", the
whole line goes, so the script reads as before without it. Conditional pieces are small
templates of their own, passed as `code` (`piece`) or put one after another.
Pure: no Pulumi, no I/O but reading the templates.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")
_PLACEHOLDER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)@")
_ALONE = re.compile(r"^@([A-Za-z_][A-Za-z0-9_]*)@\n", re.MULTILINE)


def q(value: object) -> str:
    """One shell word for `value` (str() of it), safe to interpolate anywhere in a script."""
    return shlex.quote(str(value))


def template(name: str) -> str:
    """The text of components/templates/NAME."""
    return (TEMPLATES / name).read_text()


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace every `@name@` in `text` with `values[name]`, as it is (one pass: a value is never
    read for placeholders). Missing and unused names both raise. A placeholder alone on its line
    whose value is "" removes the line."""
    used = set(_PLACEHOLDER.findall(text))
    missing, unused = used - set(values), set(values) - used
    if missing or unused:
        raise ValueError(f"template placeholders do not match: missing {sorted(missing)}, unused {sorted(unused)}")
    text = _ALONE.sub(lambda m: m[0] if values[m[1]] else "", text)
    return _PLACEHOLDER.sub(lambda m: values[m[1]], text)


def script(name: str, /, *, code: Mapping[str, str] | None = None, **values: object) -> str:
    """The shell template NAME with every value quoted (`q`) and every `code` block as it is."""
    filled = {k: q(v) for k, v in values.items()}
    for k, v in (code or {}).items():
        if k in filled:
            raise ValueError(f"{name}: {k} given both as a value and as code")
        filled[k] = v
    return fill(template(name), filled)


def piece(name: str, /, *, code: Mapping[str, str] | None = None, **values: object) -> str:
    """The shell template NAME filled as `script` does, for a `code` placeholder alone on its line
    (the line's own newline ends it)."""
    return script(name, code=code, **values).removesuffix("\n")


_HEREDOC = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([A-Za-z_][A-Za-z0-9_]*))")
_COMMENT_AFTER = " \t;|&()"


def _scan(line: str, single: bool, double: bool) -> tuple[bool, bool, list[tuple[str, bool]], bool]:
    """One line of sh: whether a single- or double-quoted string is still open at its end, the
    here-documents it starts (terminator, `<<-`), and whether it ends in a line continuation."""
    starts: list[tuple[str, bool]] = []
    i, n, cont = 0, len(line), False
    while i < n:
        c = line[i]
        if single:
            single = c != "'"
        elif c == "\\":  # escapes the next character, in double quotes too; at the end, the newline
            cont = i == n - 1
            i += 1
        elif double:
            double = c != '"'
        elif c == "'":
            single = True
        elif c == '"':
            double = True
        elif c == "#" and (i == 0 or line[i - 1] in _COMMENT_AFTER):
            break  # a comment to the end of the line: its quotes are no quotes
        elif line.startswith("<<", i) and not line.startswith("<<<", i):
            m = _HEREDOC.match(line, i)
            if m:
                starts.append((next(g for g in m.groups()[1:] if g is not None), m[1] == "-"))
                i = m.end()
                continue
        i += 1
    return single, double, starts, cont


def without_comment_lines(text: str) -> str:
    """`text`, a POSIX sh script, without its comment lines (a line whose first non-blank
    character starts a comment), for a script that travels in a stack's state: its comments
    document the template (components/templates/), not the run, and a state stores every
    script twice. Kept as they are: every line of a here-document body, every line inside a
    quoted string that spans lines (an awk or Python program, a message), a line that continues
    the one before (a backslash at its end), comments after a command, and shellcheck directives."""
    out: list[str] = []
    single = double = cont = False
    heredocs: list[tuple[str, bool]] = []
    for line in text.split("\n"):
        if heredocs:
            out.append(line)
            word, tabs = heredocs[0]
            if (line.lstrip("\t") if tabs else line) == word:
                heredocs.pop(0)
            continue
        bare = line.lstrip(" \t")
        if not (single or double or cont) and bare.startswith("#") and not bare.startswith("# shellcheck "):
            continue
        out.append(line)
        single, double, starts, cont = _scan(line, single, double)
        heredocs.extend(starts)
    return "\n".join(out)
